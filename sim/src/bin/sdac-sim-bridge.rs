//! `sdac-sim-bridge`: one MuJoCo task over ROS 2, for sim-in-the-loop runs against `sdac-node`
//! (or any controller that answers `std_msgs/Float64MultiArray` observations with commands that
//! echo the observation's stamp, see `sdac_sim::bridge`).
//!
//! Prints one line per episode and a summary; `--report` writes the same as JSON. The DDS domain
//! is `ROS_DOMAIN_ID` (0 when unset). SIGINT and SIGTERM stop it cleanly: the episode under way is
//! abandoned, the summary and report cover the episodes finished so far (`interrupted: true`),
//! a recording is finished, exit 0.
//!
//! ROS 2 arguments (`--ros-args`, as `ros2 run` and `ros2 launch` pass them) rename the node
//! (`-r __node:=`), put it in a namespace (`-r __ns:=`), remap its topics, and set its options as
//! parameters (`-p`, `--params-file`), which it offers read-only on the parameter services.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use sdac_ros::ros_args::{self, ParamValue, RosArgs};
use sdac_sim::bridge::{BridgeConfig, BridgeReport, Pacing, run_bridge};
use sdac_sim::bridge_dds::{DdsTopics, DdsTransport};
use sdac_sim::{Assets, make_env};

/// The bridge's ROS 2 parameters; each is also the command-line option of the same name.
const PARAMETERS: [&str; 15] = [
    "env",
    "rate",
    "lockstep",
    "episodes",
    "max_steps",
    "seed",
    "obs_topic",
    "cmd_topic",
    "command_timeout_ms",
    "startup_timeout_s",
    "diag_topic",
    "report",
    "record",
    "realtime_priority",
    "cpu",
];

const AFTER_HELP: &str = "\
ROS 2 arguments (as `ros2 run` and `ros2 launch` pass them): --ros-args [-r/--remap
[<node>:]<from>:=<to>] [-p/--param [<node>:]<name>:=<value>] [--params-file <yaml>] [--]
  -r __node:=<name> renames the node (default sdac_sim_bridge), -r __ns:=<namespace> puts it in
  a namespace, other remaps rename topics. Parameters (each also an option above; giving both is
  an error): env, rate (0: lockstep), lockstep, episodes, max_steps (-1: no limit), seed,
  obs_topic, cmd_topic, command_timeout_ms, startup_timeout_s, diag_topic, report, record (the
  empty string: none), realtime_priority, cpu (-1: any CPU), use_sim_time (no effect). The
  bridge offers them read-only on the ROS 2 parameter services (ros2 param list|get).";

