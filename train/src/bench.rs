//! `sdac bench ...`: performance tables, printed as Markdown for BENCHMARKS.md.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sdac_sim::{Assets, RawStepper, VecEnv};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Environment step rates: one thread against raw mj_step, Gymnasium, and the vectorised
    /// runner's scaling.
    Env(EnvBenchArgs),
    /// SDAC update time for the `reference` and `cpu-small` presets: floating-point operations
    /// per update, the fraction of this machine's measured matrix-multiply peak, and (given the
    /// authors' JAX code beside the project) their update rate in the same run.
    Update(UpdateBenchArgs),
    /// `sdac-node` against `sdac-sim-bridge` in real time over DDS on this host: observation ->
    /// command latency, deadline misses, step overruns, CPU use.
    Loop(crate::bench_loop::LoopBenchArgs),
    /// Latency of one action at batch 1 on one thread: the runtime, tract (on the ONNX graph)
    /// and candle, for a run's K-step students and its best-of-N teacher, with the FLOP floor.
    Runtime(runtime::RuntimeBenchArgs),
}

#[derive(clap::Args)]
pub struct UpdateBenchArgs {
    /// Presets to measure.
    #[arg(long = "preset", default_values_t = ["reference".to_string(), "cpu-small".to_string()])]
    presets: Vec<String>,
    /// Task whose observation and action sizes the networks take.
    #[arg(long, default_value = "HalfCheetah-v5")]
    env: String,
    /// Override a config field of every measured preset, e.g. `--set compute_threads=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Timed updates per preset (after warm-up ones).
    #[arg(long, default_value_t = 20)]
    updates: usize,
    /// Rounds per preset, this code and the JAX baseline taking turns; each side's best round
    /// is reported (the machine is shared: a slow spell should not decide the ratio).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Where the networks run (`cuda` needs a binary built with `--features cuda`).
    #[arg(long, value_enum, default_value_t = crate::run::DeviceArg::Cpu)]
    device: crate::run::DeviceArg,
    /// Python that runs the JAX baseline (`bench_jax.py --config <preset> --updates <n>`,
    /// printing JSON with `updates_per_s`); none by default. See BENCHMARKS.md for its setup outside this repository.
    #[arg(long)]
    jax_python: Option<PathBuf>,
    /// The JAX baseline script.
    #[arg(long)]
    jax_script: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EnvBenchArgs {
    /// Tasks to measure on one thread.
    #[arg(long = "env", default_values_t = ["HalfCheetah-v5".to_string(), "Humanoid-v5".to_string()])]
    envs: Vec<String>,
    /// Environment steps per measurement.
    #[arg(long, default_value_t = 20_000)]
    steps: u32,
    /// Python with gymnasium and mujoco installed, for Gymnasium's rate (`none` to skip).
    #[arg(long, default_value = ".cache/venv/bin/python")]
    python: String,
    /// Environments in the vectorised scaling measurement.
    #[arg(long, default_value_t = 8)]
    vec_envs: usize,
    /// Seed of the random actions and the resets.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Env(args) => bench_env(args),
        BenchCommand::Update(args) => update::bench_update(args),
        BenchCommand::Loop(args) => crate::bench_loop::bench_loop(args),
        BenchCommand::Runtime(args) => runtime::bench_runtime(args),
    }
}

struct SingleThread {
    env_steps_per_s: f64,
    raw_steps_per_s: f64,
    raw_rne_steps_per_s: f64,
    frame_skip: u32,
}

