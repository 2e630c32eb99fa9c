//! Batched DDPM reverse sampling and best-of-N selection, as SDAC acts.
//!
//! From `x ~ N(0, init_std^2)`, for `t = T-1 .. 0`:
//! `x0 = clip(x / sqrt(abar_t) - sqrt(1/abar_t - 1) eps(s, x, t), -1, 1)`,
//! `x = c0_t x0 + c1_t x + [t > 0] sigma_t z` (the DDPM posterior). Best-of-N draws N samples
//! per state, scores each unclipped final sample with `min(Q1, Q2)`, keeps the best and clips
//! it to [-1, 1].

use candle_core::{D, DType, Result, Tensor};

use crate::cpu_chain::CpuChain;
use crate::critic::TwinCritic;
use crate::noise::NoiseSource;
use crate::noise_net::NoiseNet;
use crate::schedule::DiffusionSchedule;

#[derive(Debug, Clone)]
pub struct DiffusionSampler {
    pub schedule: DiffusionSchedule,
    /// Standard deviation of the starting noise (0.5 in the reference code).
    pub init_std: f64,
}

impl DiffusionSampler {
    pub fn new(schedule: DiffusionSchedule, init_std: f64) -> Self {
        Self { schedule, init_std }
    }

    /// One reverse chain per row of `obs` (`[M, obs_dim]`); returns the final sample before its
    /// last clip, `[M, act_dim]`. On the CPU (f32) the chain runs as plain loops
    /// ([`DiffusionSampler::sample_on_host`]); elsewhere as tensor operations
    /// ([`DiffusionSampler::sample_with_tensors`]). Both draw the same noise in the same order.
    pub fn sample(
        &self,
        net: &NoiseNet,
        obs: &Tensor,
        act_dim: usize,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        if obs.device().is_cpu() && obs.dtype() == DType::F32 {
            self.sample_on_host(net, obs, act_dim, noise)
        } else {
            self.sample_with_tensors(net, obs, act_dim, noise)
        }
    }

    /// [`DiffusionSampler::sample`] as host loops around `gemm` (CPU tensors only).
    pub fn sample_on_host(
        &self,
        net: &NoiseNet,
        obs: &Tensor,
        act_dim: usize,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let rows = obs.dim(0)?;
        let s = &self.schedule;
        let mut x = noise.normal_values(rows * act_dim, self.init_std);
        let mut chain = CpuChain::new(net, obs, s.steps())?;
        let mut eps = vec![0.0f32; rows * act_dim];
        for t in (0..s.steps()).rev() {
            chain.predict_noise(&x, t, &mut eps)?;
            let abar = s.alpha_bars[t];
            let (x_scale, eps_scale) =
                ((1.0 / abar).sqrt() as f32, (1.0 / abar - 1.0).sqrt() as f32);
            let (coef_x0, coef_xt) = (s.posterior_coef_x0[t] as f32, s.posterior_coef_xt[t] as f32);
            for (x, e) in x.iter_mut().zip(&eps) {
                let x0 = (*x * x_scale - e * eps_scale).clamp(-1.0, 1.0);
                *x = x0 * coef_x0 + *x * coef_xt;
            }
            if t > 0 {
                let sigma = s.posterior_variance[t].max(1e-20).sqrt();
                for (x, z) in x.iter_mut().zip(noise.normal_values(rows * act_dim, sigma)) {
                    *x += z;
                }
            }
        }
        Tensor::from_vec(x, (rows, act_dim), obs.device())
    }

    /// [`DiffusionSampler::sample`] as tensor operations, on any device.
    pub fn sample_with_tensors(
        &self,
        net: &NoiseNet,
        obs: &Tensor,
        act_dim: usize,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let rows = obs.dim(0)?;
        let s = &self.schedule;
        let mut x = noise.normal((rows, act_dim), self.init_std)?;
        let chain = net.chain(obs)?;
        for t in (0..s.steps()).rev() {
            let eps = net.forward_in_chain(&chain, &x, t)?;
            let abar = s.alpha_bars[t];
            let x0 = ((&x * (1.0 / abar).sqrt())? - (eps * (1.0 / abar - 1.0).sqrt())?)?
                .clamp(-1f32, 1f32)?;
            let mean = ((x0 * s.posterior_coef_x0[t])? + (&x * s.posterior_coef_xt[t])?)?;
            x = if t > 0 {
                let sigma = s.posterior_variance[t].max(1e-20).sqrt();
                (mean + noise.normal((rows, act_dim), sigma)?)?
            } else {
                mean
            };
        }
        Ok(x)
    }

    /// For each state of `obs` (`[B, obs_dim]`): `n` samples, the one with the highest
    /// `min(Q1, Q2)`, clipped to [-1, 1]. Returns `[B, act_dim]`.
    pub fn best_of_n(
        &self,
        net: &NoiseNet,
        critic: &TwinCritic,
        obs: &Tensor,
        act_dim: usize,
        n: usize,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let repeated = repeat_rows(obs, n)?;
        let samples = self.sample(net, &repeated, act_dim, noise)?;
        best_candidate(critic, &repeated, &samples, n)
    }
}

/// Each row of `rows` (`[B, d]`) `n` times in a row: `[B n, d]`, row `b n + c` is row `b`.
pub(crate) fn repeat_rows(rows: &Tensor, n: usize) -> Result<Tensor> {
    let (batch, dim) = rows.dims2()?;
    rows.unsqueeze(1)?
        .repeat((1, n, 1))?
        .reshape((batch * n, dim))
}

/// Of the `n` candidate samples of each state (`samples` `[B n, act_dim]`, row `b n + c`, for
/// the states `repeated_obs` in the same rows), the first with the highest `min(Q1, Q2)`,
/// clipped to [-1, 1]: `[B, act_dim]`.
pub(crate) fn best_candidate(
    critic: &TwinCritic,
    repeated_obs: &Tensor,
    samples: &Tensor,
    n: usize,
) -> Result<Tensor> {
    let (rows, act_dim) = samples.dims2()?;
    let batch = rows / n.max(1);
    let scores = critic.min_q(repeated_obs, samples)?.reshape((batch, n))?;
    let best = scores.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let index = best
        .reshape((batch, 1, 1))?
        .broadcast_as((batch, 1, act_dim))?
        .contiguous()?;
    samples
        .reshape((batch, n, act_dim))?
        .gather(&index, 1)?
        .squeeze(1)?
        .clamp(-1f32, 1f32)
}
