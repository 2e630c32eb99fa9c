//! The eleven Gymnasium v5 MuJoCo tasks. Each file holds one task's observation, reward,
//! termination and reset distribution; [`TaskEnv`] adds what they share: input checks, the
//! time limit and the RNG.

mod ant;
mod half_cheetah;
mod hopper;
mod humanoid;
mod humanoid_standup;
mod inverted_double_pendulum;
mod inverted_pendulum;
mod pusher;
mod reacher;
mod swimmer;
mod walker2d;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::mujoco::{Assets, RawStepper, Sim};
use crate::{
    Env, EnvSpec, EnvState, MAX_REWARD_TERMS, RewardTerms, RngState, SimError, StepOutcome,
};

/// Every task this crate provides, by Gymnasium id.
pub const TASK_NAMES: [&str; 11] = [
    "Ant-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Humanoid-v5",
    "HumanoidStandup-v5",
    "InvertedDoublePendulum-v5",
    "InvertedPendulum-v5",
    "Pusher-v5",
    "Reacher-v5",
    "Swimmer-v5",
    "Walker2d-v5",
];

/// Creates the task with Gymnasium id `name` (e.g. `Hopper-v5`), its RNG seeded with 0.
pub fn make_env(name: &str, assets: &Assets) -> Result<Box<dyn Env>, SimError> {
    Ok(match name {
        "Ant-v5" => Box::new(TaskEnv::<ant::Ant>::new(assets)?),
        "HalfCheetah-v5" => Box::new(TaskEnv::<half_cheetah::HalfCheetah>::new(assets)?),
        "Hopper-v5" => Box::new(TaskEnv::<hopper::Hopper>::new(assets)?),
        "Humanoid-v5" => Box::new(TaskEnv::<humanoid::Humanoid>::new(assets)?),
        "HumanoidStandup-v5" => {
            Box::new(TaskEnv::<humanoid_standup::HumanoidStandup>::new(assets)?)
        }
        "InvertedDoublePendulum-v5" => {
            Box::new(TaskEnv::<inverted_double_pendulum::InvertedDoublePendulum>::new(assets)?)
        }
        "InvertedPendulum-v5" => {
            Box::new(TaskEnv::<inverted_pendulum::InvertedPendulum>::new(assets)?)
        }
        "Pusher-v5" => Box::new(TaskEnv::<pusher::Pusher>::new(assets)?),
        "Reacher-v5" => Box::new(TaskEnv::<reacher::Reacher>::new(assets)?),
        "Swimmer-v5" => Box::new(TaskEnv::<swimmer::Swimmer>::new(assets)?),
        "Walker2d-v5" => Box::new(TaskEnv::<walker2d::Walker2d>::new(assets)?),
        _ => {
            return Err(SimError::UnknownTask {
                name: name.to_owned(),
            });
        }
    })
}

impl RawStepper {
    /// The bare physics of task `name`: its model, and the physics steps per env step.
    pub fn for_task(name: &str, assets: &Assets) -> Result<(Self, u32), SimError> {
        let (file, frame_skip) = match name {
            "Ant-v5" => (ant::Ant::MODEL_FILE, ant::Ant::FRAME_SKIP),
            "HalfCheetah-v5" => (
                half_cheetah::HalfCheetah::MODEL_FILE,
                half_cheetah::HalfCheetah::FRAME_SKIP,
            ),
            "Hopper-v5" => (hopper::Hopper::MODEL_FILE, hopper::Hopper::FRAME_SKIP),
            "Humanoid-v5" => (
                humanoid::Humanoid::MODEL_FILE,
                humanoid::Humanoid::FRAME_SKIP,
            ),
            "HumanoidStandup-v5" => (
                humanoid_standup::HumanoidStandup::MODEL_FILE,
                humanoid_standup::HumanoidStandup::FRAME_SKIP,
            ),
            "InvertedDoublePendulum-v5" => (
                inverted_double_pendulum::InvertedDoublePendulum::MODEL_FILE,
                inverted_double_pendulum::InvertedDoublePendulum::FRAME_SKIP,
            ),
            "InvertedPendulum-v5" => (
                inverted_pendulum::InvertedPendulum::MODEL_FILE,
                inverted_pendulum::InvertedPendulum::FRAME_SKIP,
            ),
            "Pusher-v5" => (pusher::Pusher::MODEL_FILE, pusher::Pusher::FRAME_SKIP),
            "Reacher-v5" => (reacher::Reacher::MODEL_FILE, reacher::Reacher::FRAME_SKIP),
            "Swimmer-v5" => (swimmer::Swimmer::MODEL_FILE, swimmer::Swimmer::FRAME_SKIP),
            "Walker2d-v5" => (
                walker2d::Walker2d::MODEL_FILE,
                walker2d::Walker2d::FRAME_SKIP,
            ),
            _ => {
                return Err(SimError::UnknownTask {
                    name: name.to_owned(),
                });
            }
        };
        Ok((Self::new(assets, file)?, frame_skip))
    }
}

