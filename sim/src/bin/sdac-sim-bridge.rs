//! `sdac-sim-bridge`: one MuJoCo task over ROS 2, for sim-in-the-loop runs against `sdac-node`
//! (or any controller that answers `std_msgs/Float64MultiArray` observations with commands that
//! echo the observation's stamp, see `sdac_sim::bridge`).
//!
//! Prints one line per episode and a summary; `--report` writes the same as JSON. The DDS domain
//! is `ROS_DOMAIN_ID` (0 when unset). SIGINT and SIGTERM stop it cleanly: the episode under way is
//! abandoned, the summary and report cover the episodes finished so far (`interrupted: true`),
//! a recording is finished, exit 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use sdac_sim::bridge::{BridgeConfig, BridgeReport, Pacing, run_bridge};
use sdac_sim::bridge_dds::{DdsTopics, DdsTransport};
use sdac_sim::{Assets, make_env};

/// Exposes a MuJoCo task over ROS 2: publishes observations, applies the commands that answer
/// them, steps the physics and reports each episode's return.
#[derive(Parser, Debug)]
#[command(name = "sdac-sim-bridge", version)]
struct Args {
    /// Task, by Gymnasium id (e.g. InvertedPendulum-v5).
    #[arg(long)]
    env: String,
    /// Step in real time at this rate (Hz) with the newest command; without it the bridge
    /// steps in lockstep.
    #[arg(long, conflicts_with = "lockstep")]
    rate: Option<f64>,
    /// Step once the command answering the last observation arrived (the default).
    #[arg(long)]
    lockstep: bool,
    /// Episodes to run before exiting.
    #[arg(long, default_value_t = 1)]
    episodes: u32,
    /// Stop after this many steps in all, even mid-episode (for timed runs).
    #[arg(long)]
    max_steps: Option<u64>,
    /// Episode i resets the task with seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "/sdac/observation")]
    obs_topic: String,
    #[arg(long, default_value = "/sdac/command")]
    cmd_topic: String,
    /// Lockstep: how long to wait for the answer to an observation before holding the previous
    /// action for that step.
    #[arg(long, default_value_t = 500)]
    command_timeout_ms: u64,
    /// How long the first observation waits for a controller to answer before the bridge fails.
    #[arg(long, default_value_t = 30)]
    startup_timeout_s: u64,
    /// The controller's diagnostic_msgs/DiagnosticArray topic: the newest message's values go
    /// into the report (`controller_diagnostics`).
    #[arg(long)]
    diag_topic: Option<String>,
    /// Write the run's report (returns, steps, latency, bad commands) as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Record every observation published and command received as MCAP (rosbag2's layout).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Real time: SCHED_FIFO priority of the stepping thread (where granted; the DDS threads run
    /// 10 below it); 0 leaves all threads SCHED_OTHER. Lockstep runs ignore it.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(i32).range(0..=99))]
    realtime_priority: i32,
    /// Pin all of the bridge's threads (stepping and DDS) to this CPU (default: any).
    #[arg(long)]
    cpu: Option<usize>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdac-sim-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let pacing = match args.rate {
        Some(rate_hz) if rate_hz.is_finite() && rate_hz > 0.0 => Pacing::RealTime {
            period: Duration::from_secs_f64(1.0 / rate_hz),
        },
        Some(rate_hz) => bail!("--rate {rate_hz}: the rate must be a positive number of Hz"),
        None => Pacing::Lockstep {
            command_timeout: Duration::from_millis(args.command_timeout_ms),
        },
    };
    let config = BridgeConfig {
        episodes: args.episodes,
        seed: args.seed,
        pacing,
        startup_timeout: Duration::from_secs(args.startup_timeout_s),
        resend_interval: Duration::from_millis(20),
        max_steps: args.max_steps,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let assets = Assets::discover()?;
    let mut env = make_env(&args.env, &assets)?;
    let topics = DdsTopics {
        domain_id: sdac_ros::dds::domain_id_from_env()?,
        node_name: "sdac_sim_bridge".to_owned(),
        obs_topic: args.obs_topic.clone(),
        cmd_topic: args.cmd_topic.clone(),
        record: args.record.clone(),
        diag_topic: args.diag_topic.clone(),
    };
    // Real time: the DDS threads (started by the transport, inheriting this thread's policy)
    // run SCHED_FIFO just below the stepping thread, so neither waits behind other processes.
    if let Some(cpu) = args.cpu {
        sdac_ros::clock::check_cpu(cpu).context("--cpu")?;
        sdac_ros::clock::pin_current_thread(cpu)
            .with_context(|| format!("pinning the bridge to CPU {cpu}"))?;
    }
    let realtime = matches!(pacing, Pacing::RealTime { .. }) && args.realtime_priority > 0;
    if realtime {
        sdac_ros::clock::setup_realtime_thread((args.realtime_priority - 10).max(1), None);
    }
    let mut transport = DdsTransport::new(&topics)?;
    let fifo =
        realtime && sdac_ros::clock::setup_realtime_thread(args.realtime_priority, None).fifo;
    println!(
        "bridge: {} on {} -> {} (domain {}), {}",
        args.env,
        topics.obs_topic,
        topics.cmd_topic,
        topics.domain_id,
        match pacing {
            Pacing::Lockstep { .. } => "lockstep".to_owned(),
            Pacing::RealTime { period } => format!(
                "real time at {:.1} Hz, {}",
                1.0 / period.as_secs_f64(),
                if fifo { "SCHED_FIFO" } else { "SCHED_OTHER" }
            ),
        }
    );
    let mut report = run_bridge(env.as_mut(), &mut transport, &config, &stop, |episode| {
        println!(
            "episode {} seed {} return {:.6} steps {} terminated {} truncated {}",
            episode.episode,
            episode.seed,
            episode.episode_return,
            episode.steps,
            episode.terminated,
            episode.truncated
        );
    })?;
    report.controller_diagnostics = transport.controller_diagnostics();
    transport.finish()?;
    if report.interrupted {
        println!("stopped by a signal: the episode under way was abandoned");
    }
    print_summary(&report);
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(())
}

fn print_summary(report: &BridgeReport) {
    let latency = &report.command_latency;
    println!(
        "summary: {} episodes, {} steps, {} commands, {} bad, {} unmatched, {} timeouts, {} overruns; \
         obs->command latency p50 {:.1} us p99 {:.1} us max {:.1} us",
        report.episodes.len(),
        report.steps,
        report.commands_received,
        report.bad_commands,
        report.unmatched_commands,
        report.command_timeouts,
        report.step_overruns,
        latency.p50_us,
        latency.p99_us,
        latency.max_us
    );
    if let Some(diagnostics) = &report.controller_diagnostics {
        let value = |key: &str| diagnostics.get(key).map_or("?", String::as_str);
        println!(
            "controller: {} deadline misses ({} overrun, {} late wake-up), compute p99 {} us",
            value("deadline_misses_total"),
            value("deadline_misses_overrun_total"),
            value("deadline_misses_late_wakeup_total"),
            value("compute_p99_us")
        );
    }
}
