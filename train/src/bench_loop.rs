//! `sdac bench loop`: `sdac-node` against `sdac-sim-bridge` stepping a task in real time at the
//! same rate, as separate processes over DDS on this host, for a fixed time. Prints the bridge's
//! observation-to-command latency (observation published -> the command answering it received,
//! on the bridge's monotonic clock), its step overruns, the node's deadline misses (from its
//! `/diagnostics`, which the bridge keeps) and the CPU time of both processes (from
//! `/proc/<pid>/stat`, sampled every 50 ms while they run). Before the loop, `sdac-node timer`
//! probes the machine itself (one `SCHED_FIFO` timer thread per CPU at the same rate): the
//! periods it misses are the floor no control loop on this machine can go below.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sdac_sim::bridge::BridgeReport;

use crate::pipeline::{KillOnDrop, read_json, sibling};

#[derive(clap::Args)]
pub struct LoopBenchArgs {
    /// The policy artifact (safetensors) the node runs.
    #[arg(long)]
    policy: PathBuf,
    /// The task the bridge simulates (the policy's task).
    #[arg(long, default_value = "InvertedPendulum-v5")]
    env: String,
    /// Control rate of the node and step rate of the bridge, Hz.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long the loop runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Reset seed of the first episode and the node's noise seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pin the bridge's threads to this CPU (its `--cpu`).
    #[arg(long)]
    bridge_cpu: Option<usize>,
    /// SCHED_FIFO priority of the bridge's stepping thread, its DDS threads 10 below (its
    /// `--realtime-priority`; 0: SCHED_OTHER). The node's control thread runs at 80, its DDS
    /// threads at 70.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(i32).range(0..=99))]
    bridge_priority: i32,
    /// Seconds of `sdac-node timer` before the loop (0: no probe). The probe keeps idle CPUs
    /// polling when the node arguments do (`--idle-poll`), so that it sees the same machine.
    #[arg(long, default_value_t = 10)]
    probe_seconds: u64,
    /// Arguments passed on to `sdac-node` (after `--`, e.g. `-- --cpu 1 --dds-cpu 1`).
    #[arg(last = true)]
    node_args: Vec<String>,
}

/// CPU time a process has used so far, from `/proc/<pid>/stat` (user + system).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3, the state.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

pub fn bench_loop(args: &LoopBenchArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of Hz, got {}", args.rate);
    }
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    if !args.policy.is_file() {
        bail!("--policy {} is not a file", args.policy.display());
    }
    let exe = std::env::current_exe().context("locating the sdac binary")?;
    let bin_dir = exe.parent().unwrap_or(Path::new("."));
    let bridge = sibling(bin_dir, "sdac-sim-bridge")?;
    let node = sibling(bin_dir, "sdac-node")?;
    let steps = (args.seconds as f64 * args.rate).round() as u64;
    // A domain of its own unless ROS_DOMAIN_ID names one (ROS 2 domains are 0..=232).
    let domain = std::env::var("ROS_DOMAIN_ID")
        .unwrap_or_else(|_| (1 + std::process::id() % 200).to_string());
    let report_path =
        std::env::temp_dir().join(format!("sdac-bench-loop-{}.json", std::process::id()));
    let rate = args.rate.to_string();
    let seed = args.seed.to_string();
    let probe = (args.probe_seconds > 0)
        .then(|| {
            let idle_poll = args.node_args.iter().any(|a| a == "--idle-poll");
            probe_timer(&node, &rate, args.probe_seconds, idle_poll)
        })
        .transpose()?;

    let mut node_process = KillOnDrop(
        Command::new(&node)
            .env("ROS_DOMAIN_ID", &domain)
            .arg("--policy")
            .arg(&args.policy)
            .args(["--rate", &rate, "--seed", &seed])
            .args(&args.node_args)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", node.display()))?,
    );
    let started = Instant::now();
    let mut bridge_process = KillOnDrop(
        Command::new(&bridge)
            .env("ROS_DOMAIN_ID", &domain)
            .args(["--env", &args.env, "--rate", &rate, "--seed", &seed])
            .args(["--episodes", &u32::MAX.to_string()])
            .args(["--max-steps", &steps.to_string()])
            .args(["--diag-topic", "/diagnostics"])
            .args(["--realtime-priority", &args.bridge_priority.to_string()])
            .args(
                args.bridge_cpu
                    .iter()
                    .flat_map(|cpu| ["--cpu".to_owned(), cpu.to_string()]),
            )
            .arg("--report")
            .arg(&report_path)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bridge.display()))?,
    );
    eprintln!(
        "bench loop: {} at {rate} Hz for {} s on ROS_DOMAIN_ID={domain}",
        args.env, args.seconds
    );
    let give_up_at = started + Duration::from_secs(args.seconds + 60);
    let mut bridge_cpu = Duration::ZERO;
    let status = loop {
        bridge_cpu = cpu_time(bridge_process.0.id()).unwrap_or(bridge_cpu);
        if let Some(status) = bridge_process.0.try_wait()? {
            break status;
        }
        if let Some(status) = node_process.0.try_wait()? {
            bail!("sdac-node exited ({status}) before the bridge finished");
        }
        if Instant::now() > give_up_at {
            bail!("the loop did not finish within {} s", args.seconds + 60);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let node_cpu = cpu_time(node_process.0.id()).unwrap_or_default();
    if !status.success() {
        bail!("sdac-sim-bridge failed ({status})");
    }
    node_process.interrupt_and_wait()?;
    let report: BridgeReport = read_json(&report_path)?;
    // Best effort: a leftover file in the temporary folder is harmless.
    let _ = std::fs::remove_file(&report_path);
    print_table(
        args,
        &report,
        elapsed,
        node_cpu,
        bridge_cpu,
        probe.as_deref(),
    );
    Ok(())
}

/// What `sdac-node timer` saw on one CPU.
struct CpuProbe {
    cpu: u64,
    missed_periods: u64,
    late_over_quarter_period: u64,
    late_p99_us: f64,
    late_max_us: f64,
}

/// Runs `sdac-node timer` at `rate` for `seconds` and reads its per-CPU results.
fn probe_timer(
    node: &Path,
    rate: &str,
    seconds: u64,
    idle_poll: bool,
) -> anyhow::Result<Vec<CpuProbe>> {
    let json_path =
        std::env::temp_dir().join(format!("sdac-bench-timer-{}.json", std::process::id()));
    eprintln!("bench loop: probing the machine's timer for {seconds} s (sdac-node timer)");
    let status = Command::new(node)
        .args(["timer", "--rate", rate, "--seconds", &seconds.to_string()])
        .args(idle_poll.then_some("--idle-poll"))
        .arg("--json")
        .arg(&json_path)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("starting {} timer", node.display()))?;
    if !status.success() {
        bail!("sdac-node timer failed ({status})");
    }
    let report: serde_json::Value = read_json(&json_path)?;
    // Best effort: a leftover file in the temporary folder is harmless.
    let _ = std::fs::remove_file(&json_path);
    let field = |cpu: &serde_json::Value, key: &str| {
        cpu.get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("sdac-node timer's report has no number `{key}`"))
    };
    report
        .get("cpus")
        .and_then(serde_json::Value::as_array)
        .context("sdac-node timer's report has no `cpus`")?
        .iter()
        .map(|cpu| {
            Ok(CpuProbe {
                cpu: field(cpu, "cpu")? as u64,
                missed_periods: field(cpu, "missed_periods")? as u64,
                late_over_quarter_period: field(cpu, "late_over_quarter_period")? as u64,
                late_p99_us: field(cpu, "late_p99_us")?,
                late_max_us: field(cpu, "late_max_us")?,
            })
        })
        .collect()
}

