//! SAC's tanh-Gaussian policy: `s` -> MLP -> mean and log std (squashed into [-5, 2] as in
//! CleanRL); actions `tanh(mean + std z)`.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::mlp::Mlp;
use crate::noise::NoiseSource;

const LOG_STD_MIN: f64 = -5.0;
const LOG_STD_MAX: f64 = 2.0;

#[derive(Debug, Clone)]
pub struct GaussianActor {
    mlp: Mlp,
    act_dim: usize,
}

impl GaussianActor {
    /// Tensors `{vb}.mlp.*`.
    pub fn new(vb: &VarBuilder, obs_dim: usize, act_dim: usize, hidden: &[usize]) -> Result<Self> {
        Ok(Self {
            mlp: Mlp::new(&vb.pp("mlp"), obs_dim, hidden, 2 * act_dim)?,
            act_dim,
        })
    }

    fn mean_log_std(&self, obs: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = self.mlp.forward(obs)?;
        let mean = out.narrow(D::Minus1, 0, self.act_dim)?;
        let raw = out.narrow(D::Minus1, self.act_dim, self.act_dim)?.tanh()?;
        let log_std = ((raw + 1.0)? * (0.5 * (LOG_STD_MAX - LOG_STD_MIN)))? + LOG_STD_MIN;
        Ok((mean, log_std?))
    }

    /// A reparameterised sample and its log-probability: `([B, act_dim], [B])`.
    pub fn sample(&self, obs: &Tensor, noise: &mut NoiseSource) -> Result<(Tensor, Tensor)> {
        let (mean, log_std) = self.mean_log_std(obs)?;
        let z = noise.normal(mean.shape(), 1.0)?;
        let pre_tanh = (&mean + (log_std.exp()? * &z)?)?;
        let action = pre_tanh.tanh()?;
        // log N(pre_tanh; mean, std) = -z^2/2 - log std - log(2 pi)/2, minus the tanh Jacobian.
        let gaussian = ((z.sqr()? * -0.5)? - &log_std)? - 0.5 * (2.0 * std::f64::consts::PI).ln();
        let jacobian = ((action.sqr()?.neg()? + 1.0)? + 1e-6)?.log()?;
        let log_prob = (gaussian? - jacobian)?.sum(D::Minus1)?;
        Ok((action, log_prob))
    }

    /// The deterministic action `tanh(mean)`.
    pub fn mode(&self, obs: &Tensor) -> Result<Tensor> {
        self.mean_log_std(obs)?.0.tanh()
    }
}
