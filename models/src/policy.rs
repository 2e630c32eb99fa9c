//! A policy artifact as candle networks: the reference implementation of the format's samplers
//! (`sdac_runtime::format`), taking the caller's noise so that every engine can be fed the same
//! numbers. The runtime, the ONNX graph and this module compute the same arithmetic; this one
//! is the one distillation trains through and the ONNX writer reads its weights from.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sdac_runtime::format::{CRITIC_PREFIX, Metadata, MetadataError, NETWORK_PREFIX, SamplerKind};

use crate::critic::TwinCritic;
use crate::noise_net::NoiseNet;
use crate::sampler::{best_candidate, repeat_rows};
use crate::schedule::DiffusionSchedule;
use crate::student::DdimSampler;

/// Why a set of tensors and metadata is not a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The metadata contradicts itself or the format.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A tensor is missing, extra, of another shape, or not finite.
    #[error("policy tensor {name}: {problem}")]
    Tensor { name: String, problem: String },
    /// A computation on valid inputs failed (or the inputs have the wrong shape).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// A policy: its metadata, the sampler network, and the critics of a best-of-N teacher.
#[derive(Debug, Clone)]
pub struct CandlePolicy {
    metadata: Metadata,
    /// Every tensor of the artifact by name (f32).
    tensors: BTreeMap<String, Tensor>,
    net: NoiseNet,
    critic: Option<TwinCritic>,
    schedule: DiffusionSchedule,
    /// `[1, obs_dim]` each.
    obs_mean: Tensor,
    obs_std: Tensor,
    /// `[1, act_dim]` each: `action_env = low + (a + 1) half_range`.
    action_low: Tensor,
    action_half_range: Tensor,
}