fn print_table(
    args: &LoopBenchArgs,
    report: &BridgeReport,
    elapsed: Duration,
    node_cpu: Duration,
    bridge_cpu: Duration,
    probe: Option<&[CpuProbe]>,
) {
    let latency = &report.command_latency;
    let diagnostic = |key: &str| {
        report
            .controller_diagnostics
            .as_ref()
            .and_then(|d| d.get(key).cloned())
            .unwrap_or_else(|| "not reported".to_owned())
    };
    let share = |cpu: Duration| format!("{:.0}", 100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64());
    let per_cpu = |value: &dyn Fn(&CpuProbe) -> String| {
        probe.map_or("not probed".to_owned(), |cpus| {
            cpus.iter()
                .map(|cpu| format!("CPU {}: {}", cpu.cpu, value(cpu)))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let rows = [
        ("task", args.env.clone()),
        ("rate (Hz)", format!("{}", args.rate)),
        ("node arguments", args.node_args.join(" ")),
        (
            "bridge pinned to CPU",
            args.bridge_cpu
                .map_or("any".to_owned(), |cpu| cpu.to_string()),
        ),
        (
            "bridge SCHED_FIFO priority",
            args.bridge_priority.to_string(),
        ),
        ("wall time (s)", format!("{:.1}", elapsed.as_secs_f64())),
        ("bridge steps", report.steps.to_string()),
        ("episodes finished", report.episodes.len().to_string()),
        (
            "commands answering an observation",
            latency.count.to_string(),
        ),
        ("obs -> command p50 (us)", format!("{:.0}", latency.p50_us)),
        ("obs -> command p99 (us)", format!("{:.0}", latency.p99_us)),
        ("obs -> command max (us)", format!("{:.0}", latency.max_us)),
        (
            "bad (NaN / wrong length) commands",
            report.bad_commands.to_string(),
        ),
        ("bridge step overruns", report.step_overruns.to_string()),
        ("node deadline misses", diagnostic("deadline_misses_total")),
        (
            "node deadline misses: overrun / late wake-up",
            format!(
                "{} / {}",
                diagnostic("deadline_misses_overrun_total"),
                diagnostic("deadline_misses_late_wakeup_total")
            ),
        ),
        (
            "timer probe before the loop (s)",
            args.probe_seconds.to_string(),
        ),
        (
            "timer probe missed periods",
            per_cpu(&|cpu| cpu.missed_periods.to_string()),
        ),
        (
            "timer probe wake-ups > 1/4 period late",
            per_cpu(&|cpu| cpu.late_over_quarter_period.to_string()),
        ),
        (
            "timer probe late p99 / max (us)",
            per_cpu(&|cpu| format!("{:.0} / {:.0}", cpu.late_p99_us, cpu.late_max_us)),
        ),
        ("node compute p99 (us)", diagnostic("compute_p99_us")),
        ("node CPU (% of one core)", share(node_cpu)),
        ("bridge CPU (% of one core)", share(bridge_cpu)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | value |", "sdac bench loop");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (key, value) in rows {
        println!("| {key:width$} | {value} |");
    }
}
