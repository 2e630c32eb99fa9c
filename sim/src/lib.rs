//! Gymnasium v5 MuJoCo tasks in Rust.
//!
//! Each task uses Gymnasium's own model file and reproduces its v5 observation layout, reward
//! terms with the default weights, healthy ranges, termination, time-limit truncation and
//! reset-noise distribution. Given the same MuJoCo state and actions, a task's observations,
//! rewards and episode flags equal Gymnasium's (the parity test replays fixtures recorded from
//! Gymnasium 1.2.2 with MuJoCo 3.17.0). Reset noise is drawn from this crate's own seeded RNG,
//! so the same seed gives the same episode here, not the same one as in Python.
//!
//! ```no_run
//! use sdac_sim::{make_env, Assets};
//! let assets = Assets::discover()?;
//! let mut env = make_env("Hopper-v5", &assets)?;
//! let mut obs = vec![0.0; env.spec().obs_dim];
//! env.reset(Some(7), &mut obs)?;
//! let action = vec![0.0; env.spec().action_dim()];
//! let outcome = env.step(&action, &mut obs)?;
//! println!("reward {} terminated {}", outcome.reward, outcome.terminated);
//! # Ok::<(), sdac_sim::SimError>(())
//! ```

pub mod bridge;
#[cfg(feature = "ros")]
pub mod bridge_dds;
mod env;
mod error;
mod mujoco;
pub mod replay;
mod tasks;
pub mod third_party;
mod vec_env;

pub use env::{Env, EnvSpec, EnvState, MAX_REWARD_TERMS, RewardTerms, RngState, StepOutcome};
pub use error::SimError;
pub use mujoco::{Assets, RawStepper, route_mujoco_messages_to_log};
pub use tasks::{TASK_NAMES, make_env};
pub use vec_env::{EpisodeEnd, VecEnv, VecEnvState, VecStep};
