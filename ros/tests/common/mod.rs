//! Shared by the node's integration tests: synthetic policy artifacts (written by the runtime's
//! own test helper), the node as a child process on its own DDS domain, and command checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use sdac_ros::Float64MultiArray;
use sdac_ros::clock;
use sdac_ros::peer::{Peer, PeerTopics, Received, ReceivedCommand};

#[path = "../../../runtime/tests/common/mod.rs"]
mod runtime_artifacts;

pub use runtime_artifacts::Shape;

/// Writes a synthetic student policy (obs_dim 6, act_dim 2; zero is inside its action bounds,
/// so the zero safe action is all zeros) into `dir`.
pub fn write_student(dir: &Path) -> PathBuf {
    write_policy(dir, &Shape::student(2), "student.safetensors")
}

pub fn write_policy(dir: &Path, shape: &Shape, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, runtime_artifacts::synthetic(shape, 11).bytes()).unwrap();
    path
}

/// A DDS domain no other test of this run uses (tests run in parallel threads, and test
/// binaries in parallel processes: the pid spreads those).
pub fn unique_domain() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = NEXT.fetch_add(1, Ordering::Relaxed);
    10 + ((std::process::id() as u16 % 40) * 5 + offset) % 200
}

/// The node as a child process; killed if the test ends without stopping it.
pub struct NodeProcess {
    pub child: Option<Child>,
}

impl NodeProcess {
    pub fn spawn(policy: &Path, domain: u16, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_sdac-node"))
            .arg("--policy")
            .arg(policy)
            .args(extra)
            .env("ROS_DOMAIN_ID", domain.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    /// Sends `signal` and waits; returns the exit status and stderr.
    pub fn stop(mut self, signal: i32) -> (std::process::ExitStatus, String) {
        let child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A node on a fresh domain and a peer talking to it, after the first command arrived.
pub fn node_and_peer(policy: &Path, extra: &[&str]) -> (NodeProcess, Peer) {
    let domain = unique_domain();
    let peer = Peer::start(domain, &PeerTopics::default()).unwrap();
    let node = NodeProcess::spawn(policy, domain, extra);
    assert!(
        peer.wait_for(Duration::from_secs(20), |r| !r.commands.is_empty()),
        "no command from the node within 20 s on domain {domain}"
    );
    (node, peer)
}

/// Publishes observations from `make(k, stamp)` at `rate_hz` for `seconds` (absolute deadlines).
pub fn publish_for(
    peer: &Peer,
    rate_hz: f64,
    seconds: f64,
    mut make: impl FnMut(u64, u64) -> Float64MultiArray,
) {
    let period = (1e9 / rate_hz) as u64;
    let n = (rate_hz * seconds) as u64;
    let mut next = clock::monotonic_ns();
    for k in 0..n {
        next += period;
        clock::sleep_until_ns(next);
        peer.publish(make(k, clock::monotonic_ns()));
    }
}

/// Commands received at or after `since_ns` (monotonic).
pub fn commands_since(peer: &Peer, since_ns: u64) -> Vec<ReceivedCommand> {
    peer.received()
        .commands
        .iter()
        .filter(|c| c.received_ns >= since_ns)
        .cloned()
        .collect()
}

/// Panics if any command received so far has a non-finite value.
pub fn assert_no_non_finite(peer: &Peer) {
    let received = peer.received();
    let bad = received
        .commands
        .iter()
        .filter(|c| c.message.data.iter().any(|v| !v.is_finite()))
        .count();
    assert_eq!(bad, 0, "{bad} non-finite commands");
}

/// The latest value of `key` in the node's diagnostics.
pub fn diagnostic(received: &Received, key: &str) -> Option<String> {
    let last = &received.diagnostics.last()?.message;
    last.status
        .iter()
        .find(|s| s.name == sdac_ros::node::DIAGNOSTIC_NAME)?
        .value(key)
        .map(str::to_owned)
}
