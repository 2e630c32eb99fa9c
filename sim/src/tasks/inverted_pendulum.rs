//! InvertedPendulum-v5: keep the pole up; reward = 1 per step while |angle| <= 0.2, 0 on the
//! step that terminates (pole angle beyond 0.2 rad or a non-finite observation).

use rand_chacha::ChaCha8Rng;

use super::{Task, add_uniform_noise, put};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const RESET_NOISE_SCALE: f64 = 0.01;
const MAX_POLE_ANGLE_RAD: f64 = 0.2;

pub(crate) struct InvertedPendulum;

impl Task for InvertedPendulum {
    const NAME: &'static str = "InvertedPendulum-v5";
    const MODEL_FILE: &'static str = "inverted_pendulum.xml";
    const FRAME_SKIP: u32 = 2;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] = &["reward_survive"];

    fn new(_sim: &Sim) -> Result<Self, SimError> {
        Ok(Self)
    }

    /// qpos (cart x, pole angle), then qvel.
    fn obs_dim(sim: &Sim) -> usize {
        sim.nq() + sim.nv()
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let rest = put(obs, sim.qpos());
        put(rest, sim.qvel());
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        sim.do_simulation(action);
        let finite = sim.qpos().iter().chain(sim.qvel()).all(|v| v.is_finite());
        let terminated = !finite || sim.qpos()[1].abs() > MAX_POLE_ANGLE_RAD;
        let reward = if terminated { 0.0 } else { 1.0 };
        (reward, terminated, [reward, 0.0, 0.0, 0.0])
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_uniform_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
