//! SDAC's models on candle: the noise-prediction network, twin critics, the DDPM schedule and
//! its batched best-of-N sampler, Adam, seeded parameter initialisation and Polyak averaging.
//! Parameters live in `candle_nn::VarMap`s whose names are the `VarBuilder` prefixes, so
//! `VarMap::save` writes safetensors with those names.

mod adam;
mod artifact;
mod cpu_chain;
mod critic;
mod gaussian_actor;
mod mlp;
mod noise;
mod noise_net;
mod onnx;
mod params;
mod policy;
mod sampler;
mod schedule;
mod student;

pub use adam::{Adam, ScalarAdam};
pub use artifact::{
    ArtifactError, policy_bytes, policy_from_bytes, read_metadata, read_policy, write_policy,
};
pub use critic::TwinCritic;
pub use gaussian_actor::GaussianActor;
pub use mlp::{Mlp, mish};
pub use noise::NoiseSource;
pub use noise_net::{ChainContext, NoiseNet, TIME_EMBEDDING_DIM};
pub use onnx::{ONNX_IR_VERSION, ONNX_OPSET, OnnxError, onnx_bytes, onnx_model};
pub use params::{
    TensorMap, copy_params, export_vars, import_vars, polyak_update, seeded_var_builder,
    sorted_vars,
};
pub use policy::{CandlePolicy, PolicyError};
pub use sampler::DiffusionSampler;
pub use schedule::DiffusionSchedule;
pub use student::{DdimSampler, student_timesteps};

/// candle's tensor crate, re-exported so dependants use the same version.
pub use candle_core as candle;
pub use candle_nn;
/// candle-onnx (its protobuf types and evaluator), re-exported for the same reason.
pub use candle_onnx;
