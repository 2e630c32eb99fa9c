//! The deployable core of a trained policy: what runs on the robot.
//!
//! [`Policy`] loads a policy artifact ([`format`], `runtime/FORMAT.md`), validates it once and
//! runs its sampler on plain f32 slices with hand-written kernels; after load nothing allocates,
//! takes a lock or panics. Also here: the deterministic noise source ([`NoiseRng`]) and the
//! Mish kernel the training code shares ([`mish`]). Nothing depends on candle, MuJoCo or DDS;
//! the optional `onnx` feature adds `OnnxPolicy`, the same interface over tract for
//! cross-checks.

mod error;
pub mod format;
mod half;
mod kernels;
mod load;
pub mod mish;
mod network;
#[cfg(feature = "onnx")]
mod onnx;
mod policy;
mod rng;
mod schedule;

pub use error::{ActError, LoadError};
#[cfg(feature = "onnx")]
pub use onnx::{OnnxError, OnnxPolicy};
pub use policy::Policy;
pub use rng::NoiseRng;
