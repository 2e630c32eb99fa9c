//! `Policy::act` and `act_seeded` refuse bad input with a typed `ActError` and leave the
//! action buffer untouched: NaN or infinite observations and noise, wrong lengths of any of
//! the three slices, and inputs so large that the result would not be finite. Weights are
//! synthetic (seeded random, see `common`).

mod common;

use common::{Shape, normals, synthetic};
use sdac_runtime::{ActError, Policy};

const SENTINEL: f32 = 12345.0;

fn policies() -> Vec<Policy> {
    [Shape::teacher(), Shape::student(1), Shape::student(4)]
        .iter()
        .map(|shape| Policy::from_bytes(&synthetic(shape, 41).bytes()).expect("loads"))
        .collect()
}

/// `act` with `obs` and `noise` into a sentinel-filled buffer of `out_len`: the error, and
/// that the buffer is untouched.
fn act_error(policy: &mut Policy, obs: &[f32], noise: &[f32], out_len: usize) -> ActError {
    let mut out = vec![SENTINEL; out_len];
    let error = policy.act(obs, noise, &mut out).expect_err("refused");
    assert!(
        out.iter().all(|&v| v == SENTINEL),
        "action written on error"
    );
    let mut out = vec![SENTINEL; out_len];
    if noise.len() == policy.noise_len() && noise.iter().all(|v| v.is_finite()) {
        let seeded = policy.act_seeded(obs, &mut out).expect_err("refused");
        assert_eq!(seeded.to_string(), error.to_string());
        assert!(
            out.iter().all(|&v| v == SENTINEL),
            "action written on error"
        );
    }
    error
}

#[test]
fn non_finite_observations_and_noise_are_refused() {
    for mut policy in policies() {
        let obs = normals(policy.obs_dim(), 1);
        let noise = normals(policy.noise_len(), 2);
        let act_dim = policy.act_dim();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut bad_obs = obs.clone();
            bad_obs[policy.obs_dim() - 1] = bad;
            let error = act_error(&mut policy, &bad_obs, &noise, act_dim);
            assert!(
                matches!(error, ActError::NonFinite { what: "observation", index, .. } if index == obs.len() - 1),
                "{error}"
            );
            let mut bad_noise = noise.clone();
            let last = noise.len() - 1;
            bad_noise[last] = bad;
            let error = act_error(&mut policy, &obs, &bad_noise, act_dim);
            assert!(
                matches!(error, ActError::NonFinite { what: "noise", index, .. } if index == last),
                "{error}"
            );
            assert!(error.to_string().contains(&format!("noise value {last}")));
        }
    }
}

#[test]
fn wrong_lengths_are_refused() {
    for mut policy in policies() {
        let obs = normals(policy.obs_dim(), 1);
        let noise = normals(policy.noise_len(), 2);
        let act_dim = policy.act_dim();
        for short_obs in [&obs[..0], &obs[..obs.len() - 1]] {
            let error = act_error(&mut policy, short_obs, &noise, act_dim);
            assert!(
                matches!(
                    error,
                    ActError::WrongLength {
                        what: "observation",
                        ..
                    }
                ),
                "{error}"
            );
        }
        let long_obs = [obs.clone(), vec![0.0]].concat();
        let error = act_error(&mut policy, &long_obs, &noise, act_dim);
        assert!(matches!(error, ActError::WrongLength { .. }), "{error}");
        for bad_noise in [&noise[..noise.len() - 1], &[][..]] {
            let error = act_error(&mut policy, &obs, bad_noise, act_dim);
            assert!(
                matches!(error, ActError::WrongLength { what: "noise", .. }),
                "{error}"
            );
        }
        for out_len in [0, act_dim - 1, act_dim + 1] {
            let error = act_error(&mut policy, &obs, &noise, out_len);
            assert!(
                matches!(
                    error,
                    ActError::WrongLength {
                        what: "action output",
                        ..
                    }
                ),
                "{error}"
            );
        }
        // The same policy still acts afterwards.
        let mut out = vec![SENTINEL; act_dim];
        policy.act(&obs, &noise, &mut out).expect("acts");
        assert!(out.iter().all(|v| v.is_finite() && *v != SENTINEL));
    }
}

#[test]
fn huge_finite_inputs_never_produce_a_non_finite_action() {
    for mut policy in policies() {
        let act_dim = policy.act_dim();
        for magnitude in [1e30f32, f32::MAX, -f32::MAX] {
            let obs = vec![magnitude; policy.obs_dim()];
            let noise = vec![magnitude; policy.noise_len()];
            let mut out = vec![SENTINEL; act_dim];
            match policy.act(&obs, &noise, &mut out) {
                Ok(()) => {
                    let m = policy.metadata();
                    for (i, v) in out.iter().enumerate() {
                        assert!(
                            (m.action_low[i] as f32..=m.action_high[i] as f32).contains(v),
                            "{v} out of bounds"
                        );
                    }
                }
                Err(error) => {
                    assert!(matches!(error, ActError::NonFiniteResult { .. }), "{error}");
                    assert!(out.iter().all(|&v| v == SENTINEL));
                }
            }
        }
    }
}
