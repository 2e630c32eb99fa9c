//! The node as a separate process over real DDS on this host, driven by a test-side participant:
//! its rate under a flood of observations, its answers to bad and stale observations, recovery,
//! and start-up refusals. Every test runs on its own ROS_DOMAIN_ID.

mod common;

use std::time::Duration;

use common::{
    assert_no_non_finite, commands_since, diagnostic, node_and_peer, publish_for, write_student,
};
use sdac_ros::peer::ReceivedCommand;
use sdac_ros::{Float64MultiArray, RosMessage, clock, parse_stamp, qos, stamp_label};
use serde::{Deserialize, Serialize};

const OBS_DIM: usize = 6;

fn good_obs(k: u64, stamp: u64) -> Float64MultiArray {
    let data = (0..OBS_DIM)
        .map(|i| ((k as f64) * 0.01 + i as f64 * 0.1).sin())
        .collect();
    Float64MultiArray::vector(&stamp_label("obs", stamp), data)
}

fn is_safe(c: &ReceivedCommand) -> bool {
    c.message.label() == "action" && c.message.data.iter().all(|v| *v == 0.0)
}

fn is_answer(c: &ReceivedCommand) -> bool {
    parse_stamp(c.message.label()).is_some()
}

#[test]
fn observations_at_ten_times_the_rate_leave_the_command_rate_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (node, peer) = node_and_peer(&write_student(dir.path()), &["--rate", "500"]);
    // Warm up, then one second at 5 kHz.
    publish_for(&peer, 5000.0, 0.2, good_obs);
    let from = clock::monotonic_ns();
    publish_for(&peer, 5000.0, 1.0, good_obs);
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
    let answers = commands.iter().filter(|c| is_answer(c)).count();
    assert!(
        answers as f64 >= 0.9 * commands.len() as f64,
        "{answers} of {} commands answer an observation",
        commands.len()
    );
    assert_no_non_finite(&peer);
    let (status, stderr) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
}

/// A message with the observation topic's type name but not its layout.
#[derive(Serialize, Deserialize)]
struct NotAnArray {
    byte: u8,
}

impl RosMessage for NotAnArray {
    const PACKAGE: &'static str = "std_msgs";
    const NAME: &'static str = "Float64MultiArray";
    const DEFINITION: &'static str = "uint8 byte\n";
}

#[test]
fn nan_wrong_length_and_malformed_observations_give_the_safe_action_then_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (node, mut peer) = node_and_peer(&write_student(dir.path()), &[]);
    publish_for(&peer, 1000.0, 0.2, good_obs);
    assert!(commands_since(&peer, 0).iter().any(is_answer));

    type Make = fn(u64, u64) -> Float64MultiArray;
    let bad: [(&str, Make); 3] = [
        ("NaN", |k, s| {
            let mut m = good_obs(k, s);
            m.data[2] = f64::NAN;
            m
        }),
        ("infinity", |k, s| {
            let mut m = good_obs(k, s);
            m.data[4] = f64::INFINITY;
            m
        }),
        ("wrong length", |k, s| {
            let mut m = good_obs(k, s);
            m.data.push(1.0);
            m
        }),
    ];
    for (what, make) in bad {
        let from = clock::monotonic_ns();
        publish_for(&peer, 1000.0, 0.2, make);
        let commands = commands_since(&peer, from + 50_000_000);
        assert!(!commands.is_empty());
        assert!(
            commands.iter().all(is_safe),
            "{what}: not every command is the safe action"
        );
        publish_for(&peer, 1000.0, 0.1, good_obs);
        assert!(
            commands_since(&peer, clock::monotonic_ns() - 50_000_000)
                .iter()
                .any(is_answer),
            "no recovery after {what}"
        );
    }

    let garbage = peer
        .publisher::<NotAnArray>("/sdac/observation", qos::SENSOR_DATA)
        .unwrap();
    let from = clock::monotonic_ns();
    let end = from + 200_000_000;
    while clock::monotonic_ns() < end {
        let _ = garbage.publish(NotAnArray { byte: 7 });
        std::thread::sleep(Duration::from_millis(1));
    }
    let commands = commands_since(&peer, from + 50_000_000);
    assert!(commands.iter().all(is_safe), "malformed: not all safe");
    publish_for(&peer, 1000.0, 0.2, good_obs);
    assert!(
        commands_since(&peer, clock::monotonic_ns() - 100_000_000)
            .iter()
            .any(is_answer),
        "no recovery after malformed payloads"
    );

    // Diagnostics report what happened (they come once a second).
    assert!(peer.wait_for(Duration::from_secs(3), |r| {
        diagnostic(r, "faults_malformed_total")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    }));
    let invalid: u64 = diagnostic(&peer.received(), "faults_invalid_total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(invalid >= 3, "{invalid} invalid-observation faults");
    assert_no_non_finite(&peer);
    let (status, stderr) = node.stop(libc::SIGINT);
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn stale_observations_give_the_safe_action_and_fresh_ones_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (node, peer) = node_and_peer(
        &write_student(dir.path()),
        &["--obs-timeout-ms", "20", "--safe-action", "zero"],
    );
    publish_for(&peer, 1000.0, 0.3, good_obs);
    let stopped = clock::monotonic_ns();
    std::thread::sleep(Duration::from_millis(250));
    let silent = commands_since(&peer, stopped);
    // Within the timeout the last command repeats; after it, the safe action.
    let after_timeout: Vec<_> = silent
        .iter()
        .filter(|c| c.received_ns > stopped + 60_000_000)
        .collect();
    assert!(
        after_timeout.len() > 100,
        "{} commands",
        after_timeout.len()
    );
    assert!(after_timeout.iter().all(|c| is_safe(c)));
    assert!(
        silent
            .iter()
            .filter(|c| c.received_ns < stopped + 10_000_000)
            .all(|c| !is_safe(c))
    );
    let resumed = clock::monotonic_ns();
    publish_for(&peer, 1000.0, 0.2, good_obs);
    let back = commands_since(&peer, resumed + 50_000_000);
    assert!(back.iter().filter(|c| is_answer(c)).count() > 100);
    assert!(peer.wait_for(Duration::from_secs(3), |r| {
        diagnostic(r, "faults_stale_total")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n >= 100)
    }));
    assert!(
        diagnostic(&peer.received(), "last_fault")
            .unwrap()
            .contains("stale")
    );
    assert_no_non_finite(&peer);
    let (status, stderr) = node.stop(libc::SIGTERM);
    assert!(status.success(), "{status}: {stderr}");
}

#[test]
fn a_missing_or_corrupt_policy_stops_the_node_at_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-policy.safetensors");
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(
        &corrupt,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all",
    )
    .unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    let good = std::fs::read(write_student(dir.path())).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    for (path, expect) in [
        (&missing, "cannot read"),
        (&corrupt, "safetensors"),
        (&truncated, "safetensors"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sdac-node"))
            .arg("--policy")
            .arg(path)
            .env("ROS_DOMAIN_ID", common::unique_domain().to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{path:?} was accepted");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(expect),
            "{path:?}: {stderr}"
        );
    }
}

#[test]
fn the_node_stops_cleanly_on_sigint_and_sigterm_without_observations() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_student(dir.path());
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let (node, peer) = node_and_peer(&policy, &[]);
        // Nothing published: every command is the safe action.
        std::thread::sleep(Duration::from_millis(100));
        assert!(commands_since(&peer, 0).iter().all(is_safe));
        let (status, stderr) = node.stop(signal);
        assert_eq!(status.code(), Some(0), "signal {signal}: {stderr}");
    }
}
