//! `sdac-node bench`: the node as a separate process at a fixed rate against a loopback peer.
//!
//! The peer publishes one observation per period on its own absolute-deadline clock, labelled
//! `obs;stamp=<CLOCK_MONOTONIC ns at publication>` and holding the last command it received
//! (cycled to the observation's length; zeros before the first), and records when each command
//! arrives. Observation-to-command latency is arrival time minus the stamp of the observation the
//! command answers (first arrival per stamp), on the one monotonic clock both processes share.
//! Deadline misses and compute times come from the node's diagnostics; the node's CPU use from
//! `getrusage(RUSAGE_CHILDREN)` after it exits.
//!
//! The peer stands for the robot's driver: its publishing loop and its DDS threads run
//! `SCHED_FIFO` at `--peer-priority` where granted (a peer left to `SCHED_OTHER` on a loaded host
//! measures its own wake-ups, not the node's), optionally pinned to `--peer-cpu`. Arguments after
//! `--` go to the node (e.g. `-- --cpu 1 --spin-us 50`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::clock;
use crate::msg::{DiagnosticArray, Float64MultiArray, parse_stamp, stamp_label};
use crate::node::DIAGNOSTIC_NAME;
use crate::peer::{Peer, PeerTopics};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The policy artifact the node runs.
    #[arg(long)]
    pub policy: PathBuf,
    /// Control rate of the node and publication rate of the peer, Hz.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Measured duration, after `--warmup-seconds`.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// DDS domain for the run (default: ROS_DOMAIN_ID if set, else one derived from the pid).
    #[arg(long)]
    pub domain_id: Option<u16>,
    /// SCHED_FIFO priority of the peer's threads (0: leave them SCHED_OTHER).
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(i32).range(0..=99))]
    pub peer_priority: i32,
    /// Pin the peer's threads to this CPU (default: any).
    #[arg(long)]
    pub peer_cpu: Option<usize>,
    /// Arguments passed on to the node (after `--`).
    #[arg(last = true)]
    pub node_args: Vec<String>,
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[rank]
}

fn diag_value(diag: &DiagnosticArray, key: &str) -> Option<f64> {
    diag.status
        .iter()
        .find(|s| s.name == DIAGNOSTIC_NAME)?
        .value(key)?
        .parse()
        .ok()
}

