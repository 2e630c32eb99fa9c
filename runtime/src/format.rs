//! The policy artifact format, version 1: defined here once; `sdac-models` writes it, this
//! crate (and the tract path) reads it. `runtime/FORMAT.md` is the same contract in prose.
//!
//! A policy is one safetensors file. Its tensors are little-endian f32, named by the training
//! code's `VarBuilder` prefixes:
//!
//! - the network every sampler step runs (`{NETWORK_PREFIX}.time_in.weight` `[32, 16]`,
//!   `.time_in.bias`, `.time_out.weight` `[16, 32]`, `.time_out.bias`,
//!   `.mlp.hidden.{i}.weight` `[width_i, inputs_i]`, `.mlp.hidden.{i}.bias`,
//!   `.mlp.output.weight` `[act_dim, width_last]`, `.mlp.output.bias`), whose first layer takes
//!   `concat(obs_normalized, x, time_features(t))`;
//! - for [`SamplerKind::DdpmBestOfN`] only, the twin critics that score the candidates
//!   (`critic.q1.hidden.{i}.*`, `critic.q1.output.*`, the same for `q2`), taking
//!   `concat(obs_normalized, action_normalized)`.
//!
//! The file's `__metadata__` holds one entry, [`METADATA_KEY`], whose value is [`Metadata`] as
//! JSON. Everything a reader needs to size its buffers is in it; tensor shapes must agree.

use serde::{Deserialize, Serialize};

/// The `__metadata__` key under which [`Metadata`] is stored as JSON.
pub const METADATA_KEY: &str = "sdac_policy";
/// The format version this crate writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Prefix of the sampler network's tensors.
pub const NETWORK_PREFIX: &str = "policy";
/// Prefix of the critics' tensors (best-of-N samplers only).
pub const CRITIC_PREFIX: &str = "critic";
/// Width of the sinusoidal time embedding the network's time branch takes.
pub const TIME_EMBEDDING_DIM: usize = 16;

/// Everything about a policy artifact that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Always [`FORMAT_VERSION`] when written by this version; readers refuse newer ones.
    pub format_version: u32,
    pub obs_dim: usize,
    pub act_dim: usize,
    /// Environment units: the sampler's output in [-1, 1] maps linearly onto
    /// `[action_low, action_high]` (`act_dim` values each, `low < high`, finite).
    pub action_low: Vec<f64>,
    pub action_high: Vec<f64>,
    /// `obs_normalized = (obs_raw - mean) / std`, element-wise (`obs_dim` values each, std > 0).
    /// A policy trained on raw observations has mean 0 and std 1.
    pub obs_normalization: ObsNormalization,
    pub sampler: Sampler,
    /// Noise vectors (of `act_dim` values each) one action consumes; equals
    /// [`Sampler::noise_vectors`]. The caller's noise is standard normal; the sampler scales it.
    pub n_noise: usize,
    pub network: Network,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObsNormalization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// How the network's output turns noise into an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampler {
    pub kind: SamplerKind,
    /// The training schedule: `beta_t = beta_scale * (beta_min + t / (T - 1) * (beta_max -
    /// beta_min))` for `t` in `0..T`, `T = schedule_steps`; `alpha_bar_t = prod_{i<=t} (1 -
    /// beta_i)`.
    pub schedule_steps: usize,
    pub beta_min: f64,
    pub beta_max: f64,
    pub beta_scale: f64,
    /// The steps the sampler visits, in order (strictly decreasing, each `< schedule_steps`).
    /// DDPM teachers visit every step `T-1..0`; a K-step student visits K of them.
    pub timesteps: Vec<usize>,
    /// The starting sample is `init_noise_std * noise[0..]`.
    pub init_noise_std: f64,
    /// Candidates per action (best-of-N by `min(Q1, Q2)`); 1 for students.
    pub candidates: usize,
}

/// What each sampler step computes; see `runtime/FORMAT.md` for the exact arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// The SDAC teacher: `candidates` DDPM chains over `timesteps`, the network predicting the
    /// noise (epsilon); the final sample with the highest `min(Q1, Q2)` wins, clipped to [-1, 1].
    /// Noise: `candidates` starting vectors, then `candidates` vectors for every visited step
    /// but the last (`candidates * timesteps.len()` in all).
    DdpmBestOfN,
    /// A distilled student: deterministic DDIM over `timesteps`, the network predicting the
    /// clean sample `x0` (clipped to [-1, 1]) at each step. Noise: one starting vector.
    DdimSample,
}

impl Sampler {
    /// Noise vectors one action consumes.
    pub fn noise_vectors(&self) -> usize {
        match self.kind {
            SamplerKind::DdpmBestOfN => self.candidates * self.timesteps.len(),
            SamplerKind::DdimSample => 1,
        }
    }
}

/// The shape of the sampler network (and of each critic, which has the same hidden widths).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Hidden layer widths of the MLP.
    pub hidden: Vec<usize>,
    /// Activation after every hidden layer (and inside the time branch): only `mish`.
    pub activation: Activation,
    /// Width of the sinusoidal time embedding; [`TIME_EMBEDDING_DIM`].
    pub time_embedding_dim: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x tanh(ln(1 + e^x))`.
    Mish,
}

/// Where the policy came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Gymnasium id of the task, e.g. `InvertedPendulum-v5`.
    pub task: String,
    /// `sdac`, or `sdac-distilled` for a student.
    pub algorithm: String,
    pub seed: u64,
    /// FNV-1a 64 of the run's resolved `config.toml`, hex.
    pub config_hash: String,
    /// The project's git commit that wrote the file (`unknown` outside a checkout).
    pub git_commit: String,
    /// The number of sampler steps of a distilled student; `None` for the teacher.
    pub student_steps: Option<usize>,
}
