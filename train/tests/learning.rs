//! Learning is proven, not assumed: trained with the `ci` preset (small networks, one
//! environment, a few minutes on two cores), SDAC and SAC each reach an evaluation return of at
//! least 900 on InvertedPendulum-v5 (at most 1000: one point per step balanced, 1000 steps).
//! A random policy scores about 5. Each test also checks what the run leaves behind: the
//! resolved config, the CSV and TensorBoard logs, the learning curve and the final policy,
//! which `sdac eval` loads.

use std::path::Path;
use std::process::Command;

const TASK: &str = "InvertedPendulum-v5";
const BAR: f64 = 900.0;

fn train(algo: &str, seed: u64, run_dir: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(["train", "--env", TASK, "--algo", algo, "--preset", "ci"])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(run_dir)
        .output()
        .expect("the sdac binary runs");
    assert!(
        output.status.success(),
        "training failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The values of `tag` in the run's `metrics.csv`, in order.
fn logged_values(run_dir: &Path, wanted: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).expect("metrics.csv");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split(',');
            let (_step, tag, value) = (cells.next()?, cells.next()?, cells.next()?);
            (tag == wanted).then(|| value.parse().expect("a number"))
        })
        .collect()
}

fn check_learns(algo: &str) {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    train(algo, 0, &run_dir);

    let returns = logged_values(&run_dir, "eval/episodic_return");
    assert!(returns.len() >= 5, "too few evaluations: {returns:?}");
    let best = returns.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        best >= BAR,
        "{algo} did not learn {TASK}: best evaluation return {best:.1} < {BAR} ({returns:?})"
    );
    assert!(
        returns[0] < BAR,
        "the first evaluation already passes the bar: the test proves nothing ({returns:?})"
    );

    // The losses, including the policy's (logged only every `policy_delay` updates).
    for tag in [
        "charts/episodic_return",
        "charts/SPS",
        "losses/qf1_loss",
        "losses/qf2_loss",
        "losses/actor_loss",
        "losses/alpha",
    ] {
        let values = logged_values(&run_dir, tag);
        assert!(!values.is_empty(), "{algo}: no {tag} in metrics.csv");
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{algo}: {tag} {values:?}"
        );
    }

    for file in [
        "run.toml",
        "config.toml",
        "learning_curve.png",
        "final.safetensors",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let event_files = std::fs::read_dir(run_dir.join("tensorboard"))
        .unwrap()
        .count();
    assert_eq!(event_files, 1, "one TensorBoard event file");

    let output = Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(["eval", "--episodes", "2", "--run"])
        .arg(&run_dir)
        .output()
        .expect("the sdac binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("mean return"), "{stdout}");
}

#[test]
fn sdac_learns_inverted_pendulum() {
    check_learns("sdac");
}

#[test]
fn sac_learns_inverted_pendulum() {
    check_learns("sac");
}