/// Kills the child on every exit path that does not wait for it.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.seconds > 0.0) {
        bail!("--rate and --seconds must be positive");
    }
    let policy = sdac_runtime::Policy::load(&args.policy)
        .with_context(|| format!("loading policy {}", args.policy.display()))?;
    let obs_dim = policy.obs_dim();
    drop(policy);
    let domain_id = match args.domain_id {
        Some(id) => id,
        None => match std::env::var("ROS_DOMAIN_ID") {
            Ok(_) => crate::dds::domain_id_from_env()?,
            Err(_) => 100 + (std::process::id() % 100) as u16,
        },
    };
    let peer_cpu = args
        .peer_cpu
        .map(clock::check_cpu)
        .transpose()
        .context("--peer-cpu")?;
    let exe = std::env::current_exe().context("locating the sdac-node binary")?;
    // Started before this thread changes its scheduling, which the node would inherit.
    let child = Command::new(exe)
        .arg("--policy")
        .arg(&args.policy)
        .arg("--rate")
        .arg(args.rate.to_string())
        .args(&args.node_args)
        .env("ROS_DOMAIN_ID", domain_id.to_string())
        .stdin(Stdio::null())
        .spawn()
        .context("starting the node")?;
    let mut child = ChildGuard(Some(child));
    // The peer's DDS threads, started by `Peer::start`, inherit this thread's setup.
    let peer_fifo = if args.peer_priority > 0 {
        clock::setup_realtime_thread(args.peer_priority, peer_cpu).fifo
    } else {
        if let Some(cpu) = peer_cpu {
            clock::pin_current_thread(cpu)
                .with_context(|| format!("pinning the peer to CPU {cpu}"))?;
        }
        false
    };
    let peer = Peer::start(domain_id, &PeerTopics::default())?;
    let started_ns = clock::monotonic_ns();
    if !peer.wait_for(Duration::from_secs(30), |r| !r.commands.is_empty()) {
        bail!("no command from the node within 30 s (DDS discovery on domain {domain_id})");
    }

    let period_ns = (1e9 / args.rate).round() as u64;
    let warmup_periods = (args.warmup_seconds * args.rate).round() as u64;
    let measured_periods = (args.seconds * args.rate).round() as u64;
    // Observations keep coming for a tail after the measurement, so that the diagnostics
    // windows that overlap its end see a healthy stream too.
    let tail_periods = (1.5 * args.rate).round() as u64;
    let mut command = vec![0.0f64; 0];
    let mut next_ns = clock::monotonic_ns() + period_ns;
    let (mut measure_from_ns, mut measure_to_ns) = (0, 0);
    let mut seen_commands = 0;
    for k in 0..warmup_periods + measured_periods + tail_periods {
        clock::sleep_until_ns(next_ns);
        next_ns += period_ns;
        if k == warmup_periods {
            measure_from_ns = clock::monotonic_ns();
        }
        if k == warmup_periods + measured_periods {
            measure_to_ns = clock::monotonic_ns();
        }
        {
            let received = peer.received();
            if received.commands.len() > seen_commands {
                seen_commands = received.commands.len();
                command.clone_from(&received.commands[seen_commands - 1].message.data);
            }
        }
        let data: Vec<f64> = (0..obs_dim)
            .map(|i| match command.len() {
                0 => 0.0,
                n => command[i % n],
            })
            .collect();
        let stamp = clock::monotonic_ns();
        peer.publish(Float64MultiArray::vector(&stamp_label("obs", stamp), data));
    }

    let mut child_process = child.0.take().context("node process handle")?;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child_process.id() as libc::pid_t, libc::SIGTERM) };
    let status = child_process.wait().context("waiting for the node")?;
    let node_wall_ns = clock::monotonic_ns() - started_ns;
    let node_cpu_ns = clock::cpu_time_ns(true);
    if !status.success() {
        bail!("the node exited with {status} after SIGTERM");
    }

    let received = peer.received();
    let mut first_arrival = std::collections::BTreeMap::new();
    for c in &received.commands {
        if let Some(stamp) = parse_stamp(c.message.label())
            && stamp >= measure_from_ns
            && stamp < measure_to_ns
        {
            first_arrival.entry(stamp).or_insert(c.received_ns);
        }
    }
    let mut latency: Vec<u64> = first_arrival
        .iter()
        .map(|(stamp, arrival)| arrival.saturating_sub(*stamp))
        .collect();
    latency.sort_unstable();
    let commands_in_window = received
        .commands
        .iter()
        .filter(|c| c.received_ns >= measure_from_ns && c.received_ns < measure_to_ns)
        .count();
    let non_finite = received
        .commands
        .iter()
        .filter(|c| c.message.data.iter().any(|v| !v.is_finite()))
        .count();
    // Each report covers the second before it arrives: keep those inside the measurement.
    let windows: Vec<&DiagnosticArray> = received
        .diagnostics
        .iter()
        .filter(|d| {
            d.received_ns > measure_from_ns + 1_050_000_000
                && d.received_ns <= measure_to_ns + 1_000_000_000
        })
        .map(|d| &d.message)
        .collect();
    if windows.is_empty() {
        bail!("no diagnostics window inside the measurement: run longer");
    }
    // A counter since the node's start, over the measurement: its value in the last window minus
    // its value in the report just before the first one.
    let before = received
        .diagnostics
        .iter()
        .rfind(|d| d.received_ns <= measure_from_ns + 1_050_000_000)
        .map(|d| &d.message);
    let total_over_measurement = |key: &str| -> u64 {
        let at = |d: Option<&DiagnosticArray>| d.and_then(|d| diag_value(d, key)).unwrap_or(0.0);
        (at(windows.last().copied()) - at(before)).max(0.0) as u64
    };
    let sum = |key: &str| -> u64 {
        windows
            .iter()
            .filter_map(|d| diag_value(d, key))
            .map(|v| v as u64)
            .sum()
    };
    let worst = |key: &str| {
        windows
            .iter()
            .filter_map(|d| diag_value(d, key))
            .fold(0.0f64, f64::max)
    };
    let median = |key: &str| {
        let mut values: Vec<f64> = windows.iter().filter_map(|d| diag_value(d, key)).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    let compute_p50 = median("compute_p50_us");
    let measured_s = (measure_to_ns - measure_from_ns) as f64 / 1e9;
    let us = |ns: u64| ns as f64 / 1e3;

    println!(
        "sdac-node bench: {} Hz for {measured_s:.1} s, policy {}, obs_dim {obs_dim}, domain {domain_id}, node args {:?}",
        args.rate,
        args.policy.display(),
        args.node_args.join(" ")
    );
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| commands received / s | {:.1} |",
        commands_in_window as f64 / measured_s
    );
    println!(
        "| node periods / deadline misses ({} diagnostics windows) | {} / {} |",
        windows.len(),
        sum("periods"),
        sum("deadline_misses")
    );
    println!(
        "| deadline misses by cause: overrun / late wake-up | {} / {} |",
        total_over_measurement("deadline_misses_overrun_total"),
        total_over_measurement("deadline_misses_late_wakeup_total")
    );
    println!(
        "| observations answered | {} of {measured_periods} |",
        latency.len()
    );
    println!(
        "| obs-to-command latency p50 / p99 / max | {:.0} / {:.0} / {:.0} us |",
        us(quantile(&latency, 0.5)),
        us(quantile(&latency, 0.99)),
        us(latency.last().copied().unwrap_or(0))
    );
    println!(
        "| node compute p50 (median window) / p99 (worst window) / max | {compute_p50:.1} / {:.1} / {:.1} us |",
        worst("compute_p99_us"),
        worst("compute_max_us")
    );
    println!(
        "| node receipt-to-publish p50 (median window) / p99 / max (worst window) | {:.1} / {:.1} / {:.1} us |",
        median("latency_p50_us"),
        worst("latency_p99_us"),
        worst("latency_max_us")
    );
    println!(
        "| node wake-up lateness max | {:.1} us |",
        worst("wake_late_max_us")
    );
    println!(
        "| safe-action periods (faults) | {} |",
        sum("commands_safe")
    );
    println!("| non-finite commands | {non_finite} |");
    let scheduling = windows
        .last()
        .and_then(|d| d.status.iter().find(|s| s.name == DIAGNOSTIC_NAME))
        .and_then(|s| s.value("scheduling"))
        .unwrap_or("unknown");
    let control_cpu = windows
        .last()
        .and_then(|d| d.status.iter().find(|s| s.name == DIAGNOSTIC_NAME))
        .and_then(|s| s.value("control_cpu"))
        .unwrap_or("unknown");
    println!("| control thread scheduling, CPU | {scheduling}, {control_cpu} |");
    println!(
        "| peer scheduling, CPU | {}, {} |",
        if peer_fifo {
            format!("SCHED_FIFO {}", args.peer_priority)
        } else {
            "SCHED_OTHER".to_owned()
        },
        peer_cpu.map_or("any".to_owned(), |cpu| cpu.to_string())
    );
    println!("| grid phase shifts | {} |", sum("phase_shifts"));
    println!(
        "| node CPU (user+sys) | {:.1} % of one core |",
        100.0 * node_cpu_ns as f64 / node_wall_ns as f64
    );
    Ok(())
}
