//! The node's timing options as a separate process over real DDS: pinned threads (`--cpu`,
//! `--dds-cpu`) and the busy-wait before deadlines (`--spin-us`) keep the rate and answer
//! observations; a CPU the process may not use is refused at start. And `sdac-node timer`, the
//! machine check: one probe per CPU, every wake-up accounted for, bad arguments refused.

mod common;

use common::{assert_no_non_finite, commands_since, diagnostic, node_and_peer, publish_for};
use sdac_ros::{Float64MultiArray, clock, parse_stamp, stamp_label};

/// `(thread name, CPUs it may run on)` for every thread of process `pid`.
fn thread_affinities(pid: u32) -> Vec<(String, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let cpus = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        threads.push((name.trim().to_owned(), cpus));
    }
    threads
}

#[test]
fn pinned_threads_and_spinning_keep_the_rate_and_answer_observations() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = *clock::allowed_cpus().unwrap().last().unwrap();
    let cpu_text = cpu.to_string();
    let (node, peer) = node_and_peer(
        &common::write_student(dir.path()),
        &[
            "--rate",
            "500",
            "--cpu",
            &cpu_text,
            "--dds-cpu",
            &cpu_text,
            "--spin-us",
            "100",
        ],
    );
    let obs = |k: u64, stamp: u64| {
        let data = (0..6).map(|i| (k as f64 * 0.01 + i as f64).sin()).collect();
        Float64MultiArray::vector(&stamp_label("obs", stamp), data)
    };
    publish_for(&peer, 500.0, 0.2, obs);
    let from = clock::monotonic_ns();
    publish_for(&peer, 500.0, 1.2, obs);
    let to = clock::monotonic_ns();
    let commands: Vec<_> = commands_since(&peer, from)
        .into_iter()
        .filter(|c| c.received_ns < to)
        .collect();
    let per_second = commands.len() as f64 / ((to - from) as f64 / 1e9);
    assert!(
        (450.0..=550.0).contains(&per_second),
        "{per_second} commands/s at 500 Hz"
    );
    let answers = commands
        .iter()
        .filter(|c| parse_stamp(c.message.label()).is_some())
        .count();
    assert!(
        answers as f64 >= 0.9 * commands.len() as f64,
        "{answers} of {} commands answer an observation",
        commands.len()
    );
    assert_no_non_finite(&peer);
    assert_eq!(
        diagnostic(&peer.received(), "control_cpu").as_deref(),
        Some(cpu_text.as_str())
    );
    let pid = node.child.as_ref().unwrap().id();
    let threads = thread_affinities(pid);
    // The control thread, the DDS thread and RustDDS's threads; the main thread stays free.
    let pinned: Vec<_> = threads
        .iter()
        .filter(|(_, cpus)| *cpus == cpu_text)
        .collect();
    for name in ["sdac-control", "sdac-dds", "RustDDS Partici"] {
        assert!(
            pinned.iter().any(|(n, _)| n == name),
            "{name} is not pinned to CPU {cpu}: {threads:?}"
        );
    }
    assert!(
        threads.len() == pinned.len() + 1 || clock::allowed_cpus().unwrap().len() == 1,
        "only the main thread may run elsewhere: {threads:?}"
    );
    let (status, stderr) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn a_cpu_the_process_may_not_use_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let policy = common::write_student(dir.path());
    let outside = (clock::allowed_cpus().unwrap().iter().max().unwrap() + 1).to_string();
    for option in ["--cpu", "--dds-cpu"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdac-node"))
            .arg("--policy")
            .arg(&policy)
            .args([option, &outside])
            .env("ROS_DOMAIN_ID", common::unique_domain().to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{option} {outside} was accepted");
        assert!(
            stderr.contains(option) && stderr.contains("not one this process may run on"),
            "{option}: {stderr}"
        );
    }
}

#[test]
fn timer_probe_reports_every_cpu_and_refuses_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("timer.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdac-node"))
        .args(["timer", "--rate", "1000", "--seconds", "0.3", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: sdac_ros::timer::TimerReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cpus: Vec<usize> = report.cpus.iter().map(|c| c.cpu).collect();
    assert_eq!(cpus, clock::allowed_cpus().unwrap());
    for cpu in &report.cpus {
        assert_eq!(cpu.wakeups, 300, "{cpu:?}");
        assert!(
            cpu.late_p50_us <= cpu.late_p99_us && cpu.late_p99_us <= cpu.late_max_us,
            "{cpu:?}"
        );
        // Missed periods are exactly the wake-ups a whole period late or more.
        assert!(
            (cpu.late_max_us >= 1000.0) == (cpu.missed_periods > 0),
            "{cpu:?}"
        );
        // Every wake-up that skipped periods was also more than a quarter period late.
        assert!(
            (cpu.late_max_us > 250.0) == (cpu.late_over_quarter_period > 0),
            "{cpu:?}"
        );
        assert!(cpu.late_over_quarter_period <= cpu.wakeups, "{cpu:?}");
        if cpu.missed_periods > 0 {
            assert!(cpu.late_over_quarter_period > 0, "{cpu:?}");
        }
    }
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(table.lines().count(), 2 + report.cpus.len(), "{table}");
    assert!(!report.idle_poll);

    // With idle CPUs polling where this user may ask for it; a clear refusal where not.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdac-node"))
        .args([
            "timer",
            "--rate",
            "1000",
            "--seconds",
            "0.1",
            "--idle-poll",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    if output.status.success() {
        let report: sdac_ros::timer::TimerReport =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert!(report.idle_poll);
        assert!(report.cpus.iter().all(|cpu| cpu.wakeups == 100));
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--idle-poll: opening /dev/cpu_dma_latency"),
            "{stderr}"
        );
    }

    for (arg, message) in [
        ("--rate=0", "--rate must be"),
        ("--seconds=-1", "--seconds must be"),
        ("--seconds=NaN", "--seconds must be"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdac-node"))
            .args(["timer", arg])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
    }
}
