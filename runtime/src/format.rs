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

/// The largest observation or action dimension a reader accepts.
pub const MAX_IO_DIM: usize = 4096;
/// The largest hidden layer width a reader accepts.
pub const MAX_HIDDEN_WIDTH: usize = 8192;
/// The most hidden layers a network may have.
pub const MAX_HIDDEN_LAYERS: usize = 16;
/// The most candidates a best-of-N sampler may draw.
pub const MAX_CANDIDATES: usize = 1024;
/// The longest diffusion schedule a reader accepts.
pub const MAX_SCHEDULE_STEPS: usize = 1000;
/// The most parameters (f32 values over all tensors) a policy may hold: 256 MiB of weights.
pub const MAX_PARAMETERS: usize = 1 << 26;
/// The most noise values (`n_noise * act_dim`) one action may consume: 64 MiB.
pub const MAX_NOISE_VALUES: usize = 1 << 24;

/// Why a [`Metadata`] is not a policy this version can run. Each message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error(
        "format version {found} is newer than version {supported}, the newest this reader supports"
    )]
    NewerFormat { found: u32, supported: u32 },
    #[error("metadata field `{field}`: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> MetadataError {
    MetadataError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// `Ok` if `value` is in `1..=cap`.
fn check_count(field: &'static str, value: usize, cap: usize) -> Result<(), MetadataError> {
    if (1..=cap).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value} is outside 1..={cap}")))
    }
}

/// `Ok` if `values` has `len` entries, each finite also as f32 and accepted by `accept`.
fn check_values(
    field: &'static str,
    values: &[f64],
    len: usize,
    accept: impl Fn(f64) -> bool,
    requirement: &str,
) -> Result<(), MetadataError> {
    if values.len() != len {
        return Err(invalid(
            field,
            format!("expected {len} values, found {}", values.len()),
        ));
    }
    match values
        .iter()
        .position(|&v| !(v.is_finite() && (v as f32).is_finite() && accept(v)))
    {
        Some(i) => Err(invalid(
            field,
            format!("value {i} is {}; {requirement}", values[i]),
        )),
        None => Ok(()),
    }
}

impl Metadata {
    /// Checks everything a reader relies on, without the tensors: the version, every
    /// dimension against the caps above (`MAX_*`), the bounds, the normalisation, the schedule
    /// (every `beta_t` in (0, 1), every `alpha_bar_t > 0`), the visited steps, the noise count
    /// and the sampler kind's rules (a teacher's steps end at 0; a student has one candidate).
    pub fn validate(&self) -> Result<(), MetadataError> {
        if self.format_version > FORMAT_VERSION {
            return Err(MetadataError::NewerFormat {
                found: self.format_version,
                supported: FORMAT_VERSION,
            });
        }
        if self.format_version == 0 {
            return Err(invalid("format_version", "0 is not a format version"));
        }
        check_count("obs_dim", self.obs_dim, MAX_IO_DIM)?;
        check_count("act_dim", self.act_dim, MAX_IO_DIM)?;
        let finite = |_: f64| true;
        check_values(
            "action_low",
            &self.action_low,
            self.act_dim,
            finite,
            "must be finite",
        )?;
        check_values(
            "action_high",
            &self.action_high,
            self.act_dim,
            finite,
            "must be finite",
        )?;
        if let Some(i) = (0..self.act_dim).find(|&i| {
            let (low, high) = (self.action_low[i], self.action_high[i]);
            !(low < high && ((high - low) as f32).is_finite())
        }) {
            return Err(invalid(
                "action_high",
                format!(
                    "dimension {i}: low {} must be below high {} (and the range finite)",
                    self.action_low[i], self.action_high[i]
                ),
            ));
        }
        let normalization = &self.obs_normalization;
        check_values(
            "obs_normalization.mean",
            &normalization.mean,
            self.obs_dim,
            finite,
            "must be finite",
        )?;
        check_values(
            "obs_normalization.std",
            &normalization.std,
            self.obs_dim,
            |s| s > 0.0 && ((1.0 / s) as f32).is_finite() && (s as f32) > 0.0,
            "must be positive with a finite reciprocal",
        )?;
        self.validate_network()?;
        self.validate_sampler()
    }

