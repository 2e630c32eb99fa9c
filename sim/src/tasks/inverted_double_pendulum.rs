//! InvertedDoublePendulum-v5: keep the two-link pole up; reward = 10 (while the tip is above
//! y = 1) - 0.01 x_tip^2 - (y_tip - 2)^2 - 1e-3 w1^2 - 5e-3 w2^2; terminates when y_tip <= 1.

use rand_chacha::ChaCha8Rng;

use super::{Task, add_normal_noise, add_uniform_noise, put_clipped};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const HEALTHY_REWARD: f64 = 10.0;
const RESET_NOISE_SCALE: f64 = 0.1;
const OBS_CLIP: f64 = 10.0;
/// Site 0 is the pole's tip.
const TIP_SITE: usize = 0;

pub(crate) struct InvertedDoublePendulum;

impl Task for InvertedDoublePendulum {
    const NAME: &'static str = "InvertedDoublePendulum-v5";
    const MODEL_FILE: &'static str = "inverted_double_pendulum.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 1000;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] =
        &["reward_survive", "distance_penalty", "velocity_penalty"];

    fn new(sim: &Sim) -> Result<Self, SimError> {
        if sim.data.site_xpos().is_empty() {
            return Err(SimError::ModelMissingName {
                model: Self::NAME,
                kind: "site",
                name: "tip",
            });
        }
        Ok(Self)
    }

    /// cart x, sin and cos of the two link angles, qvel clipped to [-10, 10], and the cart's
    /// constraint force clipped to [-10, 10].
    fn obs_dim(sim: &Sim) -> usize {
        1 + 2 * (sim.nq() - 1) + sim.nv() + 1
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let qpos = sim.qpos();
        let links = qpos.len() - 1;
        obs[0] = qpos[0];
        for (i, angle) in qpos[1..].iter().enumerate() {
            obs[1 + i] = angle.sin();
            obs[1 + links + i] = angle.cos();
        }
        let rest = put_clipped(&mut obs[1 + 2 * links..], sim.qvel(), OBS_CLIP);
        put_clipped(rest, &sim.data.qfrc_constraint()[..1], OBS_CLIP);
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        sim.do_simulation(action);
        let [x, _, y] = sim.data.site_xpos()[TIP_SITE];
        let terminated = y <= 1.0;
        let (v1, v2) = (sim.qvel()[1], sim.qvel()[2]);
        let dist_penalty = 0.01 * x.powi(2) + (y - 2.0).powi(2);
        let vel_penalty = 1e-3 * v1.powi(2) + 5e-3 * v2.powi(2);
        let alive_bonus = if terminated { 0.0 } else { HEALTHY_REWARD };
        let reward = alive_bonus - dist_penalty - vel_penalty;
        (
            reward,
            terminated,
            [alive_bonus, -dist_penalty, -vel_penalty, 0.0],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, RESET_NOISE_SCALE);
        add_normal_noise(rng, qvel, RESET_NOISE_SCALE);
    }
}