/// Exposes a MuJoCo task over ROS 2: publishes observations, applies the commands that answer
/// them, steps the physics and reports each episode's return.
#[derive(Parser, Debug)]
#[command(name = "sdac-sim-bridge", version, after_help = AFTER_HELP)]
struct Args {
    /// Task, by Gymnasium id (e.g. InvertedPendulum-v5). Required (here or as the ROS 2
    /// parameter).
    #[arg(long)]
    env: Option<String>,
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
    match parse(std::env::args_os().collect()).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdac-sim-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The options after the ROS 2 arguments, with the node's name and namespace.
struct Invocation {
    args: Args,
    namespace: String,
    node_name: String,
    use_sim_time: bool,
}

fn parse(argv: Vec<OsString>) -> anyhow::Result<Invocation> {
    let (own, ros) = ros_args::split(argv)?;
    let matches = Args::command().get_matches_from(own);
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    apply_ros_args(args, &matches, &ros)
}

/// `args` with the ROS 2 arguments applied: parameters set options (an option given both ways
/// is refused), remaps rename the node and its topics.
fn apply_ros_args(
    mut args: Args,
    matches: &ArgMatches,
    ros: &RosArgs,
) -> anyhow::Result<Invocation> {
    const DEFAULT_NAME: &str = "sdac_sim_bridge";
    let node_name = ros
        .node_name(DEFAULT_NAME)
        .unwrap_or(DEFAULT_NAME)
        .to_owned();
    let namespace = ros.namespace(DEFAULT_NAME);
    let applied = ros_args::apply_parameters(
        "sdac-sim-bridge",
        &PARAMETERS,
        &ros.parameters(&namespace, &node_name),
        |id| matches.value_source(id) == Some(ValueSource::CommandLine),
        |name, value| set_option(&mut args, name, value),
    )?;
    report_unused_parameters(&applied);
    for topic in [&mut args.obs_topic, &mut args.cmd_topic] {
        *topic = ros.resolve_topic(topic, &namespace, &node_name);
    }
    if let Some(topic) = &mut args.diag_topic {
        *topic = ros.resolve_topic(topic, &namespace, &node_name);
    }
    Ok(Invocation {
        args,
        namespace,
        node_name,
        use_sim_time: applied.use_sim_time,
    })
}

/// Sets the option `name` of `args` from a ROS 2 parameter; `Ok(false)`: the bridge has no such
/// option.
fn set_option(args: &mut Args, name: &str, value: &ParamValue) -> anyhow::Result<bool> {
    match name {
        "env" => args.env = Some(value.to_text()?),
        "rate" => {
            let rate_hz = value.to_f64()?;
            args.rate = (rate_hz != 0.0).then_some(rate_hz);
        }
        "lockstep" => args.lockstep = value.to_bool()?,
        "episodes" => {
            args.episodes = u32::try_from(value.to_u64()?)
                .map_err(|_| anyhow::anyhow!("expected at most {} episodes", u32::MAX))?;
        }
        "max_steps" => {
            args.max_steps = match value {
                ParamValue::Integer(-1) => None,
                _ => Some(value.to_u64()?),
            };
        }
        "seed" => args.seed = value.to_u64()?,
        "obs_topic" => args.obs_topic = value.to_text()?,
        "cmd_topic" => args.cmd_topic = value.to_text()?,
        "command_timeout_ms" => args.command_timeout_ms = value.to_u64()?,
        "startup_timeout_s" => args.startup_timeout_s = value.to_u64()?,
        "diag_topic" => {
            let topic = value.to_text()?;
            args.diag_topic = (!topic.is_empty()).then_some(topic);
        }
        "report" => args.report = value.to_optional_path()?,
        "record" => args.record = value.to_optional_path()?,
        "realtime_priority" => {
            args.realtime_priority = match value.to_u64()? {
                priority @ 0..=99 => priority as i32,
                _ => bail!("expected a priority from 0 to 99"),
            };
        }
        "cpu" => args.cpu = value.to_cpu()?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Says on stderr which parameters change nothing: `use_sim_time`, and those from wildcard
/// sections that the bridge does not have.
fn report_unused_parameters(applied: &ros_args::AppliedParameters) {
    if applied.use_sim_time {
        eprintln!(
            "sdac-sim-bridge: use_sim_time has no effect: the bridge paces itself (--rate) or \
             the controller does (lockstep)"
        );
    }
    for line in applied.ignored_lines("sdac-sim-bridge", &PARAMETERS) {
        eprintln!("sdac-sim-bridge: {line}");
    }
}

/// The values the bridge runs with, as ROS 2 parameters.
fn parameter_values(args: &Args, use_sim_time: bool) -> Vec<(String, ParamValue)> {
    let integer = |n: u64| ParamValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    let text = |s: &str| ParamValue::String(s.to_owned());
    let values = [
        ("env", text(args.env.as_deref().unwrap_or(""))),
        ("rate", ParamValue::Double(args.rate.unwrap_or(0.0))),
        ("lockstep", ParamValue::Bool(args.rate.is_none())),
        ("episodes", integer(u64::from(args.episodes))),
        (
            "max_steps",
            args.max_steps.map_or(ParamValue::Integer(-1), integer),
        ),
        ("seed", integer(args.seed)),
        ("obs_topic", text(&args.obs_topic)),
        ("cmd_topic", text(&args.cmd_topic)),
        ("command_timeout_ms", integer(args.command_timeout_ms)),
        ("startup_timeout_s", integer(args.startup_timeout_s)),
        ("diag_topic", text(args.diag_topic.as_deref().unwrap_or(""))),
        ("report", ParamValue::optional_path(args.report.as_deref())),
        ("record", ParamValue::optional_path(args.record.as_deref())),
        (
            "realtime_priority",
            ParamValue::Integer(i64::from(args.realtime_priority)),
        ),
        ("cpu", ParamValue::optional_cpu(args.cpu)),
        ("use_sim_time", ParamValue::Bool(use_sim_time)),
    ];
    values
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

fn run(invocation: Invocation) -> anyhow::Result<()> {
    let Invocation {
        args,
        namespace,
        node_name,
        use_sim_time,
    } = invocation;
    let parameters = parameter_values(&args, use_sim_time);
    let env_id = args
        .env
        .as_deref()
        .context("--env (or the ROS 2 parameter env) is required")?;
    if args.lockstep && args.rate.is_some() {
        bail!("--rate (real time) and --lockstep are both given: choose one");
    }
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
    let mut env = make_env(env_id, &assets)?;
    let topics = DdsTopics {
        domain_id: sdac_ros::dds::domain_id_from_env()?,
        namespace,
        node_name,
        parameters: Some(parameters),
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
        env_id,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(argv: &[&str]) -> anyhow::Result<Invocation> {
        let (own, ros) = ros_args::split(argv.iter().map(OsString::from))?;
        let matches = Args::command().try_get_matches_from(own)?;
        let args = Args::from_arg_matches(&matches)?;
        apply_ros_args(args, &matches, &ros)
    }

    /// Every parameter the bridge offers can be given back to it as `-p name:=value` and
    /// changes nothing: the list of names, the offered values and the parser agree.
    #[test]
    fn offered_parameters_round_trip_through_the_parser() {
        let given = invocation(&[
            "sdac-sim-bridge",
            "--env",
            "Hopper-v5",
            "--rate",
            "250",
            "--max-steps",
            "4000",
            "--diag-topic",
            "/diagnostics",
            "--record",
            "run.mcap",
            "--cpu",
            "1",
        ])
        .unwrap();
        let offered = parameter_values(&given.args, false);
        let names: Vec<&str> = offered.iter().map(|(name, _)| name.as_str()).collect();
        let mut expected: Vec<&str> = PARAMETERS.to_vec();
        expected.push("use_sim_time");
        assert_eq!(names, expected);

        let mut argv = vec!["sdac-sim-bridge".to_owned(), "--ros-args".to_owned()];
        for (name, value) in &offered {
            argv.extend(["-p".to_owned(), format!("{name}:={value}")]);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let fresh = invocation(&argv).unwrap();
        assert_eq!(parameter_values(&fresh.args, fresh.use_sim_time), offered);
    }

    #[test]
    fn ros_args_rename_the_node_remap_its_topics_and_set_its_options() {
        let invocation = invocation(&[
            "sdac-sim-bridge",
            "--ros-args",
            "-r",
            "__node:=sim",
            "-r",
            "__ns:=/robot",
            "-r",
            "/sdac/command:=cmd",
            "-p",
            "env:=InvertedPendulum-v5",
            "-p",
            "episodes:=3",
            "-p",
            "max_steps:=-1",
            "-p",
            "rate:=500",
            "-p",
            "diag_topic:=~/status",
        ])
        .unwrap();
        assert_eq!(invocation.node_name, "sim");
        assert_eq!(invocation.namespace, "/robot");
        let args = invocation.args;
        assert_eq!(args.env.as_deref(), Some("InvertedPendulum-v5"));
        assert_eq!(args.obs_topic, "/sdac/observation");
        assert_eq!(args.cmd_topic, "/robot/cmd");
        assert_eq!(args.diag_topic.as_deref(), Some("/robot/sim/status"));
        assert_eq!((args.episodes, args.max_steps), (3, None));
        assert_eq!(args.rate, Some(500.0));

        // Rate 0 is lockstep.
        let lockstep = super::tests::invocation(&["b", "--rate", "100"]).unwrap();
        assert_eq!(lockstep.args.rate, Some(100.0));
        let lockstep = super::tests::invocation(&["b", "--ros-args", "-p", "rate:=0.0"]).unwrap();
        assert_eq!(lockstep.args.rate, None);
    }

    #[test]
    fn bad_parameters_are_refused_with_their_name() {
        let error = |argv: &[&str]| format!("{:#}", invocation(argv).err().unwrap());
        assert!(
            error(&["b", "--episodes", "2", "--ros-args", "-p", "episodes:=3"])
                .contains("episodes is given twice: as --episodes and as the ROS 2 parameter")
        );
        assert!(
            error(&["b", "--ros-args", "-p", "episodes:=two"]).contains(
                "ROS 2 parameter episodes = \"two\" (--ros-args -p): expected an integer"
            )
        );
        assert!(error(&["b", "--ros-args", "-p", "realtime_priority:=120"]).contains("0 to 99"));
        assert!(error(&["b", "--ros-args", "-p", "seed:=-3"]).contains("non-negative"));
        assert!(
            error(&["b", "--ros-args", "-p", "episode:=3"])
                .contains("episode is not a parameter of sdac-sim-bridge")
        );
        assert!(error(&["b", "--ros-args", "--enclave", "/e"]).contains("not supported"));
    }
}
