//! The `sdac` binary as a user runs it: replay against the Gymnasium fixtures, and a clear
//! error with a non-zero exit for each kind of bad input.

use std::path::Path;
use std::process::{Command, Output};

use sdac_sim::replay;
use sdac_tests::{gym_cases, trace_mismatch};

fn sdac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(args)
        .output()
        .expect("the sdac binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn replay_args<'a>(env: &'a str, init: &'a Path, actions: &'a Path, out: &'a Path) -> Vec<String> {
    ["env", "replay", "--env", env, "--init"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            init.display().to_string(),
            "--actions".into(),
            actions.display().to_string(),
        ])
        .chain(["--out".into(), out.display().to_string()])
        .collect()
}

fn run(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sdac(&args)
}

#[test]
fn replay_reproduces_every_gymnasium_fixture() {
    let dir = tempfile::tempdir().unwrap();
    for case in gym_cases().unwrap() {
        let out = dir.path().join(format!("{}-{}.csv", case.env, case.case));
        let output = run(&replay_args(
            &case.env,
            &case.dir().join("init.csv"),
            &case.dir().join("actions.csv"),
            &out,
        ));
        assert!(
            output.status.success(),
            "{}/{}: {}",
            case.env,
            case.case,
            stderr(&output)
        );
        let actual = replay::read_trace(&out).unwrap();
        let expected = replay::read_trace(&case.dir().join("trace.csv")).unwrap();
        assert_eq!(
            trace_mismatch(&actual, &expected, 1e-5),
            None,
            "{}/{}",
            case.env,
            case.case
        );
    }
}

/// A Hopper-v5 replay whose action file is `actions_csv`; returns the failed run's stderr.
fn hopper_replay_error(actions_csv: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.csv");
    std::fs::write(
        &init,
        "qpos_0,qpos_1,qpos_2,qpos_3,qpos_4,qpos_5,qvel_0,qvel_1,qvel_2,qvel_3,qvel_4,qvel_5\n\
         0,1.25,0,0,0,0,0,0,0,0,0,0\n",
    )
    .unwrap();
    let actions = dir.path().join("actions.csv");
    std::fs::write(&actions, actions_csv).unwrap();
    let out = dir.path().join("trace.csv");
    let output = run(&replay_args("Hopper-v5", &init, &actions, &out));
    assert!(!output.status.success(), "bad input must fail");
    assert!(!out.exists(), "no trace is written for bad input");
    stderr(&output)
}

#[test]
fn a_good_hopper_replay_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.csv");
    std::fs::write(&init, "qpos_0,qpos_1,qpos_2,qpos_3,qpos_4,qpos_5,qvel_0,qvel_1,qvel_2,qvel_3,qvel_4,qvel_5\n0,1.25,0,0,0,0,0,0,0,0,0,0\n").unwrap();
    let actions = dir.path().join("actions.csv");
    std::fs::write(&actions, "a_0,a_1,a_2\n0.1,0.2,0.3\n0,0,0\n").unwrap();
    let out = dir.path().join("trace.csv");
    let output = run(&replay_args("Hopper-v5", &init, &actions, &out));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(replay::read_trace(&out).unwrap().len(), 2);
}

