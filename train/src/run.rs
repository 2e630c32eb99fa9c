//! `sdac train` and `sdac eval`: run directories around the training loop.
//!
//! A run directory holds `run.toml` (task, algorithm, seed), `config.toml` (the resolved
//! configuration), `metrics.csv` (`step,tag,value`) and `final.safetensors`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sdac_models::candle::Device;
use serde::{Deserialize, Serialize};

use crate::config::{self, Algo, Config};
use crate::sac::Sac;
use crate::sdac::Sdac;
use crate::trainer::{self, Agent, Start};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Gymnasium id of the task.
    #[arg(long, default_value = "InvertedPendulum-v5")]
    env: String,
    /// Algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Sdac)]
    algo: Algo,
    /// Preset: reference, cpu-small or ci.
    #[arg(long, default_value = "ci")]
    preset: String,
    /// Override a config field, e.g. `--set sdac.candidates=16` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Seed of everything random in the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the networks run.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Run directory (default runs/<env>-<algo>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an existing run directory.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Continue the run in this directory from its latest checkpoint (its task, algorithm,
    /// seed and config are the ones it was started with).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["env", "algo", "preset", "overrides", "seed", "out"])]
    resume: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Run directory written by `sdac train`.
    #[arg(long)]
    run: PathBuf,
    /// Evaluation episodes.
    #[arg(long, default_value_t = 10)]
    episodes: usize,
    /// Seed of the evaluation episodes' resets.
    #[arg(long, default_value_t = 12345)]
    seed: u64,
}

/// What `run.toml` records.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunInfo {
    pub(crate) env: String,
    pub(crate) algo: Algo,
    pub(crate) seed: u64,
}

pub(crate) fn device(arg: DeviceArg) -> anyhow::Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda if cfg!(feature = "cuda") => {
            Device::new_cuda(0).context("opening CUDA device 0")
        }
        DeviceArg::Cuda => {
            bail!("this binary was built without CUDA: rebuild with `--features cuda`")
        }
    }
}

/// Runs `work` on a pool of `threads` compute threads, the calling thread waiting.
///
/// candle's CPU kernels split work over rayon and size that split from `RAYON_NUM_THREADS`
/// (read at every matrix product; unset, it probes `/sys` each time). Running the whole loop
/// inside the pool makes a one-thread pool run every kernel inline, with no hand-off between
/// threads: on small networks that hand-off costs more than the arithmetic.
pub(crate) fn with_compute_threads<R: Send>(
    threads: usize,
    work: impl FnOnce() -> anyhow::Result<R> + Send,
) -> anyhow::Result<R> {
    // SAFETY: called by `train` and `eval` before they start any thread, so no other thread
    // reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sdac-compute-{i}"))
        .build()
        .context("starting the compute threads")?;
    pool.install(work)
}

fn make_agent(
    algo: Algo,
    config: &Config,
    task: &str,
    seed: u64,
    device: &Device,
) -> anyhow::Result<Box<dyn Agent>> {
    let assets = sdac_sim::Assets::discover()?;
    let spec = sdac_sim::make_env(task, &assets)?.spec().clone();
    let (od, ad) = (spec.obs_dim, spec.action_dim());
    Ok(match algo {
        Algo::Sdac => Box::new(Sdac::new(config, od, ad, seed, device)?),
        Algo::Sac => Box::new(Sac::new(config, od, ad, seed, device)?),
    })
}

fn prepare_run_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    if dir.exists() {
        if !force {
            bail!(
                "run directory {} exists: choose another --out, or pass --force to replace it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let plan = match &args.resume {
        Some(dir) => {
            let (info, config) = read_run(dir)?;
            RunPlan {
                info,
                config,
                dir: dir.clone(),
                start: Start::Resume,
                preset: None,
            }
        }
        None => {
            let info = RunInfo {
                env: args.env.clone(),
                algo: args.algo,
                seed: args.seed,
            };
            let dir = args.out.clone().unwrap_or_else(|| {
                trainer::default_run_dir(&info.env, algo_name(info.algo), info.seed)
            });
            RunPlan {
                info,
                config: config::resolve(&args.preset, &args.overrides)?,
                dir,
                start: Start::Fresh,
                preset: Some(args.preset.clone()),
            }
        }
    };
    with_compute_threads(plan.config.compute_threads, || {
        train_with(&plan, args.device, args.force)
    })
}

/// What a `train` invocation will do.
struct RunPlan {
    info: RunInfo,
    config: Config,
    dir: PathBuf,
    start: Start,
    /// The preset a fresh run starts from.
    preset: Option<String>,
}

pub(crate) fn algo_name(algo: Algo) -> &'static str {
    match algo {
        Algo::Sdac => "sdac",
        Algo::Sac => "sac",
    }
}

/// The task, algorithm, seed and config of an existing run directory.
pub(crate) fn read_run(dir: &Path) -> anyhow::Result<(RunInfo, Config)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let info: RunInfo = toml::from_str(&read("run.toml")?).context("run.toml")?;
    let config = config::from_toml(&read("config.toml")?).context("config.toml")?;
    Ok((info, config))
}

fn train_with(plan: &RunPlan, device_arg: DeviceArg, force: bool) -> anyhow::Result<()> {
    let device = device(device_arg)?;
    let RunPlan {
        info, config, dir, ..
    } = plan;
    let algo = algo_name(info.algo);
    let mut agent = make_agent(info.algo, config, &info.env, info.seed, &device)?;
    match &plan.preset {
        Some(preset) => {
            prepare_run_dir(dir, force)?;
            std::fs::write(dir.join("run.toml"), toml::to_string(info)?)?;
            std::fs::write(dir.join("config.toml"), config.to_toml()?)?;
            eprintln!(
                "training {algo} on {} (preset {preset}, seed {}) -> {}",
                info.env,
                info.seed,
                dir.display()
            );
        }
        None => eprintln!(
            "resuming {algo} on {} (seed {}) in {}",
            info.env,
            info.seed,
            dir.display()
        ),
    }
    let summary = trainer::train(
        agent.as_mut(),
        &info.env,
        config,
        info.seed,
        dir,
        plan.start,
    )?;
    println!(
        "{} {algo} seed {}: final eval return {:.2}, best {:.2} ({} env steps, {} updates, {:.0} s) -> {}",
        info.env,
        info.seed,
        summary.final_eval_return,
        summary.best_eval_return,
        summary.env_steps,
        summary.updates,
        summary.seconds,
        dir.display()
    );
    Ok(())
}

pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.episodes > 0, "--episodes must be at least 1");
    let (info, config) = read_run(&args.run)?;
    with_compute_threads(config.compute_threads, || eval_with(args, &info, &config))
}

fn eval_with(args: &EvalArgs, info: &RunInfo, config: &Config) -> anyhow::Result<()> {
    let mut agent = make_agent(info.algo, config, &info.env, info.seed, &Device::Cpu)?;
    let weights = args.run.join("final.safetensors");
    agent
        .load(&weights)
        .with_context(|| format!("loading {}", weights.display()))?;
    let assets = sdac_sim::Assets::discover()?;
    let returns = trainer::evaluate(agent.as_mut(), &info.env, &assets, args.episodes, args.seed)?;
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    let std =
        (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / returns.len() as f64).sqrt();
    for (i, r) in returns.iter().enumerate() {
        println!("episode {i}: return {r:.2}");
    }
    println!(
        "{}: mean return {mean:.2} +- {std:.2} over {} episodes",
        info.env, args.episodes
    );
    Ok(())
}