    fn validate_network(&self) -> Result<(), MetadataError> {
        let network = &self.network;
        check_count(
            "network.hidden (layer count)",
            network.hidden.len(),
            MAX_HIDDEN_LAYERS,
        )?;
        if let Some(&width) = network
            .hidden
            .iter()
            .find(|&&w| !(1..=MAX_HIDDEN_WIDTH).contains(&w))
        {
            return Err(invalid(
                "network.hidden",
                format!("width {width} is outside 1..={MAX_HIDDEN_WIDTH}"),
            ));
        }
        if network.time_embedding_dim != TIME_EMBEDDING_DIM {
            return Err(invalid(
                "network.time_embedding_dim",
                format!(
                    "expected {TIME_EMBEDDING_DIM}, found {}",
                    network.time_embedding_dim
                ),
            ));
        }
        let parameters: usize = self.expected_tensors().iter().map(|t| t.elements()).sum();
        if parameters > MAX_PARAMETERS {
            return Err(invalid(
                "network",
                format!("{parameters} parameters exceed the cap {MAX_PARAMETERS}"),
            ));
        }
        Ok(())
    }

    fn validate_sampler(&self) -> Result<(), MetadataError> {
        let sampler = &self.sampler;
        check_count(
            "sampler.schedule_steps",
            sampler.schedule_steps,
            MAX_SCHEDULE_STEPS,
        )?;
        let steps = sampler.schedule_steps;
        check_count("sampler.timesteps (count)", sampler.timesteps.len(), steps)?;
        if let Some(pair) = sampler.timesteps.windows(2).find(|w| w[0] <= w[1]) {
            return Err(invalid(
                "sampler.timesteps",
                format!("not strictly decreasing: {} then {}", pair[0], pair[1]),
            ));
        }
        if let Some(&t) = sampler.timesteps.iter().find(|&&t| t >= steps) {
            return Err(invalid(
                "sampler.timesteps",
                format!("step {t} is not below schedule_steps {steps}"),
            ));
        }
        for (field, value) in [
            ("sampler.beta_min", sampler.beta_min),
            ("sampler.beta_max", sampler.beta_max),
            ("sampler.beta_scale", sampler.beta_scale),
        ] {
            if !value.is_finite() {
                return Err(invalid(field, format!("{value} is not finite")));
            }
        }
        let betas = sampler.betas();
        if let Some((t, beta)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b < 1.0))
        {
            return Err(invalid(
                "sampler.beta_min, beta_max, beta_scale",
                format!("beta at step {t} is {beta}, outside (0, 1)"),
            ));
        }
        let alpha_bars = sampler.alpha_bars();
        if let Some(t) = alpha_bars
            .iter()
            .position(|&a| !(a as f32 > 0.0 && (1.0 / a.sqrt()) as f32 <= f32::MAX))
        {
            return Err(invalid(
                "sampler.schedule_steps",
                format!(
                    "alpha_bar at step {t} is {}, too small for f32",
                    alpha_bars[t]
                ),
            ));
        }
        if !(sampler.init_noise_std.is_finite()
            && sampler.init_noise_std > 0.0
            && (sampler.init_noise_std as f32).is_finite())
        {
            return Err(invalid(
                "sampler.init_noise_std",
                format!("{} must be positive and finite", sampler.init_noise_std),
            ));
        }
        match sampler.kind {
            SamplerKind::DdpmBestOfN => {
                check_count("sampler.candidates", sampler.candidates, MAX_CANDIDATES)?;
                if sampler.timesteps.last() != Some(&0) {
                    return Err(invalid(
                        "sampler.timesteps",
                        "a ddpm_best_of_n sampler must end at step 0",
                    ));
                }
            }
            SamplerKind::DdimSample => {
                if sampler.candidates != 1 {
                    return Err(invalid(
                        "sampler.candidates",
                        format!("a ddim_sample student has 1, found {}", sampler.candidates),
                    ));
                }
            }
        }
        if self.n_noise != sampler.noise_vectors() {
            return Err(invalid(
                "n_noise",
                format!(
                    "the sampler consumes {} noise vectors, found {}",
                    sampler.noise_vectors(),
                    self.n_noise
                ),
            ));
        }
        let noise_values = self.n_noise.saturating_mul(self.act_dim);
        if noise_values > MAX_NOISE_VALUES {
            return Err(invalid(
                "n_noise",
                format!("{noise_values} noise values exceed the cap {MAX_NOISE_VALUES}"),
            ));
        }
        Ok(())
    }

    /// Every tensor the artifact must hold (and no others), with its shape. Valid for a
    /// metadata whose dimensions passed [`Metadata::validate`] (the caps keep the products
    /// small).
    pub fn expected_tensors(&self) -> Vec<TensorSpec> {
        let mut tensors = Vec::new();
        let mut linear = |name: String, outputs: usize, inputs: usize| {
            tensors.push(TensorSpec {
                name: format!("{name}.weight"),
                shape: vec![outputs, inputs],
            });
            tensors.push(TensorSpec {
                name: format!("{name}.bias"),
                shape: vec![outputs],
            });
        };
        let time = TIME_EMBEDDING_DIM;
        let hidden = &self.network.hidden;
        linear(format!("{NETWORK_PREFIX}.time_in"), 2 * time, time);
        linear(format!("{NETWORK_PREFIX}.time_out"), time, 2 * time);
        let mut mlp = |prefix: String, inputs: usize, outputs: usize| {
            let mut previous = inputs;
            for (i, &width) in hidden.iter().enumerate() {
                linear(format!("{prefix}.hidden.{i}"), width, previous);
                previous = width;
            }
            linear(format!("{prefix}.output"), outputs, previous);
        };
        mlp(
            format!("{NETWORK_PREFIX}.mlp"),
            self.obs_dim + self.act_dim + time,
            self.act_dim,
        );
        if self.sampler.kind == SamplerKind::DdpmBestOfN {
            for critic in ["q1", "q2"] {
                mlp(
                    format!("{CRITIC_PREFIX}.{critic}"),
                    self.obs_dim + self.act_dim,
                    1,
                );
            }
        }
        tensors
    }
}

