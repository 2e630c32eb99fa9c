//! Pusher-v5: push the object to the goal with the arm's tip; reward = -0.5 |object - tip|
//! - |object - goal| - 0.1 |a|^2; never terminates, truncated after 100 steps.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{Task, add_uniform_noise, distance, put, sum_of_squares};
use crate::mujoco::Sim;
use crate::{MAX_REWARD_TERMS, SimError};

const REWARD_NEAR_WEIGHT: f64 = 0.5;
const REWARD_DIST_WEIGHT: f64 = 1.0;
const REWARD_CONTROL_WEIGHT: f64 = 0.1;
const ARM_VELOCITY_NOISE: f64 = 0.005;
/// The object starts at least this far from the goal, which is at the origin.
const MIN_OBJECT_GOAL_DISTANCE: f64 = 0.17;
const ARM_JOINTS: usize = 7;

pub(crate) struct Pusher {
    tips_arm: usize,
    object: usize,
    goal: usize,
}

impl Task for Pusher {
    const NAME: &'static str = "Pusher-v5";
    const MODEL_FILE: &'static str = "pusher_v5.xml";
    const FRAME_SKIP: u32 = 5;
    const MAX_EPISODE_STEPS: u32 = 100;
    const USES_CONTACT_FORCES: bool = false;
    const REWARD_TERMS: &'static [&'static str] = &["reward_dist", "reward_ctrl", "reward_near"];

    fn new(sim: &Sim) -> Result<Self, SimError> {
        Ok(Self {
            tips_arm: sim.body_id(Self::NAME, "tips_arm")?,
            object: sim.body_id(Self::NAME, "object")?,
            goal: sim.body_id(Self::NAME, "goal")?,
        })
    }

    /// The 7 arm joint positions and velocities, then the positions of the arm's tip, the
    /// object and the goal.
    fn obs_dim(_sim: &Sim) -> usize {
        2 * ARM_JOINTS + 9
    }

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]) {
        let rest = put(obs, &sim.qpos()[..ARM_JOINTS]);
        let rest = put(rest, &sim.qvel()[..ARM_JOINTS]);
        let rest = put(rest, &sim.body_pos(self.tips_arm));
        let rest = put(rest, &sim.body_pos(self.object));
        put(rest, &sim.body_pos(self.goal));
    }

    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]) {
        sim.do_simulation(action);
        let object = sim.body_pos(self.object);
        let reward_near = -distance(object, sim.body_pos(self.tips_arm)) * REWARD_NEAR_WEIGHT;
        let reward_dist = -distance(object, sim.body_pos(self.goal)) * REWARD_DIST_WEIGHT;
        let reward_ctrl = -sum_of_squares(action) * REWARD_CONTROL_WEIGHT;
        let reward = reward_dist + reward_ctrl + reward_near;
        (reward, false, [reward_dist, reward_ctrl, reward_near, 0.0])
    }

    /// The arm starts at its initial pose (no position noise, as in Gymnasium); the object
    /// uniformly in x in [-0.3, 0), y in [-0.2, 0.2) at least 0.17 from the goal at the origin.
    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]) {
        let object_xy = loop {
            let xy: [f64; 2] = [rng.random_range(-0.3..0.0), rng.random_range(-0.2..0.2)];
            if xy[0].hypot(xy[1]) > MIN_OBJECT_GOAL_DISTANCE {
                break xy;
            }
        };
        let n = qpos.len();
        qpos[n - 4..n - 2].copy_from_slice(&object_xy);
        qpos[n - 2..].fill(0.0);
        add_uniform_noise(rng, qvel, ARM_VELOCITY_NOISE);
        let n = qvel.len();
        qvel[n - 4..].fill(0.0);
    }
}