/// Steps the task and a bare copy of its physics on the same trajectory (the copy takes the
/// task's state at every reset), timing each step call; resets are not timed.
fn single_thread(
    task: &str,
    assets: &Assets,
    steps: u32,
    seed: u64,
) -> anyhow::Result<SingleThread> {
    let mut env = sdac_sim::make_env(task, assets)?;
    let (mut raw, frame_skip) = RawStepper::for_task(task, assets)?;
    let spec = env.spec().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut obs = vec![0.0; spec.obs_dim];
    let mut action = vec![0.0; spec.action_dim()];
    let (mut env_time, mut raw_time, mut rne_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    env.reset(Some(seed), &mut obs)?;
    raw.set_state(env.qpos(), env.qvel());
    for step in 0..steps {
        for (a, (lo, hi)) in action
            .iter_mut()
            .zip(spec.action_low.iter().zip(&spec.action_high))
        {
            *a = rng.random_range(*lo..=*hi);
        }
        // Alternate which of the two goes first, so cache and ordering effects cancel.
        let time_raw = |raw: &mut RawStepper, raw_time: &mut Duration, rne_time: &mut Duration| {
            let started = Instant::now();
            raw.step(&action, frame_skip);
            let stepped = Instant::now();
            raw.rne_post_constraint();
            *raw_time += stepped - started;
            *rne_time += stepped.elapsed();
        };
        if step % 2 == 0 {
            time_raw(&mut raw, &mut raw_time, &mut rne_time);
        }
        let started = Instant::now();
        let outcome = env.step(&action, &mut obs)?;
        env_time += started.elapsed();
        if step % 2 == 1 {
            time_raw(&mut raw, &mut raw_time, &mut rne_time);
        }
        if outcome.terminated || outcome.truncated {
            env.reset(None, &mut obs)?;
            raw.set_state(env.qpos(), env.qvel());
        }
    }
    let rate = |d: Duration| f64::from(steps) / d.as_secs_f64();
    Ok(SingleThread {
        env_steps_per_s: rate(env_time),
        raw_steps_per_s: rate(raw_time),
        raw_rne_steps_per_s: rate(raw_time + rne_time),
        frame_skip,
    })
}

/// Total environment steps per second of `num_envs` environments on `threads` threads.
fn vectorised(
    task: &str,
    assets: &Assets,
    num_envs: usize,
    threads: usize,
    steps: u32,
    seed: u64,
) -> anyhow::Result<f64> {
    let mut vec_env = VecEnv::new(task, assets, num_envs, threads)?;
    let spec = vec_env.spec().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ad = spec.action_dim();
    let mut actions = vec![0.0; num_envs * ad];
    vec_env.reset(seed)?;
    let rounds = (steps as usize).div_ceil(num_envs);
    let started = Instant::now();
    for _ in 0..rounds {
        for (i, a) in actions.iter_mut().enumerate() {
            *a = rng.random_range(spec.action_low[i % ad]..=spec.action_high[i % ad]);
        }
        vec_env.step(&actions)?;
    }
    Ok((rounds * num_envs) as f64 / started.elapsed().as_secs_f64())
}

/// Gymnasium's single-thread step rate from `tools/gym_bench.py`, or why it is missing.
fn gymnasium_rates(args: &EnvBenchArgs) -> Result<Vec<(String, f64)>, String> {
    if args.python == "none" {
        return Err("skipped (--python none)".into());
    }
    let script = PathBuf::from("tools/gym_bench.py");
    if !script.is_file() {
        return Err("tools/gym_bench.py not found: run from the workspace root".into());
    }
    let mut command = std::process::Command::new(&args.python);
    command
        .arg(&script)
        .arg("--steps")
        .arg(args.steps.to_string())
        .arg("--seed")
        .arg(args.seed.to_string());
    for env in &args.envs {
        command.arg("--env").arg(env);
    }
    let output = command.output().map_err(|e| {
        format!("could not run {} ({e}); `python3 -m venv .cache/venv && .cache/venv/bin/pip install -r tools/requirements.txt` installs it", args.python)
    })?;
    if !output.status.success() {
        return Err(format!(
            "gym_bench.py failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mut rates = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("gym_bench.py printed `{line}`: {e}"))?;
        if let (Some(env), Some(rate)) = (value["env"].as_str(), value["steps_per_s"].as_f64()) {
            rates.push((env.to_string(), rate));
        }
    }
    Ok(rates)
}

fn bench_env(args: &EnvBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let assets = Assets::discover()?;
    let mut rows = Vec::new();
    for task in &args.envs {
        eprintln!("measuring {task} on one thread ...");
        rows.push((
            task,
            single_thread(task, &assets, args.steps, args.seed)
                .with_context(|| format!("benchmarking {task}"))?,
        ));
    }
    eprintln!("measuring Gymnasium ...");
    let gymnasium = gymnasium_rates(args);

    println!(
        "Single thread, {} env steps of uniform random actions per task (resets not timed).\n",
        args.steps
    );
    println!(
        "| task | raw mj_step x frame_skip (steps/s) | + mj_rnePostConstraint (steps/s) | sdac-sim env.step (steps/s) | overhead vs raw | overhead vs raw+rne | Gymnasium (steps/s) | sdac-sim / Gymnasium |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (task, row) in &rows {
        let gym = gymnasium.as_ref().ok().and_then(|r| {
            r.iter()
                .find(|(name, _)| name == *task)
                .map(|(_, rate)| *rate)
        });
        let (gym_cell, ratio_cell) = match gym {
            Some(rate) => (
                format!("{rate:.0}"),
                format!("{:.2}x", row.env_steps_per_s / rate),
            ),
            None => ("not measured".into(), "-".into()),
        };
        println!(
            "| {task} (frame_skip {}) | {:.0} | {:.0} | {:.0} | {:+.1}% | {:+.1}% | {gym_cell} | {ratio_cell} |",
            row.frame_skip,
            row.raw_steps_per_s,
            row.raw_rne_steps_per_s,
            row.env_steps_per_s,
            100.0 * (row.raw_steps_per_s / row.env_steps_per_s - 1.0),
            100.0 * (row.raw_rne_steps_per_s / row.env_steps_per_s - 1.0),
        );
    }
    if let Err(why) = &gymnasium {
        println!("\nGymnasium: not measured: {why}");
    }

    let task = args.envs.first().map_or("HalfCheetah-v5", String::as_str);
    eprintln!("measuring the vectorised runner on {task} ...");
    let one = vectorised(task, &assets, args.vec_envs, 1, args.steps, args.seed)?;
    let two = vectorised(task, &assets, args.vec_envs, 2, args.steps, args.seed)?;
    println!(
        "\nVectorised runner, {task}, {} environments, {} env steps in total.\n",
        args.vec_envs, args.steps
    );
    println!("| threads | env steps/s | speed-up |");
    println!("|---|---|---|");
    println!("| 1 | {one:.0} | 1.00x |");
    println!("| 2 | {two:.0} | {:.2}x |", two / one);
    Ok(())
}

mod update {
    //! The SDAC update on random data of the task's sizes, timed, with its FLOP count.

    use std::time::Instant;

    use anyhow::Context as _;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use sdac_models::TIME_EMBEDDING_DIM;
    use sdac_models::candle::{Device, Tensor};

    use super::UpdateBenchArgs;
    use crate::config::{self, Config};
    use crate::replay_buffer::Batch;
    use crate::run::with_compute_threads;
    use crate::sdac::Sdac;
    use crate::trainer::Agent;

    /// `2 x` the multiply-adds of one MLP forward pass per row, minus the first layer's first
    /// `skipped_inputs` inputs (precomputed once per sampling chain).
    fn mlp_flops(inputs: usize, hidden: &[usize], outputs: usize, skipped_inputs: usize) -> f64 {
        let mut previous = inputs - skipped_inputs;
        let mut total = 0.0;
        for &width in hidden.iter().chain(std::iter::once(&outputs)) {
            total += (previous * width) as f64;
            previous = width;
        }
        2.0 * total
    }

    /// Matrix-multiply FLOPs of one SDAC update as this project computes it (backward passes
    /// counted as twice the forward; element-wise work not counted).
    pub fn sdac_update_flops(config: &Config, obs_dim: usize, act_dim: usize) -> f64 {
        let c = &config.sdac;
        let h = &config.hidden;
        let (b, n, k, t) = (
            config.batch_size as f64,
            c.candidates as f64,
            c.reverse_samples as f64,
            c.diffusion_steps as f64,
        );
        let net_inputs = obs_dim + act_dim + TIME_EMBEDDING_DIM;
        // The observations' part of the first layer, once per sampling chain.
        let chain_start = 2.0 * (obs_dim * h[0]) as f64;
        let chain_step = mlp_flops(net_inputs, h, act_dim, obs_dim);
        let net_forward = mlp_flops(net_inputs, h, act_dim, 0);
        let twin_forward = 2.0 * mlp_flops(obs_dim + act_dim, h, 1, 0);
        let best_of_n = b * n * (chain_start + t * chain_step + twin_forward);
        let critic = best_of_n + b * twin_forward + 3.0 * b * twin_forward;
        let policy = best_of_n + b * k * twin_forward + 3.0 * b * net_forward;
        critic + policy / config.sdac.policy_delay as f64
    }

    /// Single-matrix-product rate on `device` (on the CPU with the preset's compute threads):
    /// the best of five batches of products of the noise network's shape.
    fn matmul_peak_flops(device: &Device) -> anyhow::Result<f64> {
        let (rows, reps) = if device.is_cpu() {
            (1024, 40)
        } else {
            (65_536, 200)
        };
        let a = Tensor::randn(0f32, 1.0, (rows, 256), device)?;
        let w = Tensor::randn(0f32, 1.0, (256, 256), device)?;
        for _ in 0..5 {
            a.matmul(&w)?;
        }
        device.synchronize()?;
        let mut best = 0.0f64;
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..reps {
                a.matmul(&w)?;
            }
            device.synchronize()?;
            let rate =
                reps as f64 * 2.0 * rows as f64 * 256.0 * 256.0 / started.elapsed().as_secs_f64();
            best = best.max(rate);
        }
        Ok(best)
    }

    fn random_batch(config: &Config, obs_dim: usize, act_dim: usize, seed: u64) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let b = config.batch_size;
        let mut normal = |count: usize| -> Vec<f32> {
            (0..count).map(|_| rng.random_range(-1.0f32..1.0)).collect()
        };
        Batch {
            obs: normal(b * obs_dim),
            actions: normal(b * act_dim),
            rewards: normal(b),
            next_obs: normal(b * obs_dim),
            terminated: vec![0.0; b],
            len: b,
        }
    }

    struct Row {
        preset: String,
        config: Config,
        ms_per_update: f64,
        flops_per_update: f64,
        peak: f64,
        jax: Result<f64, String>,
    }

    fn measure(
        preset: &str,
        args: &UpdateBenchArgs,
        obs_dim: usize,
        act_dim: usize,
    ) -> anyhow::Result<Row> {
        let config = config::resolve(preset, &args.overrides)?;
        let device = crate::run::device(args.device)?;
        let mut agent = with_compute_threads(config.compute_threads, || {
            Sdac::new(&config, obs_dim, act_dim, 0, &device)
        })?;
        let batch = random_batch(&config, obs_dim, act_dim, 1);
        // Rounds alternate the two sides, so that a slow spell of a shared machine does not
        // fall on one side only; each side keeps its best round.
        let (mut ms_per_update, mut peak) = (f64::INFINITY, 0.0f64);
        let mut jax: Result<f64, String> = Err("not measured".into());
        for round in 0..args.rounds {
            let (ms, round_peak) = with_compute_threads(config.compute_threads, || {
                // Warm-up covers both kinds of update (with and without the policy step).
                if round == 0 {
                    for _ in 0..2 * config.sdac.policy_delay {
                        agent.update(&batch)?;
                    }
                }
                device.synchronize()?;
                let started = Instant::now();
                for _ in 0..args.updates {
                    agent.update(&batch)?;
                }
                device.synchronize()?;
                let ms = started.elapsed().as_secs_f64() * 1e3 / args.updates as f64;
                anyhow::Ok((ms, matmul_peak_flops(&device)?))
            })?;
            ms_per_update = ms_per_update.min(ms);
            peak = peak.max(round_peak);
            if !device.is_cpu() {
                jax = Err("not measured (the JAX baseline runs on the CPU)".into());
                continue;
            }
            jax = jax_updates_per_s(preset, args)
                .map(|rate| jax.as_ref().map_or(rate, |best| best.max(rate)));
        }
        Ok(Row {
            preset: preset.to_owned(),
            flops_per_update: sdac_update_flops(&config, obs_dim, act_dim),
            config,
            ms_per_update,
            peak,
            jax,
        })
    }

    fn jax_updates_per_s(preset: &str, args: &UpdateBenchArgs) -> Result<f64, String> {
        let (Some(python), Some(script)) = (&args.jax_python, &args.jax_script) else {
            return Err("not measured (no --jax-python/--jax-script)".into());
        };
        eprintln!("measuring the JAX baseline for {preset} ...");
        let output = std::process::Command::new(python)
            .arg(script)
            .args(["--config", preset, "--updates", &args.updates.to_string()])
            .output()
            .map_err(|e| format!("could not run {}: {e}", python.display()))?;
        if !output.status.success() {
            return Err(format!(
                "JAX baseline failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|value| value["updates_per_s"].as_f64())
            .ok_or_else(|| "the JAX baseline printed no updates_per_s".into())
    }

    pub fn bench_update(args: &UpdateBenchArgs) -> anyhow::Result<()> {
        anyhow::ensure!(args.updates > 0, "--updates must be at least 1");
        let assets = sdac_sim::Assets::discover()?;
        let spec = sdac_sim::make_env(&args.env, &assets)?.spec().clone();
        let (obs_dim, act_dim) = (spec.obs_dim, spec.action_dim());
        let mut rows = Vec::new();
        for preset in &args.presets {
            eprintln!("measuring the SDAC update of {preset} ...");
            rows.push(
                measure(preset, args, obs_dim, act_dim)
                    .with_context(|| format!("preset {preset}"))?,
            );
        }
        println!(
            "SDAC update on {} sizes (obs {obs_dim}, action {act_dim}), random batch, {} timed updates per round, best of {} rounds per side, device {:?}.\n",
            args.env, args.updates, args.rounds, args.device
        );
        println!(
            "| preset | threads | hidden | batch | N | K | T | ms/update | updates/s | GFLOP/update | GFLOP/s | matmul peak GFLOP/s | % of peak | JAX updates/s | Rust / JAX |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in &rows {
            let c = &row.config;
            let updates_per_s = 1e3 / row.ms_per_update;
            let achieved = row.flops_per_update * updates_per_s;
            let (jax, ratio) = match &row.jax {
                Ok(rate) => (
                    format!("{rate:.2}"),
                    format!("{:.1}x", updates_per_s / rate),
                ),
                Err(why) => (why.clone(), "-".into()),
            };
            println!(
                "| {} | {} | {:?} | {} | {} | {} | {} | {:.1} | {:.2} | {:.3} | {:.1} | {:.1} | {:.0}% | {jax} | {ratio} |",
                row.preset,
                c.compute_threads,
                c.hidden,
                c.batch_size,
                c.sdac.candidates,
                c.sdac.reverse_samples,
                c.sdac.diffusion_steps,
                row.ms_per_update,
                updates_per_s,
                row.flops_per_update / 1e9,
                achieved / 1e9,
                row.peak / 1e9,
                100.0 * achieved / row.peak,
            );
        }
        Ok(())
    }
}

mod runtime {
    //! `sdac bench runtime`: what one `act` costs on the robot's side of the project.

    use std::path::PathBuf;
    use std::time::Instant;

    use anyhow::Context as _;
    use sdac_models::CandlePolicy;
    use sdac_models::candle::{Device, Tensor};
    use sdac_runtime::format::{Metadata, SamplerKind};
    use sdac_runtime::{NoiseRng, OnnxPolicy, Policy};

    use crate::export;
    use crate::run::with_compute_threads;

    #[derive(clap::Args)]
    pub struct RuntimeBenchArgs {
        /// SDAC run directory: its teacher, and the students `sdac distill` wrote into it
        /// (`student-k{K}.safetensors`).
        #[arg(
            long,
            default_value = "tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0"
        )]
        run: PathBuf,
        /// Student step counts to time (each needs its student file).
        #[arg(long = "student", default_values_t = [1, 2, 4])]
        students: Vec<usize>,
        /// Timed actions per student and engine (after a tenth as many untimed ones).
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        /// Timed actions of the teacher per engine.
        #[arg(long, default_value_t = 300)]
        teacher_calls: usize,
        /// Seed of the observations and noise fed to the policies.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Rounds per policy: each round times a block of every engine in turn (runtime, tract,
        /// candle), so that all three see the same stretch of a shared machine; percentiles pool
        /// the rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    }

    /// Latency percentiles of one engine on one policy, in microseconds.
    struct Latency {
        p50: f64,
        p99: f64,
        max: f64,
        /// The p50 of each round, in round order.
        round_p50: Vec<f64>,
    }

    impl std::fmt::Display for Latency {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:.1} / {:.1} / {:.1}", self.p50, self.p99, self.max)
        }
    }

    /// Per-call latencies of one engine, in microseconds, gathered over rounds.
    #[derive(Default)]
    struct Samples {
        micros: Vec<f64>,
        /// The p50 of each round.
        round_p50: Vec<f64>,
    }

    impl Samples {
        /// Times `calls` calls of `act(i)` one by one, after `calls / 10` untimed ones (which
        /// bring the engine's weights back into the caches after the other engines ran).
        fn time_block(
            &mut self,
            calls: usize,
            mut act: impl FnMut(usize) -> anyhow::Result<()>,
        ) -> anyhow::Result<()> {
            for i in 0..calls.div_ceil(10) {
                act(i)?;
            }
            let mut block = Vec::with_capacity(calls);
            for i in 0..calls {
                let started = Instant::now();
                act(i)?;
                block.push(started.elapsed().as_secs_f64() * 1e6);
            }
            block.sort_by(f64::total_cmp);
            self.round_p50.push(percentile(&block, 0.5));
            self.micros.extend(block);
            Ok(())
        }

        fn latency(mut self) -> Latency {
            self.micros.sort_by(f64::total_cmp);
            Latency {
                p50: percentile(&self.micros, 0.5),
                p99: percentile(&self.micros, 0.99),
                max: percentile(&self.micros, 1.0),
                round_p50: self.round_p50,
            }
        }
    }

    /// The `q` quantile of sorted, non-empty `sorted` (nearest rank).
    fn percentile(sorted: &[f64], q: f64) -> f64 {
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }

    /// `over`'s round p50 divided by `under`'s in the same round, summarised over the rounds.
    struct RoundRatio {
        /// The median of the rounds' ratios (the mean of the middle two for an even count).
        median: f64,
        lowest: f64,
        highest: f64,
    }

    impl std::fmt::Display for RoundRatio {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "{:.1}x ({:.1}-{:.1})",
                self.median, self.lowest, self.highest
            )
        }
    }

    /// The ratios of `over`'s round p50s to `under`'s, round by round: each compares two engines
    /// timed on the same stretch of the machine. Both have at least one round.
    fn round_ratio(over: &Latency, under: &Latency) -> RoundRatio {
        let mut ratios: Vec<f64> = over
            .round_p50
            .iter()
            .zip(&under.round_p50)
            .map(|(o, u)| o / u)
            .collect();
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        let median = if ratios.len().is_multiple_of(2) {
            (ratios[middle - 1] + ratios[middle]) / 2.0
        } else {
            ratios[middle]
        };
        RoundRatio {
            median,
            lowest: ratios[0],
            highest: ratios[ratios.len() - 1],
        }
    }

    /// Multiply-adds of an MLP's layers after `skipped` of the first layer's inputs, times 2.
    fn mlp_flops(inputs: usize, hidden: &[usize], outputs: usize) -> f64 {
        let widths: Vec<usize> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(outputs))
            .collect();
        2.0 * widths.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>()
    }

    /// The least arithmetic one action needs: matrix products only, with what the runtime
    /// shares computed once (the observations' share of each first layer) and what depends only
    /// on the step folded away (the time branch).
    fn flop_floor(m: &Metadata) -> f64 {
        let (od, ad, h) = (m.obs_dim, m.act_dim, &m.network.hidden);
        let obs_share = 2.0 * (od * h[0]) as f64;
        let net_step = mlp_flops(ad, h, ad);
        let steps = m.sampler.timesteps.len() as f64;
        match m.sampler.kind {
            SamplerKind::DdimSample => obs_share + steps * net_step,
            SamplerKind::DdpmBestOfN => {
                let n = m.sampler.candidates as f64;
                let critic = mlp_flops(ad, h, 1);
                3.0 * obs_share + n * (steps * net_step + 2.0 * critic)
            }
        }
    }

    struct Row {
        name: String,
        metadata: Metadata,
        runtime: Latency,
        tract: Latency,
        candle: Latency,
    }

    /// One policy through the three engines, fed the same rotating inputs.
    fn measure(
        name: String,
        policy: &CandlePolicy,
        calls: usize,
        rounds: usize,
        seed: u64,
    ) -> anyhow::Result<Row> {
        let m = policy.metadata().clone();
        let mut runtime = Policy::from_bytes(&sdac_models::policy_bytes(policy)?)?;
        let mut tract = OnnxPolicy::from_bytes(&sdac_models::onnx_bytes(policy)?)?;
        let name = if runtime.uses_half_weights() {
            format!("{name}, f16 weights")
        } else {
            name
        };
        // 64 observations near the origin (scaled normals) and their noise, in rotation.
        const INPUTS: usize = 64;
        let mut rng = NoiseRng::new(seed);
        let mut obs = vec![0.0f32; INPUTS * m.obs_dim];
        rng.fill_standard_normal(&mut obs);
        obs.iter_mut().for_each(|o| *o *= 0.1);
        let noise_len = runtime.noise_len();
        let mut noise = vec![0.0f32; INPUTS * noise_len];
        rng.fill_standard_normal(&mut noise);
        let row = |i: usize| {
            let r = i % INPUTS;
            (
                &obs[r * m.obs_dim..(r + 1) * m.obs_dim],
                &noise[r * noise_len..(r + 1) * noise_len],
            )
        };
        let mut action = vec![0.0f32; m.act_dim];
        let (mut runtime_samples, mut tract_samples, mut candle_samples) =
            (Samples::default(), Samples::default(), Samples::default());
        let block = calls.div_ceil(rounds);
        for round in 1..=rounds {
            eprintln!("timing {name}: round {round} of {rounds}");
            runtime_samples.time_block(block, |i| {
                let (o, z) = row(i);
                Ok(runtime.act(o, z, &mut action)?)
            })?;
            tract_samples.time_block(block, |i| {
                let (o, z) = row(i);
                Ok(tract.act(o, z, &mut action)?)
            })?;
            candle_samples.time_block(block, |i| {
                let (o, z) = row(i);
                let o = Tensor::from_slice(o, (1, m.obs_dim), &Device::Cpu)?;
                let z = Tensor::from_slice(z, (1, m.n_noise, m.act_dim), &Device::Cpu)?;
                policy.act(&o, &z)?.to_vec2::<f32>()?;
                Ok(())
            })?;
        }
        let (runtime_latency, tract_latency, candle_latency) = (
            runtime_samples.latency(),
            tract_samples.latency(),
            candle_samples.latency(),
        );
        Ok(Row {
            name,
            metadata: m,
            runtime: runtime_latency,
            tract: tract_latency,
            candle: candle_latency,
        })
    }

    pub fn bench_runtime(args: &RuntimeBenchArgs) -> anyhow::Result<()> {
        anyhow::ensure!(
            args.calls >= 10 && args.teacher_calls >= 10,
            "--calls and --teacher-calls must be at least 10"
        );
        anyhow::ensure!(
            (1..=args.teacher_calls).contains(&args.rounds),
            "--rounds must be between 1 and --teacher-calls"
        );
        let teacher = export::teacher(&args.run)?;
        let mut missing = Vec::new();
        let rows = with_compute_threads(1, || {
            let mut rows = Vec::new();
            for &k in &args.students {
                let path = export::student_path(&args.run, k);
                if !path.is_file() {
                    missing.push(format!(
                        "K = {k}: not measured, {} is missing (`sdac distill --run {} --steps {k}`)",
                        path.display(),
                        args.run.display()
                    ));
                    continue;
                }
                let student = sdac_models::read_policy(&path, &Device::Cpu)
                    .with_context(|| format!("reading {}", path.display()))?;
                rows.push(measure(
                    format!("student K = {k}"),
                    &student,
                    args.calls,
                    args.rounds,
                    args.seed,
                )?);
            }
            let m = teacher.policy.metadata();
            let name = format!(
                "teacher ({} steps, best of {})",
                m.sampler.timesteps.len(),
                m.sampler.candidates
            );
            rows.push(measure(
                name,
                &teacher.policy,
                args.teacher_calls,
                args.rounds,
                args.seed,
            )?);
            Ok(rows)
        })?;

        let m = teacher.policy.metadata();
        let runtime_for_report = Policy::from_bytes(&sdac_models::policy_bytes(&teacher.policy)?)?;
        println!(
            "One action at batch 1 on one thread, {} policies of {} (obs {}, action {}, hidden {:?}); \
             runtime: sdac-runtime `Policy::act` (AVX2+FMA kernels: {}, AVX-512 for batches: {}); tract: `OnnxPolicy::act` on \
             the exported ONNX graph; candle: `CandlePolicy::act` (tensor ops). Latency in us as \
             p50 / p99 / max over {} calls per student and {} per teacher, timed in {} rounds \
             that take the engines in turn; ratios: the median over the rounds of one round's \
             p50 ratio, and in brackets the lowest and highest. \"f16 weights\": every weight is a \
             half-precision value (`sdac distill --weights f16`), which the runtime stores in \
             half the bytes; tract and candle compute with the same values in f32.\n",
            rows.len(),
            args.run.display(),
            m.obs_dim,
            m.act_dim,
            m.network.hidden,
            runtime_for_report.uses_avx2_fma(),
            runtime_for_report.uses_avx512(),
            args.calls,
            args.teacher_calls,
            args.rounds
        );
        println!(
            "| policy | FLOP floor / action | runtime (us) | tract (us) | candle (us) | runtime GFLOP/s at p50 | tract / runtime (p50) | candle / runtime (p50) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for row in &rows {
            let flops = flop_floor(&row.metadata);
            println!(
                "| {} | {:.3} M | {} | {} | {} | {:.1} | {} | {} |",
                row.name,
                flops / 1e6,
                row.runtime,
                row.tract,
                row.candle,
                flops / (row.runtime.p50 * 1e3),
                round_ratio(&row.tract, &row.runtime),
                round_ratio(&row.candle, &row.runtime),
            );
        }
        for line in missing {
            println!("\n{line}");
        }
        Ok(())
    }
}
