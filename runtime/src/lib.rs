//! The deployable core of a trained policy: what runs on the robot.
//!
//! Nothing here allocates after construction, takes a lock, or depends on candle, MuJoCo or DDS.
//! Present: the policy artifact format ([`format`]) and the deterministic noise source the
//! samplers draw from ([`NoiseRng`]).

pub mod format;
pub mod mish;
mod rng;

pub use rng::NoiseRng;
