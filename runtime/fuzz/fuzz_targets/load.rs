//! Any bytes into `Policy::from_bytes`; where they load, one `act` and one `act_seeded` with
//! fixed finite inputs. Neither may panic, and an action that comes back must be finite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdac_runtime::Policy;

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut policy) = Policy::from_bytes(bytes) else {
        return;
    };
    let obs: Vec<f32> = (0..policy.obs_dim()).map(|i| (i as f32 * 0.37).sin()).collect();
    let noise: Vec<f32> = (0..policy.noise_len()).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut action = vec![0.0f32; policy.act_dim()];
    if policy.act(&obs, &noise, &mut action).is_ok() {
        assert!(action.iter().all(|v| v.is_finite()));
    }
    if policy.act_seeded(&obs, &mut action).is_ok() {
        assert!(action.iter().all(|v| v.is_finite()));
    }
});
