//! Twin Q networks: `concat(s, a)` -> MLP (Mish hidden layers) -> scalar, twice.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::mlp::Mlp;

#[derive(Debug, Clone)]
pub struct TwinCritic {
    q1: Mlp,
    q2: Mlp,
}

impl TwinCritic {
    /// Tensors `{vb}.q1.*` and `{vb}.q2.*`.
    pub fn new(vb: &VarBuilder, obs_dim: usize, act_dim: usize, hidden: &[usize]) -> Result<Self> {
        Ok(Self {
            q1: Mlp::new(&vb.pp("q1"), obs_dim + act_dim, hidden, 1)?,
            q2: Mlp::new(&vb.pp("q2"), obs_dim + act_dim, hidden, 1)?,
        })
    }

    /// `(Q1(s, a), Q2(s, a))`, each of shape `[B]`.
    pub fn forward(&self, obs: &Tensor, action: &Tensor) -> Result<(Tensor, Tensor)> {
        let input = Tensor::cat(&[obs, action], D::Minus1)?;
        Ok((
            self.q1.forward(&input)?.squeeze(1)?,
            self.q2.forward(&input)?.squeeze(1)?,
        ))
    }

    /// `min(Q1, Q2)(s, a)`, shape `[B]`.
    pub fn min_q(&self, obs: &Tensor, action: &Tensor) -> Result<Tensor> {
        let (q1, q2) = self.forward(obs, action)?;
        q1.minimum(&q2)
    }
}
