//! `sdac-node`: a trained SDAC policy as a ROS 2 node. See `sdac-node --help` and ros/README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use sdac_ros::clock;
use sdac_ros::control::{ControlConfig, Controller, LoopConfig, SafeAction};
use sdac_ros::node::{DdsEndpoints, NodeConfig, ObservationInput};
use sdac_ros::policy::RuntimePolicy;
use sdac_ros::{bench, dds, timer};

const AFTER_HELP: &str = "\
Topics (ROS 2 names; DDS topics rt/<name>):
  --obs-topic   std_msgs/msg/Float64MultiArray, or sensor_msgs/msg/JointState with --joint-state;
                QoS sensor data (best effort, volatile, keep last 5).
  --cmd-topic   std_msgs/msg/Float64MultiArray, one command per control period, the action in
                environment units; QoS reliable, volatile, keep last 10.
  --diag-topic  diagnostic_msgs/msg/DiagnosticArray about once a second (loop period, compute time
                p50/p99/max, deadline misses, faults, last fault); QoS reliable, keep last 10.

Observation mapping:
  Float64MultiArray: the policy's observation is data[layout.data_offset..], exactly obs_dim values.
  JointState (--joint-state): observation = concat(position, velocity), each in message order
  (name and effort are ignored); position.len() + velocity.len() must equal obs_dim.

Stamps: an observation whose first layout dimension is labelled `<name>;stamp=<u64>` (or a
JointState, stamp = header.stamp in ns) is answered by a command labelled `action;stamp=<u64>`,
so a peer can measure observation-to-command latency on its own clock.

Watchdog: an observation that is stale (older than --obs-timeout-ms), malformed, non-finite or
of the wrong length gives the safe action for that period and counts a fault; no command is
ever non-finite. The DDS domain is ROS_DOMAIN_ID (default 0). SIGINT/SIGTERM stop the node
cleanly (exit 0).";

/// SCHED_FIFO priority of the control thread.
const CONTROL_PRIORITY: i32 = 80;
/// SCHED_FIFO priority of the DDS threads, below the control thread.
const DDS_PRIORITY: i32 = 70;

#[derive(Parser)]
#[command(
    name = "sdac-node",
    about = "Run an SDAC policy artifact (.safetensors) as a ROS 2 node at a fixed rate.",
    after_help = AFTER_HELP,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark the node: run it at `--rate` for `--seconds` against a loopback peer that
    /// publishes stamped observations at the same rate (echoing the last command into them) and
    /// measures observation-to-command latency; prints a table.
    Bench(bench::BenchArgs),
    /// Check this machine before trusting it with a control loop: one SCHED_FIFO thread per CPU
    /// sleeps to absolute deadlines at `--rate` for `--seconds` (as cyclictest does); prints,
    /// per CPU, the periods a control loop would have missed and how late the wake-ups were.
    Timer(timer::TimerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SafeActionArg {
    /// All zeros in environment units, clamped into the action bounds.
    Zero,
    /// The last action the policy computed.
    Hold,
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The policy artifact (safetensors, format v1).
    #[arg(long, required = true)]
    policy: Option<PathBuf>,
    /// Control rate in Hz: one command per period.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value = "/sdac/observation")]
    obs_topic: String,
    #[arg(long, default_value = "/sdac/command")]
    cmd_topic: String,
    #[arg(long, default_value = "/diagnostics")]
    diag_topic: String,
    /// An observation older than this (since it reached the node) is stale.
    #[arg(long, default_value_t = 20.0)]
    obs_timeout_ms: f64,
    /// What the node commands when the watchdog trips.
    #[arg(long, value_enum, default_value = "zero")]
    safe_action: SafeActionArg,
    /// Seed of the policy's sampler noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Take observations as sensor_msgs/JointState (concat(position, velocity)).
    #[arg(long)]
    joint_state: bool,
    /// Record observations, commands and diagnostics to this MCAP file (rosbag2 layout).
    #[arg(long)]
    record: Option<PathBuf>,
    /// The ROS 2 node name.
    #[arg(long, default_value = "sdac_node")]
    node_name: String,
    /// Pin the control thread to this CPU (default: any).
    #[arg(long)]
    cpu: Option<usize>,
    /// Pin the DDS thread and RustDDS's own threads to this CPU (default: any).
    #[arg(long)]
    dds_cpu: Option<usize>,
    /// Busy-wait this many microseconds before each period start and decision point instead of
    /// sleeping through them (at most a quarter period; costs up to twice this per period).
    #[arg(long, default_value_t = 0.0)]
    spin_us: f64,
    /// Keep idle CPUs polling instead of halting while the node runs (holds
    /// /dev/cpu_dma_latency at 0; needs root; an idle CPU then burns its whole time).
    #[arg(long)]
    idle_poll: bool,
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let policy_path = args.policy.context("--policy is required")?;
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be a positive number of Hz, got {}", args.rate);
    }
    if !(args.obs_timeout_ms.is_finite() && args.obs_timeout_ms > 0.0) {
        anyhow::bail!(
            "--obs-timeout-ms must be positive, got {}",
            args.obs_timeout_ms
        );
    }
    // The policy is loaded (and refused) before any DDS participant exists.
    let policy = RuntimePolicy::load(&policy_path, args.seed)
        .with_context(|| format!("loading policy {}", policy_path.display()))?;
    let obs_dim = policy.policy().obs_dim();
    let config = ControlConfig {
        period_ns: (1e9 / args.rate).round() as u64,
        obs_timeout_ns: (args.obs_timeout_ms * 1e6).round() as u64,
        safe_action: match args.safe_action {
            SafeActionArg::Zero => SafeAction::Zero,
            SafeActionArg::Hold => SafeAction::Hold,
        },
    };
    let controller = Controller::new(policy, config)
        .with_context(|| format!("policy {} does not fit the node", policy_path.display()))?;
    if !(args.spin_us.is_finite() && args.spin_us >= 0.0) {
        anyhow::bail!("--spin-us must be zero or positive, got {}", args.spin_us);
    }
    let timing = LoopConfig {
        priority: CONTROL_PRIORITY,
        cpu: args
            .cpu
            .map(clock::check_cpu)
            .transpose()
            .context("--cpu")?,
        spin_ns: (args.spin_us * 1e3).round() as u64,
    };
    let dds_cpu = args
        .dds_cpu
        .map(clock::check_cpu)
        .transpose()
        .context("--dds-cpu")?;
    let _idle_poll = args
        .idle_poll
        .then(clock::IdlePoll::request)
        .transpose()
        .context("--idle-poll: opening /dev/cpu_dma_latency")?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&shutdown))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    // The DDS side is on the latency path too: SCHED_FIFO below the control thread where granted.
    // Threads inherit it, so the DDS thread and RustDDS's own threads, started from here, get it.
    clock::setup_realtime_thread(DDS_PRIORITY, None);
    let endpoints = DdsEndpoints::create(NodeConfig {
        node_name: args.node_name,
        domain_id: dds::domain_id_from_env()?,
        obs_topic: args.obs_topic,
        cmd_topic: args.cmd_topic,
        diag_topic: args.diag_topic,
        input: if args.joint_state {
            ObservationInput::JointState
        } else {
            ObservationInput::Float64MultiArray
        },
        obs_dim,
        rate_hz: args.rate,
        record: args.record,
        dds_cpu,
    })
    .context("starting the node's DDS side")?;
    sdac_ros::node::run(controller, endpoints, timing, &shutdown).context("running the node")
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the previous message
/// already ends with (errors that print their source and also return it).
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Timer(args)) => timer::run(args),
        None => run_node(cli.node),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdac-node: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
