//! Ant-v5: walk forward; reward = torso x velocity + 1 (while healthy) - 0.5 |a|^2 minus
//! 5e-4 |clip(cfrc_ext, -1, 1)|^2; terminates when the state is not finite or the torso
//! height leaves [0.2, 1.0]. The observation ends with the clipped contact forces of every
//! body but the world.

use rand_chacha::ChaCha8Rng;

use super::{Task, add_normal_noise, add_uniform_noise, put, put_clipped, velocity};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const FORWARD_REWARD_WEIGHT: f64 = 1.0;
const CTRL_COST_WEIGHT: f64 = 0.5;
const CONTACT_COST_WEIGHT: f64 = 5e-4;
const HEALTHY_REWARD: f64 = 1.0;
const HEALTHY_Z_RANGE: (f64, f64) = (0.2, 1.0);
const CONTACT_FORCE_LIMIT: f64 = 1.0;
const RESET_NOISE_SCALE: f64 = 0.1;
/// Gymnasium's `main_body = 1`: the torso, whose frame position gives the velocity.
const MAIN_BODY: usize = 1;

pub(crate) struct Ant;

fn is_healthy(sim: &Sim) -> bool {
    let finite = sim.qpos().iter().chain(sim.qvel()).all(|v| v.is_finite());
    let z = sim.qpos()[2];
    finite && HEALTHY_Z_RANGE.0 <= z && z <= HEALTHY_Z_RANGE.1
}

fn contact_cost(sim: &Sim) -> f64 {
    let clipped_square_sum: f64 = sim
        .data
        .cfrc_ext()
        .iter()
        .flatten()
        .map(|f| f.clamp(-CONTACT_FORCE_LIMIT, CONTACT_FORCE_LIMIT).powi(2))
        .sum();
    CONTACT_COST_WEIGHT * clipped_square_sum
}

impl Task for Ant {
    const NAME: &'static str = "Ant-v5";
    const MODEL_FILE: &'static str = "ant.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = true;
    const REWARD_TERMS: &'static [&'static str] = &[
        "reward_forward",
        "reward_ctrl",
        "reward_contact",
        "reward_survive",
    ];

    fn new(_sim: &Sim) -> Result<Self, SimError> {
        Ok(Self)
    }

    /// qpos without x and y, qvel, then clip(cfrc_ext[1..], -1, 1) flattened.
    fn obs_dim(sim: &Sim) -> usize {
        sim.nq() - 2 + sim.nv() + 6 * (sim.data.cfrc_ext().len() - 1)
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let rest = put(obs, &sim.qpos()[2..]);
        let rest = put(rest, sim.qvel());
        let forces = sim.data.cfrc_ext()[1..].as_flattened();
        put_clipped(rest, forces, CONTACT_FORCE_LIMIT);
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        let x_before = sim.body_pos(MAIN_BODY)[0];
        sim.do_simulation(action);
        let forward_reward =
            velocity(x_before, sim.body_pos(MAIN_BODY)[0], sim.dt_s()) * FORWARD_REWARD_WEIGHT;
        let healthy = is_healthy(sim);
        let healthy_reward = if healthy { HEALTHY_REWARD } else { 0.0 };
        let ctrl_cost = CTRL_COST_WEIGHT * super::sum_of_squares(action);
        let contact_cost = contact_cost(sim);
        let reward = (forward_reward + healthy_reward) - (ctrl_cost + contact_cost);
        (
            reward,
            !healthy,
            [forward_reward, -ctrl_cost, -contact_cost, healthy_reward],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_normal_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
