//! `sdac-node timer`: what this machine gives a real-time thread, before any policy runs.
//!
//! One `SCHED_FIFO` thread per CPU the process may use, pinned to it, sleeps to absolute
//! deadlines one period apart on `CLOCK_MONOTONIC` (as cyclictest does) and records how late
//! each wake-up is. A wake-up a whole period late or more counts the periods it skipped as
//! missed, the rule the node's control loop counts its own deadline misses by. A machine where
//! this probe misses periods cannot hold the control rate with any program, the node included.
//! It also counts wake-ups more than a quarter period late: the node decides at the latest at
//! three quarters of a period, so a wake-up that late at its decision point misses too.
//! `--idle-poll` keeps idle CPUs polling while it runs, as the node's option of that name does.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::clock;

#[derive(clap::Args, Debug)]
pub struct TimerArgs {
    /// Wake-up rate of each probe thread, Hz (the control rate to check).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long each probe thread runs.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// SCHED_FIFO priority of the probe threads (the node's control thread runs at 80).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(i32).range(1..=99))]
    pub priority: i32,
    /// Keep idle CPUs polling instead of halting while the probe runs (as `sdac-node
    /// --idle-poll` does: /dev/cpu_dma_latency held at 0; needs root).
    #[arg(long)]
    pub idle_poll: bool,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One CPU's probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuTimer {
    pub cpu: usize,
    /// Whether the thread got `SCHED_FIFO` (it runs `SCHED_OTHER` where refused).
    pub fifo: bool,
    pub wakeups: u64,
    /// Periods skipped by wake-ups a whole period late or more.
    pub missed_periods: u64,
    /// Wake-ups more than a quarter period late.
    pub late_over_quarter_period: u64,
    pub late_p50_us: f64,
    pub late_p99_us: f64,
    pub late_max_us: f64,
}

/// The probe of every CPU, run at the same time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimerReport {
    pub rate_hz: f64,
    pub seconds: f64,
    /// Whether idle CPUs were kept polling.
    pub idle_poll: bool,
    pub cpus: Vec<CpuTimer>,
}

/// Runs the probe on every allowed CPU at once and returns what each saw.
pub fn probe(
    rate_hz: f64,
    seconds: f64,
    priority: i32,
    idle_poll: bool,
) -> anyhow::Result<TimerReport> {
    if !(rate_hz.is_finite() && rate_hz > 0.0 && rate_hz <= 100_000.0) {
        bail!("--rate must be a number of Hz in (0, 100000], got {rate_hz}");
    }
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], got {seconds}");
    }
    let period_ns = (1e9 / rate_hz).round() as u64;
    let wakeups = (seconds * rate_hz).ceil() as usize;
    let cpus = clock::allowed_cpus().context("listing the CPUs this process may use")?;
    let _idle_poll = idle_poll
        .then(clock::IdlePoll::request)
        .transpose()
        .context("--idle-poll: opening /dev/cpu_dma_latency")?;
    let threads: Vec<_> = cpus
        .into_iter()
        .map(|cpu| {
            std::thread::Builder::new()
                .name(format!("timer-probe-{cpu}"))
                .spawn(move || probe_cpu(cpu, period_ns, wakeups, priority))
                .context("starting a probe thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let cpus = threads
        .into_iter()
        .map(|thread| {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a probe thread panicked"))?
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(TimerReport {
        rate_hz,
        seconds,
        idle_poll,
        cpus,
    })
}

fn probe_cpu(
    cpu: usize,
    period_ns: u64,
    wakeups: usize,
    priority: i32,
) -> anyhow::Result<CpuTimer> {
    let setup = clock::setup_realtime_thread(priority, Some(cpu));
    if setup.cpu != Some(cpu) {
        bail!("could not pin a probe thread to CPU {cpu}");
    }
    let mut late_ns = Vec::with_capacity(wakeups);
    let mut missed_periods = 0;
    let mut late_over_quarter_period = 0;
    let mut deadline_ns = clock::monotonic_ns() + period_ns;
    for _ in 0..wakeups {
        clock::sleep_until_ns(deadline_ns);
        let late = clock::monotonic_ns().saturating_sub(deadline_ns);
        late_ns.push(late);
        let skipped = late / period_ns;
        missed_periods += skipped;
        late_over_quarter_period += u64::from(late > period_ns / 4);
        deadline_ns += (1 + skipped) * period_ns;
    }
    late_ns.sort_unstable();
    let at = |q: f64| {
        let rank = ((late_ns.len() as f64 * q).ceil() as usize).clamp(1, late_ns.len()) - 1;
        late_ns[rank] as f64 / 1e3
    };
    Ok(CpuTimer {
        cpu,
        fifo: setup.fifo,
        wakeups: late_ns.len() as u64,
        missed_periods,
        late_over_quarter_period,
        late_p50_us: at(0.5),
        late_p99_us: at(0.99),
        late_max_us: at(1.0),
    })
}

/// `sdac-node timer`: runs the probe, prints a table, writes the JSON when asked.
pub fn run(args: TimerArgs) -> anyhow::Result<()> {
    eprintln!(
        "timer probe: one SCHED_FIFO {} thread per CPU at {} Hz for {} s{}",
        args.priority,
        args.rate,
        args.seconds,
        if args.idle_poll {
            ", idle CPUs polling"
        } else {
            ""
        }
    );
    let report = probe(args.rate, args.seconds, args.priority, args.idle_poll)?;
    println!(
        "| CPU | SCHED_FIFO | wake-ups | missed periods | wake-ups > 1/4 period late | late p50 / p99 / max (us) |"
    );
    println!("|---|---|---|---|---|---|");
    for cpu in &report.cpus {
        println!(
            "| {} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} |",
            cpu.cpu,
            if cpu.fifo { "yes" } else { "no (refused)" },
            cpu.wakeups,
            cpu.missed_periods,
            cpu.late_over_quarter_period,
            cpu.late_p50_us,
            cpu.late_p99_us,
            cpu.late_max_us
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
