//! Reacher-v5: bring the fingertip to a random target; reward = -|fingertip - target|
//! - |a|^2; never terminates, truncated after 50 steps.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Task, add_uniform_noise, distance, put, sum_of_squares};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const REWARD_DIST_WEIGHT: f64 = 1.0;
const REWARD_CONTROL_WEIGHT: f64 = 1.0;
const ARM_POSITION_NOISE: f64 = 0.1;
const ARM_VELOCITY_NOISE: f64 = 0.005;
/// Targets are drawn uniformly in the square of this half-width, kept if inside the circle.
const TARGET_RADIUS: f64 = 0.2;

pub(crate) struct Reacher {
    fingertip: usize,
    target: usize,
}

impl Reacher {
    fn fingertip_to_target(&self, sim: &Sim) -> [f64; 3] {
        let (f, t) = (sim.body_pos(self.fingertip), sim.body_pos(self.target));
        [f[0] - t[0], f[1] - t[1], f[2] - t[2]]
    }
}

impl Task for Reacher {
    const NAME: &'static str = "Reacher-v5";
    const MODEL_FILE: &'static str = "reacher.xml";
    const FRAME_SKIP: u32 = 2;
    const MAX_EPISODE_STEPS: u32 = 50;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] = &["reward_dist", "reward_ctrl"];

    fn new(sim: &Sim) -> Result<Self, SimError> {
        Ok(Self {
            fingertip: sim.body_id(Self::NAME, "fingertip")?,
            target: sim.body_id(Self::NAME, "target")?,
        })
    }

    /// cos and sin of the two arm angles, the target position, the arm velocities, and the
    /// fingertip-to-target vector in the plane.
    fn obs_dim(_sim: &Sim) -> usize {
        10
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let qpos = sim.qpos();
        obs[0] = qpos[0].cos();
        obs[1] = qpos[1].cos();
        obs[2] = qpos[0].sin();
        obs[3] = qpos[1].sin();
        let rest = put(&mut obs[4..], &qpos[2..]);
        let rest = put(rest, &sim.qvel()[..2]);
        put(rest, &self.fingertip_to_target(sim)[..2]);
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        sim.do_simulation(action);
        let reward_dist =
            -distance(sim.body_pos(self.fingertip), sim.body_pos(self.target)) * REWARD_DIST_WEIGHT;
        let reward_ctrl = -sum_of_squares(action) * REWARD_CONTROL_WEIGHT;
        (
            reward_dist + reward_ctrl,
            false,
            [reward_dist, reward_ctrl, 0.0, 0.0],
        )
    }

    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        add_uniform_noise(rng, qpos, ARM_POSITION_NOISE);
        let goal = loop {
            let goal: [f64; 2] = [
                rng.random_range(-TARGET_RADIUS..TARGET_RADIUS),
                rng.random_range(-TARGET_RADIUS..TARGET_RADIUS),
            ];
            if goal[0].hypot(goal[1]) < TARGET_RADIUS {
                break goal;
            }
        };
        let n = qpos.len();
        qpos[n - 2..].copy_from_slice(&goal);
        add_uniform_noise(rng, qvel, ARM_VELOCITY_NOISE);
        let n = qvel.len();
        qvel[n - 2..].fill(0.0);
    }
}
