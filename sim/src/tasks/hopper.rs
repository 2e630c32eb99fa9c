//! Hopper-v5: hop forward; reward = x velocity + 1 (while healthy) - 1e-3 |a|^2; terminates
//! when unhealthy: any of qpos[2..], qvel outside (-100, 100), height not above 0.7, or torso
//! angle outside (-0.2, 0.2).

use rand_chacha::ChaCha8Rng;

use super::{Task, add_uniform_noise, put, put_clipped, sum_of_squares, velocity};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const FORWARD_REWARD_WEIGHT: f64 = 1.0;
const CTRL_COST_WEIGHT: f64 = 1e-3;
const HEALTHY_REWARD: f64 = 1.0;
const HEALTHY_STATE_RANGE: (f64, f64) = (-100.0, 100.0);
const HEALTHY_Z_RANGE: (f64, f64) = (0.7, f64::INFINITY);
const HEALTHY_ANGLE_RANGE: (f64, f64) = (-0.2, 0.2);
const RESET_NOISE_SCALE: f64 = 5e-3;
const OBS_VELOCITY_LIMIT: f64 = 10.0;

pub(crate) struct Hopper;

fn inside(range: (f64, f64), value: f64) -> bool {
    range.0 < value && value < range.1
}

fn is_healthy(sim: &Sim) -> bool {
    let qpos = sim.qpos();
    let state_ok = qpos[2..]
        .iter()
        .chain(sim.qvel())
        .all(|&v| inside(HEALTHY_STATE_RANGE, v));
    state_ok && inside(HEALTHY_Z_RANGE, qpos[1]) && inside(HEALTHY_ANGLE_RANGE, qpos[2])
}

impl Task for Hopper {
    const NAME: &'static str = "Hopper-v5";
    const MODEL_FILE: &'static str = "hopper.xml";
    const FRAME_SKIP: u32 = 4;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] =
        &["reward_forward", "reward_ctrl", "reward_survive"];

    fn new(_sim: &Sim) -> Result<Self, SimError> {
        Ok(Self)
    }

    /// qpos without the x position, then qvel clipped to [-10, 10].
    fn obs_dim(sim: &Sim) -> usize {
        sim.nq() - 1 + sim.nv()
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let rest = put(obs, &sim.qpos()[1..]);
        put_clipped(rest, sim.qvel(), OBS_VELOCITY_LIMIT);
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        let x_before = sim.qpos()[0];
        sim.do_simulation(action);
        let forward_reward = FORWARD_REWARD_WEIGHT * velocity(x_before, sim.qpos()[0], sim.dt_s());
        let healthy = is_healthy(sim);
        let healthy_reward = if healthy { HEALTHY_REWARD } else { 0.0 };
        let ctrl_cost = CTRL_COST_WEIGHT * sum_of_squares(action);
        let reward = forward_reward + healthy_reward - ctrl_cost;
        (
            reward,
            !healthy,
            [forward_reward, -ctrl_cost, healthy_reward, 0.0],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_uniform_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
