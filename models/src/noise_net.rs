//! The noise-prediction network `eps_theta(s, a_t, t)` of SDAC.
//!
//! `t` (the diffusion step index, as f32) -> sinusoidal embedding of width 16 (8 frequencies
//! `10000^(-j/8)`, sin then cos, scaled by `1/sqrt(16)`) -> Linear 32 -> Mish -> Linear 16;
//! then `concat(s, a_t, t_embedding)` -> MLP (Mish hidden layers) -> `act_dim`, no squashing.

use candle_core::{D, Device, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::mlp::{Mlp, linear, mish};

/// Width of the sinusoidal time embedding.
pub const TIME_EMBEDDING_DIM: usize = 16;

/// What the steps of one reverse chain share; made by [`NoiseNet::chain`].
#[derive(Debug, Clone)]
pub struct ChainContext {
    /// `obs W_s^T`, `[M, hidden_0]`.
    obs_projection: Tensor,
    /// `W_a^T`, `[act_dim, hidden_0]`.
    action_weight_t: Tensor,
    /// `W_t^T`, `[16, hidden_0]`.
    time_weight_t: Tensor,
}

#[derive(Debug, Clone)]
pub struct NoiseNet {
    /// `10000^(-j/8)`, shape `[1, 8]`.
    inv_freq: Tensor,
    time_in: Linear,
    time_out: Linear,
    mlp: Mlp,
}

impl NoiseNet {
    /// Tensors `{vb}.time_in.*`, `{vb}.time_out.*`, `{vb}.mlp.*`.
    pub fn new(vb: &VarBuilder, obs_dim: usize, act_dim: usize, hidden: &[usize]) -> Result<Self> {
        let half = TIME_EMBEDDING_DIM / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| 10000f64.powf(-(j as f64) / half as f64) as f32)
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), vb.device())?;
        Ok(Self {
            inv_freq,
            time_in: linear(
                &vb.pp("time_in"),
                TIME_EMBEDDING_DIM,
                2 * TIME_EMBEDDING_DIM,
                1.0,
            )?,
            time_out: linear(
                &vb.pp("time_out"),
                2 * TIME_EMBEDDING_DIM,
                TIME_EMBEDDING_DIM,
                1.0,
            )?,
            mlp: Mlp::new(
                &vb.pp("mlp"),
                obs_dim + act_dim + TIME_EMBEDDING_DIM,
                hidden,
                act_dim,
            )?,
        })
    }

    /// The raw sinusoidal embedding of step indices `t` (shape `[B]`), shape `[B, 16]`.
    pub fn sinusoidal_embedding(&self, t: &Tensor) -> Result<Tensor> {
        let phases = t.unsqueeze(1)?.broadcast_mul(&self.inv_freq)?;
        let scale = 1.0 / (TIME_EMBEDDING_DIM as f64).sqrt();
        Tensor::cat(&[phases.sin()?, phases.cos()?], D::Minus1)? * scale
    }

    pub(crate) fn time_features(&self, t: &Tensor) -> Result<Tensor> {
        self.time_out.forward(&mish(
            &self.time_in.forward(&self.sinusoidal_embedding(t)?)?,
        )?)
    }

    /// Predicted noise for noisy actions `x` (`[B, act_dim]`) of states `obs` (`[B, obs_dim]`)
    /// at steps `t` (`[B]`, f32).
    pub fn forward(&self, obs: &Tensor, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let time = self.time_features(t)?;
        self.mlp.forward(&Tensor::cat(&[obs, x, &time], D::Minus1)?)
    }

    /// Precomputes what a reverse chain over the states `obs` (`[M, obs_dim]`) shares between
    /// its steps: the states' share of the first layer, `obs W_s^T`. With it, a step costs the
    /// first layer only on the action columns (see [`NoiseNet::forward_in_chain`]).
    pub fn chain(&self, obs: &Tensor) -> Result<ChainContext> {
        let obs_dim = obs.dim(1)?;
        let weight = self.mlp.first_layer().weight();
        let obs_weight = weight.narrow(1, 0, obs_dim)?;
        let rest = weight.narrow(1, obs_dim, weight.dim(1)? - obs_dim)?;
        let act_dim = rest.dim(1)? - TIME_EMBEDDING_DIM;
        Ok(ChainContext {
            obs_projection: obs.matmul(&obs_weight.t()?)?,
            action_weight_t: rest.narrow(1, 0, act_dim)?.t()?.contiguous()?,
            time_weight_t: rest
                .narrow(1, act_dim, TIME_EMBEDDING_DIM)?
                .t()?
                .contiguous()?,
        })
    }

    /// The same value as [`NoiseNet::forward`] for every row at one step `t`, using `chain`.
    pub fn forward_in_chain(&self, chain: &ChainContext, x: &Tensor, t: usize) -> Result<Tensor> {
        let step = Tensor::full(t as f32, 1, x.device())?;
        let mut shared = self.time_features(&step)?.matmul(&chain.time_weight_t)?;
        if let Some(bias) = self.mlp.first_layer().bias() {
            shared = shared.broadcast_add(bias)?;
        }
        let pre_activation = chain
            .obs_projection
            .add(&x.matmul(&chain.action_weight_t)?)?
            .broadcast_add(&shared)?;
        self.mlp.forward_from_first(&pre_activation)
    }

    pub(crate) fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    pub fn device(&self) -> &Device {
        self.inv_freq.device()
    }
}
