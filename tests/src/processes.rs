//! Running the project's binaries (and the Python peer) as separate processes for the
//! sim-in-the-loop and interoperability tests: where they are, a DDS domain of their own, and
//! children that are stopped when a test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sdac_sim::bridge::BridgeReport;

use crate::workspace_root;

/// The release binary `name` of this workspace (`target/release/<name>`, next to the test's
/// own `deps/` folder). `cargo test --release --workspace` builds every binary the tests run.
pub fn release_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating the test binary: {e}"))?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} has no target folder", exe.display()))?;
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release --workspace` (or run the \
             tests with `cargo test --release --workspace`)",
            path.display()
        ))
    }
}

/// The Python of the tests' venv (`bash tools/setup-python.sh` creates it).
pub fn venv_python() -> Result<PathBuf, String> {
    let path = workspace_root().join(".cache/venv/bin/python");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `bash tools/setup-python.sh`",
            path.display()
        ))
    }
}

/// A DDS domain for one test, away from domain 0 and from other processes' tests running at the
/// same time on this host: `offset` (0..10) tells the tests of one binary apart.
pub fn test_domain_id(offset: u16) -> u16 {
    // ROS 2 domains go up to 232; 100..=229 leaves the common low ones alone.
    100 + ((std::process::id() % 13) as u16) * 10 + offset % 10
}

/// `sdac-node` running `policy` on DDS domain `domain` at `rate_hz`, sampler noise seeded with
/// `noise_seed` (the other options are the node's defaults).
pub fn node_command(
    policy: &Path,
    domain: u16,
    rate_hz: u32,
    noise_seed: u64,
) -> Result<Command, String> {
    let mut command = Command::new(release_binary("sdac-node")?);
    command
        .env("ROS_DOMAIN_ID", domain.to_string())
        .arg("--policy")
        .arg(policy)
        .args(["--rate", &rate_hz.to_string()])
        .args(["--seed", &noise_seed.to_string()]);
    Ok(command)
}

/// `sdac-sim-bridge` on task `env` and DDS domain `domain`, writing its JSON report to `report`;
/// pacing, episodes and the rest are for the caller to add.
pub fn bridge_command(env: &str, domain: u16, report: &Path) -> Result<Command, String> {
    let mut command = Command::new(release_binary("sdac-sim-bridge")?);
    command
        .env("ROS_DOMAIN_ID", domain.to_string())
        .args(["--env", env])
        .arg("--report")
        .arg(report);
    Ok(command)
}

/// A child process that is killed (if still running) when dropped, its output going to a file.
pub struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `command` with stdout and stderr in `log`.
    pub fn start(name: &str, mut command: Command, log: &Path) -> Result<Self, String> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own within `timeout`; kills it otherwise.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let give_up_at = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < give_up_at => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "{} did not finish within {timeout:?}; its output:\n{}",
                        self.name,
                        self.output()
                    ));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.name)),
            }
        }
    }

    /// Asks the process to stop with SIGTERM and waits up to `timeout` for it.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.signal(libc::SIGTERM, timeout)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) and waits up to `timeout` for the process to exit.
    pub fn signal(&mut self, signal: libc::c_int, timeout: Duration) -> Result<ExitStatus, String> {
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|e| format!("{} has pid {}: {e}", self.name, self.child.id()))?;
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(format!(
                "signal {signal} to {}: {}",
                self.name,
                std::io::Error::last_os_error()
            ));
        }
        self.wait(timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON report `sdac-sim-bridge --report` wrote.
pub fn read_bridge_report(path: &Path) -> Result<BridgeReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
