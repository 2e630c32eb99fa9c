//! HumanoidStandup-v5: stand up from lying; reward = torso height / timestep - 0.1 |ctrl|^2
//! - min(0.5e-6 |cfrc_ext|^2, 10) + 1; never terminates. Same observation as Humanoid-v5.

use rand_chacha::ChaCha8Rng;

use super::humanoid::{contact_force_square_sum, humanoid_obs_dim, write_humanoid_obs};
use super::{Task, add_uniform_noise, sum_of_squares};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const CTRL_COST_WEIGHT: f64 = 0.1;
const IMPACT_COST_WEIGHT: f64 = 0.5e-6;
const IMPACT_COST_MAX: f64 = 10.0;
const RESET_NOISE_SCALE: f64 = 1e-2;

pub(crate) struct HumanoidStandup;

impl Task for HumanoidStandup {
    const NAME: &'static str = "HumanoidStandup-v5";
    const MODEL_FILE: &'static str = "humanoidstandup.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = true;
    const REWARD_TERMS: &'static [&'static str] =
        &["reward_linup", "reward_quadctrl", "reward_impact"];

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
        sim.do_simulation(action);
        // Gymnasium v5 divides by the physics timestep, not by dt, and never applies its
        // `uph_cost_weight` argument.
        let uph_reward = sim.qpos()[2] / sim.timestep_s();
        let ctrl_cost = CTRL_COST_WEIGHT * sum_of_squares(sim.data.ctrl());
        let impact_cost = (IMPACT_COST_WEIGHT * contact_force_square_sum(sim)).min(IMPACT_COST_MAX);
        let reward = uph_reward - ctrl_cost - impact_cost + 1.0;
        (reward, false, [uph_reward, -ctrl_cost, -impact_cost, 0.0])
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_uniform_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
