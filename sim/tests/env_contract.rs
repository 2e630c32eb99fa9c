//! The `Env` contract on real MuJoCo: bad input gets a typed error and changes nothing,
//! resets are deterministic given the seed, and the vectorised runner's results do not depend
//! on how many threads step it.

use sdac_sim::{Assets, Env, SimError, TASK_NAMES, VecEnv, make_env};

fn env(name: &str) -> Box<dyn Env> {
    make_env(
        name,
        &Assets::discover().expect("run `bash tools/setup.sh` first"),
    )
    .unwrap()
}

fn rollout(env: &mut dyn Env, seed: u64, steps: usize) -> Vec<f64> {
    let spec = env.spec().clone();
    let mut obs = vec![0.0; spec.obs_dim];
    env.reset(Some(seed), &mut obs).unwrap();
    let mut trace = obs.clone();
    for t in 0..steps {
        let action: Vec<f64> = (0..spec.action_dim())
            .map(|i| 0.5 * spec.action_high[i] * ((t + i) as f64).sin())
            .collect();
        let outcome = env.step(&action, &mut obs).unwrap();
        trace.extend_from_slice(&obs);
        trace.push(outcome.reward);
        if outcome.terminated || outcome.truncated {
            env.reset(None, &mut obs).unwrap();
        }
    }
    trace
}

#[test]
fn unknown_task_lists_the_valid_ones() {
    let assets = Assets::discover().unwrap();
    let err = make_env("Hopper-v4", &assets)
        .err()
        .expect("Hopper-v4 is not a task");
    assert!(matches!(err, SimError::UnknownTask { .. }));
    let message = err.to_string();
    for name in TASK_NAMES {
        assert!(message.contains(name), "{message} should list {name}");
    }
}

#[test]
fn missing_assets_name_the_setup_command() {
    let empty = tempfile::tempdir().unwrap();
    let assets = Assets::at(empty.path()).unwrap();
    let err = make_env("Hopper-v5", &assets)
        .err()
        .expect("no model files there");
    assert!(matches!(err, SimError::AssetMissing { .. }));
    assert!(err.to_string().contains("bash tools/setup.sh"), "{err}");
    assert!(err.to_string().contains("hopper.xml"), "{err}");
    let err = Assets::at(empty.path().join("absent")).unwrap_err();
    assert!(err.to_string().contains("bash tools/setup.sh"), "{err}");
}

#[test]
fn missing_mujoco_library_names_the_setup_command() {
    let empty = tempfile::tempdir().unwrap();
    let message = sdac_sim::third_party::check_mujoco_lib(empty.path()).unwrap_err();
    assert!(message.contains("bash tools/setup.sh"), "{message}");
    assert!(message.contains("libmujoco.so"), "{message}");
}

