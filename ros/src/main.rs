//! `sdac-node`: a trained SDAC policy as a ROS 2 node. See `sdac-node --help` and ros/README.md.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use sdac_ros::clock;
use sdac_ros::control::{ControlConfig, Controller, LoopConfig, SafeAction};
use sdac_ros::node::{DdsEndpoints, NodeConfig, ObservationInput};
use sdac_ros::policy::RuntimePolicy;
use sdac_ros::ros_args::{self, ParamValue, RosArgs};
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
cleanly (exit 0).

ROS 2 arguments (as `ros2 run` and `ros2 launch` pass them): --ros-args [-r/--remap
[<node>:]<from>:=<to>] [-p/--param [<node>:]<name>:=<value>] [--params-file <yaml>] [--]
  -r __node:=<name> renames the node, -r __ns:=<namespace> puts it in a namespace, other remaps
  rename topics. Parameters (each also an option above; giving both is an error): policy, rate,
  obs_topic, cmd_topic, diag_topic, obs_timeout_ms, safe_action, seed, joint_state, record, cpu,
  dds_cpu (-1: any CPU), spin_us, idle_poll, use_sim_time (no effect: the loop runs on
  CLOCK_MONOTONIC). The node offers them read-only on the ROS 2 parameter services
  (ros2 param list|get); a set that changes a value is refused.";

/// The node's ROS 2 parameters; each is also the command-line option of the same name.
const PARAMETERS: [&str; 14] = [
    "policy",
    "rate",
    "obs_topic",
    "cmd_topic",
    "diag_topic",
    "obs_timeout_ms",
    "safe_action",
    "seed",
    "joint_state",
    "record",
    "cpu",
    "dds_cpu",
    "spin_us",
    "idle_poll",
];

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
    /// The policy artifact (safetensors, format v1). Required (here or as the ROS 2 parameter).
    #[arg(long)]
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

/// The node's options with the ROS 2 arguments applied, and its namespace.
struct Invocation {
    args: NodeArgs,
    namespace: String,
    use_sim_time: bool,
}

/// `args` with the ROS 2 arguments applied: remaps rename the node and its topics, parameters
/// set options (an option given both ways is refused).
fn apply_ros_args(
    mut args: NodeArgs,
    matches: &ArgMatches,
    ros: &RosArgs,
) -> anyhow::Result<Invocation> {
    let given_on_command_line =
        |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let original_name = args.node_name.clone();
    if let Some(renamed) = ros.node_name(&original_name) {
        if given_on_command_line("node_name") {
            bail!(
                "the node name is given twice: --node-name {original_name} and --ros-args -r \
                 __node:={renamed}"
            );
        }
        args.node_name = renamed.to_owned();
    }
    let namespace = ros.namespace(&original_name);
    let applied = ros_args::apply_parameters(
        "sdac-node",
        &PARAMETERS,
        &ros.parameters(&namespace, &args.node_name),
        given_on_command_line,
        |name, value| set_option(&mut args, name, value),
    )?;
    report_unused_parameters(&applied);
    for topic in [
        &mut args.obs_topic,
        &mut args.cmd_topic,
        &mut args.diag_topic,
    ] {
        *topic = ros.resolve_topic(topic, &namespace, &args.node_name);
    }
    Ok(Invocation {
        args,
        namespace,
        use_sim_time: applied.use_sim_time,
    })
}