/// One tensor of an artifact: its name and shape (f32 always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// The number of values (saturating, so absurd shapes cannot overflow).
    pub fn elements(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }
}

impl Sampler {
    /// `beta_t` for `t` in `0..schedule_steps`, in f64.
    pub fn betas(&self) -> Vec<f64> {
        linear_betas(
            self.schedule_steps,
            self.beta_min,
            self.beta_max,
            self.beta_scale,
        )
    }

    /// `alpha_bar_t = prod_{i <= t} (1 - beta_i)` for `t` in `0..schedule_steps`, in f64.
    pub fn alpha_bars(&self) -> Vec<f64> {
        alpha_bars(&self.betas())
    }
}

/// `beta_t = scale * (beta_min + t / (steps - 1) * (beta_max - beta_min))` for `t` in
/// `0..steps` (the fraction is 0 for a single step): the training schedule, defined once for
/// the writers (candle) and the readers.
pub fn linear_betas(steps: usize, beta_min: f64, beta_max: f64, scale: f64) -> Vec<f64> {
    (0..steps)
        .map(|t| {
            let fraction = if steps > 1 {
                t as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            scale * (beta_min + fraction * (beta_max - beta_min))
        })
        .collect()
}

/// `alpha_bar_t = prod_{i <= t} (1 - beta_i)`.
pub fn alpha_bars(betas: &[f64]) -> Vec<f64> {
    betas
        .iter()
        .scan(1.0, |product, beta| {
            *product *= 1.0 - beta;
            Some(*product)
        })
        .collect()
}