impl CandlePolicy {
    /// Builds the policy that `metadata` describes from `tensors`, checking the metadata
    /// (`Metadata::validate`) and that the tensors are exactly the format's
    /// (`Metadata::expected_tensors`), each of its shape and finite.
    pub fn new(
        metadata: Metadata,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        device: &Device,
    ) -> Result<Self, PolicyError> {
        metadata.validate()?;
        let mut given: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        let mut kept = BTreeMap::new();
        for spec in metadata.expected_tensors() {
            let problem = |problem: String| PolicyError::Tensor {
                name: spec.name.clone(),
                problem,
            };
            let tensor = given
                .remove(&spec.name)
                .ok_or_else(|| problem("missing".into()))?;
            if tensor.dims() != spec.shape.as_slice() {
                return Err(problem(format!(
                    "shape {:?}, the metadata implies {:?}",
                    tensor.dims(),
                    spec.shape
                )));
            }
            let tensor = tensor.to_dtype(DType::F32)?.to_device(device)?;
            let values = tensor.flatten_all()?.to_vec1::<f32>()?;
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(problem(format!("holds {v}")));
            }
            kept.insert(spec.name, tensor);
        }
        if let Some(name) = given.into_keys().next() {
            return Err(PolicyError::Tensor {
                name,
                problem: "not part of this policy's format".into(),
            });
        }
        let (od, ad, hidden) = (
            metadata.obs_dim,
            metadata.act_dim,
            metadata.network.hidden.as_slice(),
        );
        let vb = VarBuilder::from_tensors(
            kept.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            DType::F32,
            device,
        );
        let net = NoiseNet::new(&vb.pp(NETWORK_PREFIX), od, ad, hidden)?;
        let critic = match metadata.sampler.kind {
            SamplerKind::DdpmBestOfN => {
                Some(TwinCritic::new(&vb.pp(CRITIC_PREFIX), od, ad, hidden)?)
            }
            SamplerKind::DdimSample => None,
        };
        let row = |values: &[f64]| -> candle_core::Result<Tensor> {
            let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            let len = values.len();
            Tensor::from_vec(values, (1, len), device)
        };
        let half_range = action_half_range(&metadata);
        let s = &metadata.sampler;
        Ok(Self {
            schedule: DiffusionSchedule::linear(
                s.schedule_steps,
                s.beta_min,
                s.beta_max,
                s.beta_scale,
            ),
            obs_mean: row(&metadata.obs_normalization.mean)?,
            obs_std: row(&metadata.obs_normalization.std)?,
            action_low: row(&metadata.action_low)?,
            action_half_range: row(&half_range)?,
            net,
            critic,
            tensors: kept,
            metadata,
        })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The same policy with every tensor rounded to the nearest half-precision value (still
    /// stored as f32): an artifact the runtime keeps in half the bytes, losslessly. A value
    /// beyond half precision's range is an error (it would become infinite).
    pub fn with_half_precision_weights(&self) -> Result<Self, PolicyError> {
        let rounded = self
            .tensors
            .iter()
            .map(|(name, tensor)| {
                Ok((
                    name.clone(),
                    tensor.to_dtype(DType::F16)?.to_dtype(DType::F32)?,
                ))
            })
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Self::new(self.metadata.clone(), rounded, self.obs_mean.device())
    }

    /// Every tensor of the artifact by name.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// The sampler network.
    pub fn net(&self) -> &NoiseNet {
        &self.net
    }

    /// The schedule the sampler's steps index.
    pub fn schedule(&self) -> &DiffusionSchedule {
        &self.schedule
    }

    /// `(obs_raw - mean) / std` for `obs_raw` `[B, obs_dim]`.
    pub fn normalize_obs(&self, obs_raw: &Tensor) -> candle_core::Result<Tensor> {
        obs_raw
            .broadcast_sub(&self.obs_mean)?
            .broadcast_div(&self.obs_std)
    }

    /// `low + (a + 1) (high - low) / 2` for `a` `[B, act_dim]` in [-1, 1].
    pub fn to_env_units(&self, action_normalized: &Tensor) -> candle_core::Result<Tensor> {
        (action_normalized + 1.0)?
            .broadcast_mul(&self.action_half_range)?
            .broadcast_add(&self.action_low)
    }

    /// Actions in environment units, `[B, act_dim]`, for raw observations `obs_raw`
    /// (`[B, obs_dim]`) and standard-normal `noise` (`[B, n_noise, act_dim]`).
    pub fn act(&self, obs_raw: &Tensor, noise: &Tensor) -> candle_core::Result<Tensor> {
        self.to_env_units(&self.act_normalized(obs_raw, noise)?)
    }

    /// The same actions before the mapping to environment units, in [-1, 1].
    pub fn act_normalized(&self, obs_raw: &Tensor, noise: &Tensor) -> candle_core::Result<Tensor> {
        let m = &self.metadata;
        let (batch, obs_dim) = obs_raw.dims2()?;
        let (noise_batch, n_noise, act_dim) = noise.dims3()?;
        if obs_dim != m.obs_dim
            || noise_batch != batch
            || n_noise != m.n_noise
            || act_dim != m.act_dim
        {
            candle_core::bail!(
                "the policy takes obs [B, {}] and noise [B, {}, {}], not {:?} and {:?}",
                m.obs_dim,
                m.n_noise,
                m.act_dim,
                obs_raw.dims(),
                noise.dims()
            );
        }
        let obs = self.normalize_obs(obs_raw)?;
        match (&self.critic, m.sampler.kind) {
            (Some(critic), SamplerKind::DdpmBestOfN) => self.best_of_n(critic, &obs, noise),
            (None, SamplerKind::DdimSample) => {
                self.student_sampler()
                    .sample(&self.net, &obs, &noise.reshape((batch, act_dim))?)
            }
            _ => candle_core::bail!("the policy's critics do not match its sampler"),
        }
    }

    /// The DDIM sampler of a student's metadata.
    pub fn student_sampler(&self) -> DdimSampler {
        let s = &self.metadata.sampler;
        DdimSampler::new(&self.schedule, &s.timesteps, s.init_noise_std)
    }

    /// The teacher's sampler (see `sdac_runtime::format::SamplerKind::DdpmBestOfN`): `N`
    /// DDPM chains per row over the visited steps, noise block `k` (`N` vectors) starting them
    /// (`k = 0`) or added after the `k`-th step; the final sample with the highest
    /// `min(Q1, Q2)` (first on ties), clipped.
    fn best_of_n(
        &self,
        critic: &TwinCritic,
        obs: &Tensor,
        noise: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let s = &self.metadata.sampler;
        let (n, ad) = (s.candidates, self.metadata.act_dim);
        let batch = obs.dim(0)?;
        let rows = batch * n;
        let repeated = repeat_rows(obs, n)?;
        let blocks = noise.reshape((batch, s.timesteps.len(), n, ad))?;
        let block = |k: usize| blocks.narrow(1, k, 1)?.reshape((rows, ad));
        let schedule = &self.schedule;
        let chain = self.net.chain(&repeated)?;
        let mut x = (block(0)? * s.init_noise_std)?;
        for (k, &t) in s.timesteps.iter().enumerate() {
            let eps = self.net.forward_in_chain(&chain, &x, t)?;
            let abar = schedule.alpha_bars[t];
            let x0 = ((&x * (1.0 / abar).sqrt())? - (eps * (1.0 / abar - 1.0).sqrt())?)?
                .clamp(-1f32, 1f32)?;
            x = ((x0 * schedule.posterior_coef_x0[t])? + (&x * schedule.posterior_coef_xt[t])?)?;
            if t > 0 {
                let sigma = schedule.posterior_variance[t].max(1e-20).sqrt();
                x = (x + (block(k + 1)? * sigma)?)?;
            }
        }
        best_candidate(critic, &repeated, &x, n)
    }
}

/// `(high - low) / 2` per action dimension: `action_env = low + (a + 1) half_range`.
pub(crate) fn action_half_range(metadata: &Metadata) -> Vec<f64> {
    metadata
        .action_low
        .iter()
        .zip(&metadata.action_high)
        .map(|(lo, hi)| 0.5 * (hi - lo))
        .collect()
}