#[test]
fn bad_actions_are_typed_errors_and_change_nothing() {
    let mut env = env("Hopper-v5");
    let mut obs = vec![0.0; env.spec().obs_dim];
    env.reset(Some(1), &mut obs).unwrap();
    let (qpos, qvel) = (env.qpos().to_vec(), env.qvel().to_vec());

    let err = env.step(&[0.0, 0.0], &mut obs).unwrap_err();
    assert!(
        matches!(
            err,
            SimError::ActionLength {
                expected: 3,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = env.step(&[0.0, bad, 0.0], &mut obs).unwrap_err();
        assert!(
            matches!(err, SimError::NonFiniteAction { index: 1, .. }),
            "{err}"
        );
    }
    let mut short_obs = vec![0.0; 3];
    let err = env.step(&[0.0; 3], &mut short_obs).unwrap_err();
    assert!(
        matches!(
            err,
            SimError::ObservationLength {
                expected: 11,
                got: 3,
                ..
            }
        ),
        "{err}"
    );

    assert_eq!(
        env.qpos(),
        qpos.as_slice(),
        "a rejected step must not move the simulation"
    );
    assert_eq!(env.qvel(), qvel.as_slice());
}

#[test]
fn bad_states_are_typed_errors() {
    let mut env = env("InvertedPendulum-v5");
    let mut obs = vec![0.0; 4];
    let err = env
        .reset_to_state(&[0.0], &[0.0, 0.0], &mut obs)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::StateLength {
                what: "qpos",
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = env
        .reset_to_state(&[0.0, f64::NAN], &[0.0, 0.0], &mut obs)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SimError::NonFiniteState {
                what: "qpos",
                index: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn stepping_an_ended_episode_needs_a_reset() {
    let mut env = env("Reacher-v5");
    let mut obs = vec![0.0; env.spec().obs_dim];
    let err = env.step(&[0.0, 0.0], &mut obs).unwrap_err();
    assert!(
        matches!(err, SimError::EpisodeOver),
        "before the first reset: {err}"
    );
    env.reset(Some(0), &mut obs).unwrap();
    for step in 1..=50 {
        let outcome = env.step(&[0.0, 0.0], &mut obs).unwrap();
        assert_eq!(
            outcome.truncated,
            step == 50,
            "Reacher-v5 is truncated after 50 steps"
        );
        assert!(!outcome.terminated);
    }
    assert!(matches!(
        env.step(&[0.0, 0.0], &mut obs),
        Err(SimError::EpisodeOver)
    ));
}

#[test]
fn same_seed_same_episode_other_seed_other_episode() {
    for name in [
        "Hopper-v5",
        "Ant-v5",
        "Reacher-v5",
        "Pusher-v5",
        "HalfCheetah-v5",
    ] {
        let mut a = env(name);
        let mut b = env(name);
        let first = rollout(a.as_mut(), 42, 120);
        assert_eq!(
            first,
            rollout(b.as_mut(), 42, 120),
            "{name}: same seed must give the same trace"
        );
        assert_ne!(
            first,
            rollout(b.as_mut(), 43, 120),
            "{name}: another seed must change the reset"
        );
    }
}

#[test]
fn reset_noise_has_the_documented_scale() {
    // Hopper-v5 adds U(-5e-3, 5e-3) to every position and velocity.
    let mut env = env("Hopper-v5");
    let mut obs = vec![0.0; 11];
    let mut max_dev: f64 = 0.0;
    // Hopper's initial pose: all zero but the torso height, 1.25.
    let base = [0.0, 1.25, 0.0, 0.0, 0.0, 0.0];
    for seed in 0..50 {
        env.reset(Some(seed), &mut obs).unwrap();
        for (q, b) in env.qpos().iter().zip(&base) {
            max_dev = max_dev.max((q - b).abs());
        }
        for v in env.qvel() {
            max_dev = max_dev.max(v.abs());
        }
    }
    assert!(max_dev <= 5e-3, "noise beyond its scale: {max_dev}");
    assert!(max_dev > 4e-3, "noise far below its scale: {max_dev}");
}

#[test]
fn vectorised_results_do_not_depend_on_the_thread_count() {
    let assets = Assets::discover().unwrap();
    let mut traces = Vec::new();
    for threads in [1, 2] {
        let mut vec_env = VecEnv::new("Hopper-v5", &assets, 5, threads).unwrap();
        let mut trace = vec_env.reset(9).unwrap().to_vec();
        let mut ended = 0;
        for t in 0..200 {
            let actions: Vec<f64> = (0..15).map(|i| ((t * 7 + i) as f64 * 0.37).sin()).collect();
            let step = vec_env.step(&actions).unwrap();
            trace.extend_from_slice(step.obs);
            trace.extend_from_slice(step.final_obs);
            trace.extend_from_slice(step.rewards);
            for end in step.episode_ends {
                let i = end.env_index;
                assert!(step.terminated[i] || step.truncated[i]);
                ended += 1;
            }
        }
        assert!(ended > 0, "random Hopper episodes end within 200 steps");
        traces.push(trace);
    }
    assert_eq!(traces[0], traces[1]);
}

#[test]
fn vectorised_runner_rejects_bad_actions() {
    let assets = Assets::discover().unwrap();
    let mut vec_env = VecEnv::new("InvertedPendulum-v5", &assets, 3, 2).unwrap();
    vec_env.reset(0).unwrap();
    assert!(matches!(
        vec_env.step(&[0.0; 2]),
        Err(SimError::ActionLength {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        vec_env.step(&[0.0, f64::NAN, 0.0]),
        Err(SimError::NonFiniteAction { index: 1, .. })
    ));
    assert!(
        vec_env.step(&[0.0; 3]).is_ok(),
        "the runner still works after rejecting input"
    );
    assert!(VecEnv::new("InvertedPendulum-v5", &assets, 0, 1).is_err());
}

/// Steps `env` with the test's deterministic actions from step `from` for `steps` steps,
/// resetting (without a seed) when an episode ends; returns observations, rewards and flags.
fn continue_episode(env: &mut dyn Env, obs: &mut [f64], from: usize, steps: usize) -> Vec<f64> {
    let spec = env.spec().clone();
    let mut trace = Vec::new();
    for t in from..from + steps {
        let action: Vec<f64> = (0..spec.action_dim())
            .map(|i| 0.9 * spec.action_high[i] * ((3 * t + i) as f64).sin())
            .collect();
        let outcome = env.step(&action, obs).unwrap();
        trace.extend_from_slice(obs);
        trace.extend([
            outcome.reward,
            f64::from(u8::from(outcome.terminated)),
            f64::from(u8::from(outcome.truncated)),
        ]);
        if outcome.terminated || outcome.truncated {
            env.reset(None, obs).unwrap();
        }
    }
    trace
}

#[test]
fn a_saved_state_continues_bit_for_bit_in_a_fresh_env() {
    for task in TASK_NAMES {
        // Save right after a reset, and mid-episode after some steps (with a reset in between
        // for the tasks that fall quickly).
        for steps_before in [0, 37] {
            let mut original = env(task);
            let mut obs = vec![0.0; original.spec().obs_dim];
            original.reset(Some(11), &mut obs).unwrap();
            continue_episode(original.as_mut(), &mut obs, 0, steps_before);
            let saved = original.save_state();
            let saved_obs = obs.clone();

            let expected = continue_episode(original.as_mut(), &mut obs, steps_before, 60);
            let mut restored = env(task);
            restored.load_state(&saved).unwrap();
            let mut restored_obs = saved_obs;
            let actual = continue_episode(restored.as_mut(), &mut restored_obs, steps_before, 60);
            assert!(
                actual == expected,
                "{task}: continuation after restoring at step {steps_before} differs"
            );
        }
    }
}

#[test]
fn a_saved_state_that_does_not_fit_is_a_typed_error() {
    let hopper = env("Hopper-v5");
    let mut saved = hopper.save_state();
    let mut walker = env("Walker2d-v5");
    assert!(matches!(
        walker.load_state(&saved),
        Err(SimError::SavedState { .. })
    ));
    let mut other_hopper = env("Hopper-v5");
    saved.physics[3] = f64::NAN;
    let err = other_hopper.load_state(&saved).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
    saved.physics[3] = 0.0;
    saved.elapsed_steps = 5000;
    assert!(matches!(
        other_hopper.load_state(&saved),
        Err(SimError::SavedState { .. })
    ));
}

#[test]
fn a_saved_runner_continues_bit_for_bit() {
    let assets = Assets::discover().unwrap();
    let (n, steps) = (3, 40);
    let mut original = VecEnv::new("Hopper-v5", &assets, n, 2).unwrap();
    let ad = original.spec().action_dim();
    let actions = |t: usize| -> Vec<f64> {
        (0..n * ad)
            .map(|i| ((t * 7 + i) as f64 * 0.37).sin())
            .collect()
    };
    let run = |env: &mut VecEnv, from: usize| -> Vec<f64> {
        let mut trace = Vec::new();
        for t in from..from + steps {
            let step = env.step(&actions(t)).unwrap();
            trace.extend_from_slice(step.obs);
            trace.extend_from_slice(step.rewards);
            trace.extend(step.episode_ends.iter().map(|e| e.episode_return));
        }
        trace
    };
    original.reset(5).unwrap();
    run(&mut original, 0);
    let saved = original.save_state().unwrap();
    let expected = run(&mut original, steps);

    let mut restored = VecEnv::new("Hopper-v5", &assets, n, 1).unwrap();
    let obs = restored.load_state(&saved).unwrap().to_vec();
    assert_eq!(obs, saved.obs);
    assert_eq!(run(&mut restored, steps), expected);

    let mut too_few = VecEnv::new("Hopper-v5", &assets, n - 1, 1).unwrap();
    assert!(matches!(
        too_few.load_state(&saved),
        Err(SimError::SavedState { .. })
    ));
}