fn run_node(invocation: Invocation) -> anyhow::Result<()> {
    let Invocation {
        args,
        namespace,
        use_sim_time,
    } = invocation;
    let parameters = parameter_values(&args, use_sim_time);
    let policy_path = args
        .policy
        .context("--policy (or the ROS 2 parameter policy) is required")?;
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
        namespace,
        parameters,
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

/// Sets the option `name` of `args` from a ROS 2 parameter; `Ok(false)`: the node has no such
/// option.
fn set_option(args: &mut NodeArgs, name: &str, value: &ParamValue) -> anyhow::Result<bool> {
    match name {
        "policy" => args.policy = Some(PathBuf::from(value.to_text()?)),
        "rate" => args.rate = value.to_f64()?,
        "obs_topic" => args.obs_topic = value.to_text()?,
        "cmd_topic" => args.cmd_topic = value.to_text()?,
        "diag_topic" => args.diag_topic = value.to_text()?,
        "obs_timeout_ms" => args.obs_timeout_ms = value.to_f64()?,
        "safe_action" => {
            args.safe_action = SafeActionArg::from_str(&value.to_text()?, false)
                .map_err(|_| anyhow::anyhow!("expected \"zero\" or \"hold\""))?;
        }
        "seed" => args.seed = value.to_u64()?,
        "joint_state" => args.joint_state = value.to_bool()?,
        "record" => args.record = value.to_optional_path()?,
        "cpu" => args.cpu = value.to_cpu()?,
        "dds_cpu" => args.dds_cpu = value.to_cpu()?,
        "spin_us" => args.spin_us = value.to_f64()?,
        "idle_poll" => args.idle_poll = value.to_bool()?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Says on stderr which parameters change nothing: `use_sim_time`, and those from wildcard
/// sections that the node does not have.
fn report_unused_parameters(applied: &ros_args::AppliedParameters) {
    if applied.use_sim_time {
        eprintln!(
            "sdac-node: use_sim_time has no effect: the control loop runs on CLOCK_MONOTONIC"
        );
    }
    for line in applied.ignored_lines("sdac-node", &PARAMETERS) {
        eprintln!("sdac-node: {line}");
    }
}

/// The values the node runs with, as ROS 2 parameters (a CPU of -1 is "any", an empty record
/// path "none").
fn parameter_values(args: &NodeArgs, use_sim_time: bool) -> Vec<(String, ParamValue)> {
    let values = [
        ("policy", ParamValue::optional_path(args.policy.as_deref())),
        ("rate", ParamValue::Double(args.rate)),
        ("obs_topic", ParamValue::String(args.obs_topic.clone())),
        ("cmd_topic", ParamValue::String(args.cmd_topic.clone())),
        ("diag_topic", ParamValue::String(args.diag_topic.clone())),
        ("obs_timeout_ms", ParamValue::Double(args.obs_timeout_ms)),
        (
            "safe_action",
            ParamValue::String(
                match args.safe_action {
                    SafeActionArg::Zero => "zero",
                    SafeActionArg::Hold => "hold",
                }
                .to_owned(),
            ),
        ),
        (
            "seed",
            i64::try_from(args.seed).map_or_else(
                |_| ParamValue::String(args.seed.to_string()),
                ParamValue::Integer,
            ),
        ),
        ("joint_state", ParamValue::Bool(args.joint_state)),
        ("record", ParamValue::optional_path(args.record.as_deref())),
        ("cpu", ParamValue::optional_cpu(args.cpu)),
        ("dds_cpu", ParamValue::optional_cpu(args.dds_cpu)),
        ("spin_us", ParamValue::Double(args.spin_us)),
        ("idle_poll", ParamValue::Bool(args.idle_poll)),
        ("use_sim_time", ParamValue::Bool(use_sim_time)),
    ];
    values
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

fn run(argv: Vec<OsString>) -> anyhow::Result<()> {
    // `bench` passes the arguments after `--` (ROS 2 ones included) to the node it starts.
    let subcommand = argv.get(1).is_some_and(|a| a == "bench" || a == "timer");
    let (own, ros) = if subcommand {
        (argv, RosArgs::default())
    } else {
        ros_args::split(argv)?
    };
    let matches = Cli::command().get_matches_from(own);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match cli.command {
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Timer(args)) => timer::run(args),
        None => run_node(apply_ros_args(cli.node, &matches, &ros)?),
    }
}

fn main() -> ExitCode {
    match run(std::env::args_os().collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdac-node: error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(argv: &[&str]) -> anyhow::Result<Invocation> {
        let (own, ros) = ros_args::split(argv.iter().map(OsString::from))?;
        let matches = Cli::command().try_get_matches_from(own)?;
        let cli = Cli::from_arg_matches(&matches)?;
        apply_ros_args(cli.node, &matches, &ros)
    }

    fn error(argv: &[&str]) -> String {
        match invocation(argv) {
            Ok(_) => panic!("{argv:?} was accepted"),
            Err(error) => format!("{error:#}"),
        }
    }

    /// Every parameter the node offers can be given back to it as `-p name:=value` and changes
    /// nothing: the list of names, the offered values and the parser agree.
    #[test]
    fn offered_parameters_round_trip_through_the_parser() {
        let given = invocation(&[
            "sdac-node",
            "--policy",
            "p.safetensors",
            "--rate",
            "250",
            "--safe-action",
            "hold",
            "--cpu",
            "1",
            "--record",
            "run.mcap",
            "--seed",
            "7",
        ])
        .unwrap();
        let offered = parameter_values(&given.args, false);
        let names: Vec<&str> = offered.iter().map(|(name, _)| name.as_str()).collect();
        let mut expected: Vec<&str> = PARAMETERS.to_vec();
        expected.push("use_sim_time");
        assert_eq!(names, expected);

        let mut argv = vec!["sdac-node".to_owned(), "--ros-args".to_owned()];
        for (name, value) in &offered {
            argv.extend(["-p".to_owned(), format!("{name}:={value}")]);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let fresh = invocation(&argv).unwrap();
        assert_eq!(parameter_values(&fresh.args, fresh.use_sim_time), offered);
    }

    #[test]
    fn parameters_of_the_wrong_type_or_unknown_are_refused() {
        assert!(
            error(&["n", "--ros-args", "-p", "rate:=true"])
                .ends_with("rate = true (--ros-args -p): expected a number, got a bool")
        );
        assert!(error(&["n", "--ros-args", "-p", "safe_action:=brake"]).contains("\"zero\""));
        assert!(error(&["n", "--ros-args", "-p", "seed:=-1"]).contains("non-negative"));
        assert!(error(&["n", "--ros-args", "-p", "dds_cpu:=-5"]).contains("-1 (any CPU)"));
        assert!(
            error(&["n", "--rate", "5", "--ros-args", "-p", "rate:=6"])
                .contains("rate is given twice")
        );
        assert!(
            error(&["n", "--ros-args", "-p", "ratee:=1.0"])
                .contains("ratee is not a parameter of sdac-node")
        );
    }

    /// A wildcard section is shared by every node of a launch: other nodes' names pass there,
    /// and only there.
    #[test]
    fn parameters_files_name_their_section() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.yaml");
        let params_file = file.to_str().unwrap();
        std::fs::write(
            &file,
            "/**:\n  ros__parameters:\n    ratee: 1.0\n    rate: 500\n",
        )
        .unwrap();
        let given = invocation(&["n", "--ros-args", "--params-file", params_file]).unwrap();
        assert_eq!(given.args.rate, 500.0);
        std::fs::write(&file, "/sdac_node:\n  ros__parameters:\n    ratee: 1.0\n").unwrap();
        assert!(
            error(&["n", "--ros-args", "--params-file", params_file])
                .contains("ratee is not a parameter of sdac-node")
        );
    }
}