/// What one task defines; [`TaskEnv`] does the rest.
pub(crate) trait Task: Sized + Send + 'static {
    const NAME: &'static str;
    /// File name of the MJCF model in Gymnasium's assets folder.
    const MODEL_FILE: &'static str;
    const FRAME_SKIP: u32;
    const MAX_EPISODE_STEPS: u32;
    /// Whether the task reads `cfrc_ext` (needs `mj_rnePostConstraint` after stepping).
    const USES_CONTACT_FORCES: bool;
    /// Gymnasium's info keys for the reward terms, in the order `step` returns them.
    const REWARD_TERMS: &'static [&'static str];

    /// Looks up the bodies and sites the task reads.
    fn new(sim: &Sim) -> Result<Self, SimError>;

    fn obs_dim(sim: &Sim) -> usize;

    fn write_obs(&self, sim: &Sim, obs: &mut [f64]);

    /// Runs `sim.do_simulation(action)` with whatever the reward measures around it; returns
    /// the reward, whether the episode terminated, and the reward terms.
    fn step(&mut self, sim: &mut Sim, action: &[f64]) -> (f64, bool, [f64; MAX_REWARD_TERMS]);

    /// Draws the initial state of an episode into `qpos` and `qvel` (which hold `init_qpos`
    /// and `init_qvel` on entry).
    fn reset_state(&mut self, rng: &mut ChaCha8Rng, qpos: &mut [f64], qvel: &mut [f64]);
}

/// A [`Task`] as an [`Env`]: checks inputs, counts steps for the time limit, owns the RNG.
pub(crate) struct TaskEnv<T: Task> {
    task: T,
    sim: Sim,
    spec: EnvSpec,
    rng: ChaCha8Rng,
    elapsed_steps: u32,
    episode_over: bool,
    reset_qpos: Vec<f64>,
    reset_qvel: Vec<f64>,
}

impl<T: Task> TaskEnv<T> {
    pub fn new(assets: &Assets) -> Result<Self, SimError> {
        let sim = Sim::load(assets, T::MODEL_FILE, T::FRAME_SKIP, T::USES_CONTACT_FORCES)?;
        let task = T::new(&sim)?;
        let ctrl_range = sim.model().actuator_ctrlrange();
        let spec = EnvSpec {
            name: T::NAME,
            obs_dim: T::obs_dim(&sim),
            action_low: ctrl_range.iter().map(|r| r[0]).collect(),
            action_high: ctrl_range.iter().map(|r| r[1]).collect(),
            max_episode_steps: T::MAX_EPISODE_STEPS,
            dt_s: sim.dt_s(),
            frame_skip: T::FRAME_SKIP,
            nq: sim.nq(),
            nv: sim.nv(),
            reward_term_names: T::REWARD_TERMS,
        };
        debug_assert_eq!(spec.action_dim(), sim.nu());
        Ok(Self {
            task,
            reset_qpos: sim.init_qpos.clone(),
            reset_qvel: sim.init_qvel.clone(),
            sim,
            spec,
            rng: ChaCha8Rng::seed_from_u64(0),
            elapsed_steps: 0,
            episode_over: true,
        })
    }

    fn check_obs_len(&self, obs: &[f64]) -> Result<(), SimError> {
        if obs.len() == self.spec.obs_dim {
            Ok(())
        } else {
            Err(SimError::ObservationLength {
                task: T::NAME,
                expected: self.spec.obs_dim,
                got: obs.len(),
            })
        }
    }

    fn begin_episode(&mut self, obs: &mut [f64]) {
        self.elapsed_steps = 0;
        self.episode_over = false;
        self.task.write_obs(&self.sim, obs);
    }
}

