//! Humanoid-v5: walk forward; reward = 1.25 x velocity of the centre of mass + 5 (while
//! healthy) - 0.1 |ctrl|^2 - min(5e-7 |cfrc_ext|^2, 10); terminates when the torso height
//! leaves (1.0, 2.0). The observation: qpos without x and y, qvel, then for every body but the
//! world its cinert, cvel, then qfrc_actuator without the free joint, then cfrc_ext.

use rand_chacha::ChaCha8Rng;

use super::{Task, add_uniform_noise, put, sum_of_squares};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const FORWARD_REWARD_WEIGHT: f64 = 1.25;
const CTRL_COST_WEIGHT: f64 = 0.1;
const CONTACT_COST_WEIGHT: f64 = 5e-7;
const CONTACT_COST_MAX: f64 = 10.0;
const HEALTHY_REWARD: f64 = 5.0;
const HEALTHY_Z_RANGE: (f64, f64) = (1.0, 2.0);
const RESET_NOISE_SCALE: f64 = 1e-2;
/// Degrees of freedom of the root free joint, left out of `qfrc_actuator` in the observation.
const FREE_JOINT_DOFS: usize = 6;

pub(crate) struct Humanoid;

/// The humanoid observation, shared with HumanoidStandup-v5.
pub(crate) fn humanoid_obs_dim(sim: &Sim) -> usize {
    let bodies = sim.data.cinert().len() - 1;
    sim.nq() - 2 + sim.nv() + bodies * (10 + 6 + 6) + (sim.nv() - FREE_JOINT_DOFS)
}

pub(crate) fn write_humanoid_obs(sim: &Sim, obs: &mut [f64]) {
    let data = &sim.data;
    let rest = put(obs, &sim.qpos()[2..]);
    let rest = put(rest, sim.qvel());
    let rest = put(rest, data.cinert()[1..].as_flattened());
    let rest = put(rest, data.cvel()[1..].as_flattened());
    let rest = put(rest, &data.qfrc_actuator()[FREE_JOINT_DOFS..]);
    put(rest, data.cfrc_ext()[1..].as_flattened());
}

/// `sum(cfrc_ext^2)` over every body, the world included.
pub(crate) fn contact_force_square_sum(sim: &Sim) -> f64 {
    sum_of_squares(sim.data.cfrc_ext().as_flattened())
}

/// x of the mass-weighted mean of the bodies' centres of mass.
fn mass_center_x(sim: &Sim) -> f64 {
    let masses = sim.model().body_mass();
    let weighted: f64 = masses
        .iter()
        .zip(sim.data.xipos())
        .map(|(m, p)| m * p[0])
        .sum();
    weighted / masses.iter().sum::<f64>()
}

impl Task for Humanoid {
    const NAME: &'static str = "Humanoid-v5";
    const MODEL_FILE: &'static str = "humanoid.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = true;
    const REWARD_TERMS: &'static [&'static str] = &[
        "reward_survive",
        "reward_forward",
        "reward_ctrl",
        "reward_contact",
    ];

    fn new(_sim: &Sim) -> Result<Self, SimError> {
        Ok(Self)
    }

    fn obs_dim(sim: &Sim) -> usize {
        humanoid_obs_dim(sim)
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        write_humanoid_obs(sim, obs);
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        let x_before = mass_center_x(sim);
        sim.do_simulation(action);
        let x_velocity = (mass_center_x(sim) - x_before) / sim.dt_s();
        let forward_reward = FORWARD_REWARD_WEIGHT * x_velocity;
        let z = sim.qpos()[2];
        let healthy = HEALTHY_Z_RANGE.0 < z && z < HEALTHY_Z_RANGE.1;
        let healthy_reward = if healthy { HEALTHY_REWARD } else { 0.0 };
        let ctrl_cost = CTRL_COST_WEIGHT * sum_of_squares(sim.data.ctrl());
        let contact_cost =
            (CONTACT_COST_WEIGHT * contact_force_square_sum(sim)).min(CONTACT_COST_MAX);
        let reward = (forward_reward + healthy_reward) - (ctrl_cost + contact_cost);
        (
            reward,
            !healthy,
            [healthy_reward, forward_reward, -ctrl_cost, -contact_cost],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_uniform_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
