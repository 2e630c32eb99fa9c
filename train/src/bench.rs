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
