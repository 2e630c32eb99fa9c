//! Checkpoints lose nothing and survive a crash while being written.
//!
//! Contract: on CPU, with the same seed, a run that is killed and resumed from its latest
//! checkpoint writes the same metrics (every value except the wall-clock `charts/SPS`) and the
//! same final policy, byte for byte, as a run that was never interrupted. A process killed in
//! the middle of writing a checkpoint, or one whose disk refuses the write, leaves the previous
//! checkpoint intact and resumable. Real processes, real signals, real files: the "kill" is
//! SIGKILL, the mid-write kill and the full disk come from the kernel's file-size limit
//! (SIGXFSZ, or EFBIG when that signal is ignored).

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A short run on small networks, with checkpoints at 2000 and 4000 steps.
fn args(algo: &str) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--env", "InvertedPendulum-v5", "--preset", "ci"]
        .map(String::from)
        .to_vec();
    args.extend(["--algo".into(), algo.into(), "--seed".into(), "3".into()]);
    for set in [
        "total_steps=5000",
        "warmup_steps=500",
        "eval_every=1000",
        "eval_episodes=2",
        "checkpoint_every=2000",
        "hidden=[16,16]",
        "sdac.candidates=4",
        "sdac.reverse_samples=4",
    ] {
        args.extend(["--set".into(), set.into()]);
    }
    args
}

fn sdac() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sdac"))
}

fn train(algo: &str, run_dir: &Path) -> Output {
    sdac()
        .args(args(algo))
        .arg("--out")
        .arg(run_dir)
        .output()
        .expect("the sdac binary runs")
}

fn resume(run_dir: &Path) -> Output {
    sdac()
        .arg("train")
        .arg("--resume")
        .arg(run_dir)
        .output()
        .expect("the sdac binary runs")
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `metrics.csv` without the wall-clock rows.
fn metrics(run_dir: &Path) -> String {
    std::fs::read_to_string(run_dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .filter(|line| !line.contains("charts/SPS"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn latest_checkpoint(run_dir: &Path) -> Option<String> {
    std::fs::read_to_string(run_dir.join("checkpoints/latest")).ok()
}

fn assert_same_run(resumed: &Path, uninterrupted: &Path) {
    assert_eq!(
        metrics(resumed),
        metrics(uninterrupted),
        "metrics differ after resume"
    );
    assert_eq!(
        std::fs::read(resumed.join("final.safetensors")).unwrap(),
        std::fs::read(uninterrupted.join("final.safetensors")).unwrap(),
        "final policies differ after resume"
    );
}

/// The uninterrupted reference run of `algo`, in `dir/reference`.
fn reference(algo: &str, dir: &Path) -> PathBuf {
    let run_dir = dir.join("reference");
    assert_success(&train(algo, &run_dir), "the uninterrupted run");
    run_dir
}

fn killed_after_first_checkpoint_then_resumed_equals_uninterrupted(algo: &str) {
    let dir = tempfile::tempdir().unwrap();
    let uninterrupted = reference(algo, dir.path());

    let run_dir = dir.path().join("killed");
    let mut child = sdac()
        .args(args(algo))
        .arg("--out")
        .arg(&run_dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while latest_checkpoint(&run_dir).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed by SIGKILL");
    assert!(!run_dir.join("final.safetensors").exists());

    assert_success(&resume(&run_dir), "the resumed run");
    assert_same_run(&run_dir, &uninterrupted);
}

#[test]
fn sac_killed_and_resumed_equals_uninterrupted() {
    killed_after_first_checkpoint_then_resumed_equals_uninterrupted("sac");
}

#[test]
fn sdac_killed_and_resumed_equals_uninterrupted() {
    killed_after_first_checkpoint_then_resumed_equals_uninterrupted("sdac");
}

/// Runs SAC with files limited to `max_file_bytes`: the replay buffer outgrows the limit
/// between the first checkpoint (2000 transitions, 88 kB) and the second (4000, 176 kB);
/// the logs and the other checkpoint files stay below it. With `ignore_signal`, the write
/// fails with EFBIG, as on a full disk; without, SIGXFSZ kills the process mid-write.
fn train_with_file_limit(run_dir: &Path, ignore_signal: bool) -> Output {
    const MAX_FILE_BYTES: libc::rlim_t = 128 * 1024;
    let mut command = sdac();
    command.args(args("sac")).arg("--out").arg(run_dir);
    // SAFETY: the closure only calls async-signal-safe functions (setrlimit, signal).
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: MAX_FILE_BYTES,
                rlim_max: MAX_FILE_BYTES,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ignore_signal {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
            Ok(())
        });
    }
    command.output().expect("the sdac binary runs")
}

#[test]
fn a_kill_while_checkpointing_leaves_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let uninterrupted = reference("sac", dir.path());
    let run_dir = dir.path().join("killed");
    let output = train_with_file_limit(&run_dir, false);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGXFSZ),
        "killed mid-write: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(latest_checkpoint(&run_dir).as_deref(), Some("step-2000"));
    assert!(
        run_dir.join("checkpoints/.partial-step-4000").is_dir(),
        "the kill came while step-4000 was being written"
    );

    assert_success(&resume(&run_dir), "the resumed run");
    assert!(!run_dir.join("checkpoints/.partial-step-4000").exists());
    assert_same_run(&run_dir, &uninterrupted);
}

#[test]
fn a_full_disk_while_checkpointing_stops_cleanly_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("full");
    let output = train_with_file_limit(&run_dir, true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writing checkpoint step-4000 (the previous checkpoint is intact)"),
        "{stderr}"
    );
    assert_eq!(latest_checkpoint(&run_dir).as_deref(), Some("step-2000"));
    assert!(!run_dir.join("checkpoints/.partial-step-4000").exists());
    assert_success(&resume(&run_dir), "resuming after the disk was freed");
}

#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("diverges");
    let output = sdac()
        .args(args("sac"))
        .args(["--set", "warmup_steps=2500", "--set", "critic_lr=1e30"])
        .arg("--out")
        .arg(&run_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("training stopped"), "{stderr}");
    assert!(stderr.contains("NaN") || stderr.contains("inf"), "{stderr}");
    assert_eq!(latest_checkpoint(&run_dir).as_deref(), Some("step-2000"));
    assert!(!run_dir.join("final.safetensors").exists());
}

#[test]
fn resume_needs_a_checkpoint_and_refuses_other_settings() {
    let dir = tempfile::tempdir().unwrap();
    let output = resume(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("run.toml"), "{stderr}");

    let output = sdac()
        .args(["train", "--resume"])
        .arg(dir.path())
        .args(["--set", "batch_size=3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be used with"),
        "clap names the conflict"
    );
}

#[test]
fn an_existing_run_directory_is_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "results").unwrap();
    let output = sdac()
        .args(args("sac"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(dir.path().join("keep.txt").exists(), "nothing was removed");
}
