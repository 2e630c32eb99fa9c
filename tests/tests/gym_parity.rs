//! Parity with Gymnasium: every task replays the recorded Gymnasium episodes (same MuJoCo state,
//! same actions) and must match each step's observation and reward within 1e-5 (absolute or
//! relative, whichever is larger) and its terminated/truncated flags exactly. The fixtures were
//! recorded by `tools/make_fixtures.py` with Gymnasium 1.2.2 and MuJoCo 3.17.0.

use sdac_sim::{Assets, TASK_NAMES, make_env, replay};
use sdac_tests::{gym_cases, trace_mismatch};

const TOLERANCE: f64 = 1e-5;

#[test]
fn every_task_matches_gymnasium_step_for_step() {
    let assets = Assets::discover().expect("run `bash tools/setup.sh` first");
    let cases = gym_cases().unwrap();
    let mut failures = Vec::new();
    for task in TASK_NAMES {
        let task_cases: Vec<_> = cases.iter().filter(|c| c.env == task).collect();
        assert!(!task_cases.is_empty(), "no Gymnasium fixture for {task}");
        let total_steps: usize = task_cases.iter().map(|c| c.steps).sum();
        assert!(
            total_steps >= 200,
            "{task}: only {total_steps} recorded steps"
        );
        for case in task_cases {
            let dir = case.dir();
            let mut env = make_env(task, &assets).unwrap();
            let (qpos, qvel) = replay::read_init(&dir.join("init.csv"), env.as_ref()).unwrap();
            let actions = replay::read_actions(&dir.join("actions.csv"), env.as_ref()).unwrap();
            let expected = replay::read_trace(&dir.join("trace.csv")).unwrap();
            assert_eq!(
                expected.len(),
                case.steps,
                "{task}/{}: manifest and trace disagree",
                case.case
            );
            let actual = replay::replay(env.as_mut(), &qpos, &qvel, &actions).unwrap();
            if let Some(why) = trace_mismatch(&actual, &expected, TOLERANCE) {
                failures.push(format!("{task}/{}: {why}", case.case));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn fixtures_cover_falls_and_time_limits() {
    let cases = gym_cases().unwrap();
    let ended = |task: &str, how: &str| cases.iter().any(|c| c.env == task && c.ended == how);
    for task in [
        "Hopper-v5",
        "Walker2d-v5",
        "Ant-v5",
        "Humanoid-v5",
        "InvertedPendulum-v5",
        "InvertedDoublePendulum-v5",
    ] {
        assert!(
            ended(task, "terminated"),
            "{task}: no recorded episode ends by falling"
        );
    }
    for task in ["HalfCheetah-v5", "Swimmer-v5", "Reacher-v5", "Pusher-v5"] {
        assert!(
            ended(task, "truncated"),
            "{task}: no recorded episode reaches the time limit"
        );
    }
}
