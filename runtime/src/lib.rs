//! The deployable core of a trained policy: what runs on the robot.
//!
//! Nothing here allocates after construction, takes a lock, or depends on candle, MuJoCo or DDS.
//! Present: the deterministic noise source the samplers draw from ([`NoiseRng`]). The policy
//! artifact reader and the reverse sampler are not written yet.

mod rng;

pub use rng::NoiseRng;
