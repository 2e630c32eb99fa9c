use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::SimError;

/// The most reward terms any task reports.
pub const MAX_REWARD_TERMS: usize = 4;

/// What a task is: the sizes and bounds a learner needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvSpec {
    /// Gymnasium id, e.g. `Hopper-v5`.
    pub name: &'static str,
    /// Length of the observation vector (unbounded, float64, as in Gymnasium).
    pub obs_dim: usize,
    /// Lower action bound per dimension, environment units (the actuators' `ctrlrange`).
    pub action_low: Vec<f64>,
    /// Upper action bound per dimension, environment units.
    pub action_high: Vec<f64>,
    /// Steps after which an episode is truncated (Gymnasium's `max_episode_steps`).
    pub max_episode_steps: u32,
    /// Simulated seconds per environment step (`timestep * frame_skip`).
    pub dt_s: f64,
    /// MuJoCo physics steps per environment step.
    pub frame_skip: u32,
    /// Number of generalised positions (`nq`).
    pub nq: usize,
    /// Number of generalised velocities (`nv`).
    pub nv: usize,
    /// Names of the reward terms, in the order of [`RewardTerms::values`] (Gymnasium's info keys).
    pub reward_term_names: &'static [&'static str],
}

impl EnvSpec {
    pub fn action_dim(&self) -> usize {
        self.action_low.len()
    }
}

/// The reward decomposition of one step, as Gymnasium reports it in `info`
/// (`reward_forward`, `reward_ctrl`, ...; costs are negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardTerms {
    names: &'static [&'static str],
    values: [f64; MAX_REWARD_TERMS],
}

impl RewardTerms {
    pub(crate) fn new(names: &'static [&'static str], values: [f64; MAX_REWARD_TERMS]) -> Self {
        Self { names, values }
    }

    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    pub fn values(&self) -> &[f64] {
        &self.values[..self.names.len()]
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.names
            .iter()
            .position(|n| *n == name)
            .map(|i| self.values[i])
    }
}

/// The result of one [`Env::step`]; the observation is written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub reward: f64,
    /// The task ended on its own (the robot fell): do not bootstrap.
    pub terminated: bool,
    /// The time limit cut the episode: bootstrap from the final observation.
    pub truncated: bool,
    pub reward_terms: RewardTerms,
}

/// One MuJoCo task with Gymnasium v5 semantics. Buffers are the caller's, so stepping does not
/// allocate.
pub trait Env: Send {
    fn spec(&self) -> &EnvSpec;

    /// Starts an episode from the task's reset distribution. `Some(seed)` reseeds the task's
    /// RNG; `None` continues its stream (an env is created seeded with 0).
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f64]) -> Result<(), SimError>;

    /// Starts an episode from an exact MuJoCo state (what Gymnasium's `set_state` does after a
    /// reset). Used to replay a recorded episode.
    fn reset_to_state(
        &mut self,
        qpos: &[f64],
        qvel: &[f64],
        obs: &mut [f64],
    ) -> Result<(), SimError>;

    /// Applies `action` (environment units, not clipped: MuJoCo clamps controls to their range,
    /// costs use the action as given) for `frame_skip` physics steps.
    fn step(&mut self, action: &[f64], obs: &mut [f64]) -> Result<StepOutcome, SimError>;

    /// Everything needed to continue this environment exactly where it is, in another process:
    /// after [`Env::load_state`], the same actions give bit-for-bit the same observations,
    /// rewards and flags.
    fn save_state(&self) -> EnvState;

    /// Restores what [`Env::save_state`] wrote (of the same task). The observation is not part
    /// of the state: keep the last one the environment wrote.
    fn load_state(&mut self, state: &EnvState) -> Result<(), SimError>;

    /// Generalised positions of the current state.
    fn qpos(&self) -> &[f64];

    /// Generalised velocities of the current state.
    fn qvel(&self) -> &[f64];
}

/// A saved environment (see [`Env::save_state`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvState {
    /// MuJoCo's integration state (`mj_getState` with `mjSTATE_INTEGRATION`).
    pub physics: Vec<f64>,
    /// `physics` is the state before the last physics substep, which [`Env::load_state`] takes
    /// again so that what MuJoCo derives during a step (body positions the next reward starts
    /// from, contact forces) comes back too. When false, `physics` is the current state right
    /// after a reset, which is restored as a reset leaves it (`mj_forward`).
    pub replay_last_substep: bool,
    /// The reset-noise RNG.
    pub rng: RngState,
    /// Steps taken in the current episode (the time limit counts them).
    pub elapsed_steps: u32,
    /// The episode ended and the environment waits for a reset.
    pub episode_over: bool,
}

/// The exact position of a ChaCha8 stream: restoring it continues the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// The 128-bit word position as two halves (JSON numbers hold 64 bits).
    pub word_pos: [u64; 2],
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: split_u128(rng.get_word_pos()),
        }
    }

    pub fn to_rng(&self) -> ChaCha8Rng {
        use rand::SeedableRng as _;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos((u128::from(self.word_pos[0]) << 64) | u128::from(self.word_pos[1]));
        rng
    }
}

fn split_u128(value: u128) -> [u64; 2] {
    [(value >> 64) as u64, value as u64]
}
