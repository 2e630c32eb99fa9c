//! HalfCheetah-v5: run forward; reward = x velocity - 0.1 |a|^2; never terminates.

use rand_chacha::ChaCha8Rng;

use super::{Task, add_normal_noise, add_uniform_noise, put, sum_of_squares, velocity};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const FORWARD_REWARD_WEIGHT: f64 = 1.0;
const CTRL_COST_WEIGHT: f64 = 0.1;
const RESET_NOISE_SCALE: f64 = 0.1;

pub(crate) struct HalfCheetah;

impl Task for HalfCheetah {
    const NAME: &'static str = "HalfCheetah-v5";
    const MODEL_FILE: &'static str = "half_cheetah.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] = &["reward_forward", "reward_ctrl"];

    fn new(_sim: &Sim) -> Result<Self, SimError> {
        Ok(Self)
    }

    /// qpos without the x position, then qvel.
    fn obs_dim(sim: &Sim) -> usize {
        sim.nq() - 1 + sim.nv()
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let rest = put(obs, &sim.qpos()[1..]);
        put(rest, sim.qvel());
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        let x_before = sim.qpos()[0];
        sim.do_simulation(action);
        let forward_reward = FORWARD_REWARD_WEIGHT * velocity(x_before, sim.qpos()[0], sim.dt_s());
        let ctrl_cost = CTRL_COST_WEIGHT * sum_of_squares(action);
        (
            forward_reward - ctrl_cost,
            false,
            [forward_reward, -ctrl_cost, 0.0, 0.0],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_normal_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