#[test]
fn unknown_task_lists_the_valid_ones() {
    let output = sdac(&["rollout", "--env", "Hopper-v3"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("unknown task `Hopper-v3`"), "{message}");
    assert!(
        message.contains("HalfCheetah-v5") && message.contains("Walker2d-v5"),
        "{message}"
    );
}

#[test]
fn action_of_the_wrong_length_is_rejected() {
    let message = hopper_replay_error("a_0,a_1\n0.1,0.2\n");
    assert!(message.contains("expected 3 columns"), "{message}");
}

#[test]
fn nan_or_infinite_action_is_rejected() {
    for bad in ["NaN", "inf", "-inf"] {
        let message = hopper_replay_error(&format!("a_0,a_1,a_2\n0,0,0\n0,{bad},0\n"));
        assert!(
            message.contains("actions.csv:3: a_1 is") && message.contains("finite"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn malformed_csv_names_the_line() {
    let message = hopper_replay_error("a_0,a_1,a_2\n0,0,0\n0,zero,0\n");
    assert!(
        message.contains("actions.csv:3") && message.contains("`zero` is not a number"),
        "{message}"
    );
    let message = hopper_replay_error("a_0,a_1,a_2\n0,0\n");
    assert!(message.contains("row has 2 values"), "{message}");
    let message = hopper_replay_error("");
    assert!(message.contains("file is empty"), "{message}");
}

#[test]
fn missing_input_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let out = dir.path().join("t.csv");
    let output = run(&replay_args("Hopper-v5", &missing, &missing, &out));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("nope.csv"), "{}", stderr(&output));
}

#[test]
fn missing_assets_name_the_setup_command() {
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(["rollout", "--env", "Hopper-v5"])
        .env("SDAC_GYM_ASSETS", empty.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("bash tools/setup.sh"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn rollout_prints_the_mean_return() {
    let output = sdac(&[
        "rollout",
        "--env",
        "InvertedPendulum-v5",
        "--episodes",
        "2",
        "--seed",
        "3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("episode ")).count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("mean return"), "{stdout}");
}

/// A run directory as `sdac train` leaves it, for `sdac compare`: the fixture's config, this
/// seed, and `metrics.csv` with these evaluation returns every 1000 steps.
fn comparable_run(root: &Path, seed: u64, evaluations: &[f64]) -> std::path::PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0");
    let dir = root.join(format!("seed{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture.join("config.toml"), dir.join("config.toml")).unwrap();
    std::fs::write(
        dir.join("run.toml"),
        format!("env = \"InvertedPendulum-v5\"\nalgo = \"sdac\"\nseed = {seed}\n"),
    )
    .unwrap();
    let mut metrics = String::from("step,tag,value\n12,charts/episodic_return,9\n");
    for (i, value) in evaluations.iter().enumerate() {
        metrics += &format!("{},eval/episodic_return,{value}\n", (i + 1) * 1000);
    }
    std::fs::write(dir.join("metrics.csv"), metrics).unwrap();
    dir
}

/// `sdac compare --run <each of runs>` followed by `extra`.
fn compare(runs: &[&Path], extra: &[String]) -> Output {
    let mut args = vec!["compare".to_string()];
    for dir in runs {
        args.push("--run".into());
        args.push(dir.display().to_string());
    }
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn compare_reports_mean_and_std_over_seeds_and_draws_the_curves() {
    let root = tempfile::tempdir().unwrap();
    let first = comparable_run(root.path(), 0, &[10.0, 50.0, 40.0]);
    let second = comparable_run(root.path(), 1, &[20.0, 30.0, 60.0]);
    let curves = root.path().join("curves");
    let output = compare(
        &[&first, &second],
        &["--curves".into(), curves.display().to_string()],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // best: 50 and 60 -> 55 ± 7.1; final: 40 and 60 -> 50 ± 14.1.
    assert!(
        stdout.contains(
            "| InvertedPendulum-v5 | sdac | 2 ([0, 1]) | 3000, 3000 | 55.0 ± 7.1 | 50.0 ± 14.1 |"
        ),
        "{stdout}"
    );
    let png = std::fs::read(curves.join("InvertedPendulum-v5.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn compare_refuses_runs_it_cannot_compare() {
    let root = tempfile::tempdir().unwrap();
    let evaluated = comparable_run(root.path(), 0, &[10.0]);
    let fresh = comparable_run(&root.path().join("other"), 1, &[]);
    let output = compare(&[&evaluated, &fresh], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("has no evaluation yet"),
        "{}",
        stderr(&output)
    );

    let twin = comparable_run(&root.path().join("twin"), 0, &[10.0]);
    let output = compare(&[&evaluated, &twin], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("repeats seed 0"),
        "{}",
        stderr(&output)
    );

    let output = compare(&[&root.path().join("missing")], &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("missing"), "{}", stderr(&output));
}

#[test]
fn bench_runtime_times_every_engine_in_rounds_and_refuses_bad_counts() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0")
        .display()
        .to_string();
    let args = |rounds: &str| {
        [
            "bench",
            "runtime",
            "--run",
            &fixture,
            "--student",
            "1",
            "--student",
            "4",
            "--calls",
            "40",
            "--teacher-calls",
            "10",
            "--rounds",
            rounds,
        ]
        .map(String::from)
    };
    let output = run(&args("2"));
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("timed in 2 rounds"), "{stdout}");
    for name in ["| student K = 1 |", "| teacher (20 steps, best of 8) |"] {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name} in {stdout}"));
        // Two ratio cells, each `R.Rx (LO-HI)`: the median of the rounds' ratios lies in their range.
        let ratios: Vec<&str> = row.split('|').filter(|cell| cell.contains("x (")).collect();
        assert_eq!(ratios.len(), 2, "{row}");
        for cell in ratios {
            let numbers: Vec<f64> = cell
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter_map(|n| n.parse().ok())
                .collect();
            let [ratio, lo, hi] = numbers[..] else {
                panic!("{cell}")
            };
            assert!(
                ratio > 0.0 && lo <= ratio + 0.05 && ratio <= hi + 0.05,
                "{cell}"
            );
        }
    }
    assert!(stdout.contains("K = 4: not measured"), "{stdout}");

    for (bad, message) in [
        ("0", "--rounds must be between"),
        ("11", "--rounds must be between"),
    ] {
        let output = run(&args(bad));
        assert!(!output.status.success());
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

#[test]
fn bench_loop_refuses_bad_arguments_before_starting_anything() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0/student-k1.safetensors")
        .display()
        .to_string();
    for (bad, message) in [
        (["--rate", "0"], "--rate must be a positive number"),
        (["--rate", "NaN"], "--rate must be a positive number"),
        (["--seconds", "0"], "--seconds must be at least 1"),
        (["--bridge-priority", "100"], "--bridge-priority"),
    ] {
        let output = sdac(&[&["bench", "loop", "--policy", &fixture][..], &bad[..]].concat());
        assert!(!output.status.success(), "{bad:?} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{bad:?}: {}",
            stderr(&output)
        );
    }
    let output = sdac(&[
        "bench",
        "loop",
        "--policy",
        "/nonexistent/policy.safetensors",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/nonexistent/policy.safetensors is not a file"),
        "{}",
        stderr(&output)
    );
}