fn check_state(
    task: &'static str,
    what: &'static str,
    values: &[f64],
    expected: usize,
) -> Result<(), SimError> {
    if values.len() != expected {
        return Err(SimError::StateLength {
            task,
            what,
            expected,
            got: values.len(),
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(SimError::NonFiniteState {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

impl<T: Task> Env for TaskEnv<T> {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f64]) -> Result<(), SimError> {
        self.check_obs_len(obs)?;
        if let Some(seed) = seed {
            self.rng = ChaCha8Rng::seed_from_u64(seed);
        }
        self.sim.reset_data();
        self.reset_qpos.copy_from_slice(&self.sim.init_qpos);
        self.reset_qvel.copy_from_slice(&self.sim.init_qvel);
        self.task
            .reset_state(&mut self.rng, &mut self.reset_qpos, &mut self.reset_qvel);
        self.sim.set_state(&self.reset_qpos, &self.reset_qvel);
        self.begin_episode(obs);
        Ok(())
    }

    fn reset_to_state(
        &mut self,
        qpos: &[f64],
        qvel: &[f64],
        obs: &mut [f64],
    ) -> Result<(), SimError> {
        self.check_obs_len(obs)?;
        check_state(T::NAME, "qpos", qpos, self.spec.nq)?;
        check_state(T::NAME, "qvel", qvel, self.spec.nv)?;
        self.sim.reset_data();
        self.sim.set_state(qpos, qvel);
        self.begin_episode(obs);
        Ok(())
    }

    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<StepOutcome, SimError> {
        self.check_obs_len(obs)?;
        let expected = self.spec.action_dim();
        if action.len() != expected {
            return Err(SimError::ActionLength {
                task: T::NAME,
                expected,
                got: action.len(),
            });
        }
        if let Some(index) = action.iter().position(|a| !a.is_finite()) {
            return Err(SimError::NonFiniteAction {
                index,
                value: action[index],
            });
        }
        if self.episode_over {
            return Err(SimError::EpisodeOver);
        }
        let (reward, terminated, terms) = self.task.step(&mut self.sim, action);
        self.task.write_obs(&self.sim, obs);
        self.elapsed_steps += 1;
        let truncated = self.elapsed_steps >= T::MAX_EPISODE_STEPS;
        self.episode_over = terminated || truncated;
        Ok(StepOutcome {
            reward,
            terminated,
            truncated,
            reward_terms: RewardTerms::new(T::REWARD_TERMS, terms),
        })
    }

    fn save_state(&self) -> EnvState {
        let (physics, replay_last_substep) = self.sim.save_physics();
        EnvState {
            physics,
            replay_last_substep,
            rng: RngState::of(&self.rng),
            elapsed_steps: self.elapsed_steps,
            episode_over: self.episode_over,
        }
    }

    fn load_state(&mut self, state: &EnvState) -> Result<(), SimError> {
        if state.elapsed_steps > T::MAX_EPISODE_STEPS {
            return Err(SimError::SavedState {
                task: T::NAME,
                message: format!(
                    "{} steps into an episode of at most {}",
                    state.elapsed_steps,
                    T::MAX_EPISODE_STEPS
                ),
            });
        }
        self.sim
            .load_physics(&state.physics, state.replay_last_substep)
            .map_err(|message| SimError::SavedState {
                task: T::NAME,
                message,
            })?;
        self.rng = state.rng.to_rng();
        self.elapsed_steps = state.elapsed_steps;
        self.episode_over = state.episode_over;
        Ok(())
    }

    fn qpos(&self) -> &[f64] {
        self.sim.qpos()
    }

    fn qvel(&self) -> &[f64] {
        self.sim.qvel()
    }
}

// Helpers shared by the task files.

/// Adds `U(-scale, scale)` noise to every element (numpy's `uniform(low, high, size)`).
pub(crate) fn add_uniform_noise(rng: &mut ChaCha8Rng, values: &mut [f64], scale: f64) {
    for v in values {
        *v += rng.random_range(-scale..scale);
    }
}

/// Adds `scale * N(0, 1)` noise to every element.
pub(crate) fn add_normal_noise(rng: &mut ChaCha8Rng, values: &mut [f64], scale: f64) {
    for v in values {
        let z: f64 = rng.sample(StandardNormal);
        *v += scale * z;
    }
}

pub(crate) fn sum_of_squares(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum()
}

/// Writes `src` into the front of `out` and returns the rest of `out`.
pub(crate) fn put<'a>(out: &'a mut [f64], src: &[f64]) -> &'a mut [f64] {
    let (head, rest) = out.split_at_mut(src.len());
    head.copy_from_slice(src);
    rest
}

/// Writes `clip(src, -limit, limit)` into the front of `out` and returns the rest of `out`.
pub(crate) fn put_clipped<'a>(out: &'a mut [f64], src: &[f64], limit: f64) -> &'a mut [f64] {
    let (head, rest) = out.split_at_mut(src.len());
    for (o, s) in head.iter_mut().zip(src) {
        *o = s.clamp(-limit, limit);
    }
    rest
}

/// Euclidean norm of `a - b`.
pub(crate) fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// `(x_after - x_before) / dt`, Gymnasium's forward velocity.
pub(crate) fn velocity(before: f64, after: f64, dt_s: f64) -> f64 {
    (after - before) / dt_s
}
