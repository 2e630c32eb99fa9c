//! `sdac`: the project's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod act;
mod bench;
mod bench_loop;
mod checkpoint;
mod compare;
mod config;
mod curve;
mod distill;
mod export;
mod pipeline;
mod replay_buffer;
mod rollout;
mod run;
mod run_log;
mod sac;
mod sdac;
mod tensorboard;
mod trainer;

#[derive(Parser)]
#[command(
    name = "sdac",
    version,
    about = "Diffusion policies trained online with SDAC, from MuJoCo to a ROS 2 node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and replay the MuJoCo tasks.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Train SDAC or SAC on a task.
    Train(run::TrainArgs),
    /// Evaluate the final policy of a run directory.
    Eval(run::EvalArgs),
    /// Run episodes of a task with a fixed policy and print their returns.
    Rollout(rollout::RolloutArgs),
    /// Distil a run's teacher into a K-step student (K = 1..4).
    Distill(distill::DistillArgs),
    /// Write a run's teacher or student as a policy artifact or an ONNX graph.
    Export(export::ExportArgs),
    /// The whole toolchain on a small task: train, distil, export, sim-in-the-loop over ROS 2.
    Pipeline(pipeline::PipelineArgs),
    /// A policy file's actions for observations and noise from CSV files (engine cross-checks).
    Act(act::ActArgs),
    /// Best and final evaluation returns of runs (mean ± std over seeds) and their curves.
    Compare(compare::CompareArgs),
    /// Performance tables.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Subcommand)]
enum EnvCommand {
    /// List the tasks with their observation and action sizes.
    List,
    /// Replay recorded actions from a recorded state and write the trace (for parity checks).
    Replay {
        /// Gymnasium id of the task, e.g. Hopper-v5.
        #[arg(long)]
        env: String,
        /// CSV with header qpos_0..,qvel_0.. and one row: the state after reset.
        #[arg(long)]
        init: PathBuf,
        /// CSV with header a_0..a_{d-1}, one row per step, environment units.
        #[arg(long)]
        actions: PathBuf,
        /// Where to write the trace CSV: step,reward,terminated,truncated,obs_0,...
        #[arg(long)]
        out: PathBuf,
    },
}

/// Prints warnings and errors from libraries (MuJoCo's among them) to standard error, each
/// distinct message once per process (MuJoCo repeats a model's warnings at every load).
struct StderrLogger {
    printed: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!(
                "{} {}: {}",
                record.target(),
                record.level(),
                record.args().to_string().trim()
            );
            let first_time = match self.printed.lock() {
                Ok(mut printed) => printed.insert(line.clone()),
                Err(_) => true,
            };
            if first_time {
                eprintln!("{line}");
            }
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger {
    printed: std::sync::Mutex::new(std::collections::BTreeSet::new()),
};

fn main() -> ExitCode {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    // SAFETY: first thing in main, before any thread exists.
    unsafe { sdac_sim::route_mujoco_messages_to_log() };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Env(EnvCommand::List) => list_envs(),
        Command::Env(EnvCommand::Replay {
            env,
            init,
            actions,
            out,
        }) => replay(&env, &init, &actions, &out),
        Command::Train(args) => run::train(&args),
        Command::Eval(args) => run::eval(&args),
        Command::Rollout(args) => rollout::run(&args),
        Command::Distill(args) => distill::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Pipeline(args) => pipeline::run(&args),
        Command::Act(args) => act::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Bench(command) => bench::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn list_envs() -> anyhow::Result<()> {
    let assets = sdac_sim::Assets::discover()?;
    println!(
        "{:<28} {:>7} {:>7} {:>9} {:>8}",
        "task", "obs", "action", "max_steps", "dt_s"
    );
    for name in sdac_sim::TASK_NAMES {
        let env = sdac_sim::make_env(name, &assets)?;
        let spec = env.spec();
        println!(
            "{:<28} {:>7} {:>7} {:>9} {:>8}",
            spec.name,
            spec.obs_dim,
            spec.action_dim(),
            spec.max_episode_steps,
            spec.dt_s
        );
    }
    Ok(())
}

fn replay(
    task: &str,
    init: &std::path::Path,
    actions: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use sdac_sim::replay;
    let assets = sdac_sim::Assets::discover()?;
    let mut env = sdac_sim::make_env(task, &assets)?;
    let (qpos, qvel) =
        replay::read_init(init, env.as_ref()).context("reading the initial state")?;
    let actions = replay::read_actions(actions, env.as_ref()).context("reading the actions")?;
    let trace = replay::replay(env.as_mut(), &qpos, &qvel, &actions)
        .with_context(|| format!("replaying {task}"))?;
    replay::write_trace(out, &trace, env.spec().obs_dim).context("writing the trace")?;
    let last = trace.last().map(|r| (r.step, r.terminated, r.truncated));
    if let Some((steps, terminated, truncated)) = last {
        let ret: f64 = trace.iter().map(|r| r.reward).sum();
        eprintln!(
            "{task}: {steps} steps, return {ret:.3}, terminated {terminated}, truncated {truncated} -> {}",
            out.display()
        );
    }
    Ok(())
}
