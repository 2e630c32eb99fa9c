//! Determinism contract of the runtime:
//!
//! - the same artifact bytes and the same seed give bit-identical `act_seeded` action
//!   sequences, in two independently loaded instances and after `reseed` to the same seed;
//! - the same observation and noise give bit-identical `act` actions in two loaded instances,
//!   whatever calls came before (no hidden state besides the seeded noise stream);
//! - a different seed gives different actions.
//!
//! (Bit-identity holds on one machine: the kernels use FMA where the CPU has it, which rounds
//! differently from the portable build.) Weights are synthetic (seeded random, see `common`).

mod common;

use common::{Shape, normals, synthetic};
use sdac_runtime::Policy;

fn seeded_actions(policy: &mut Policy, seed: u64, calls: usize) -> Vec<u32> {
    policy.reseed(seed);
    let mut out = Vec::new();
    let mut action = vec![0.0f32; policy.act_dim()];
    for i in 0..calls {
        let obs = normals(policy.obs_dim(), i as u64);
        policy.act_seeded(&obs, &mut action).expect("acts");
        out.extend(action.iter().map(|v| v.to_bits()));
    }
    out
}

#[test]
fn same_file_and_seed_give_bit_identical_actions() {
    for shape in [Shape::teacher(), Shape::student(1), Shape::student(4)] {
        let bytes = synthetic(&shape, 21).bytes();
        let mut first = Policy::from_bytes(&bytes).expect("loads");
        let mut second = Policy::from_bytes(&bytes).expect("loads");
        let a = seeded_actions(&mut first, 9, 40);
        assert_eq!(a, seeded_actions(&mut second, 9, 40), "{shape:?}");
        assert_eq!(
            a,
            seeded_actions(&mut first, 9, 40),
            "{shape:?}: after reseed"
        );
        assert_ne!(
            a,
            seeded_actions(&mut second, 10, 40),
            "{shape:?}: other seed"
        );
    }
}

#[test]
fn same_observation_and_noise_give_the_same_action_in_two_instances() {
    for shape in [Shape::teacher(), Shape::student(2)] {
        let bytes = synthetic(&shape, 22).bytes();
        let mut first = Policy::from_bytes(&bytes).expect("loads");
        let mut second = Policy::from_bytes(&bytes).expect("loads");
        // Put history into `first` only.
        seeded_actions(&mut first, 3, 7);
        let (mut a, mut b) = (vec![0.0f32; first.act_dim()], vec![0.0f32; first.act_dim()]);
        for case in 0..20 {
            let obs = normals(first.obs_dim(), 500 + case);
            let noise = normals(first.noise_len(), 600 + case);
            first.act(&obs, &noise, &mut a).expect("acts");
            second.act(&obs, &noise, &mut b).expect("acts");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{shape:?} case {case}");
        }
    }
}
