//! A multi-layer perceptron with Mish activations, initialised as the reference code's Haiku
//! networks: hidden layers N(0, 1/fan_in) weights, the output layer N(0, 1e-4/fan_in) (nearly
//! zero outputs at the start), zero biases. (Haiku truncates its normals at two standard
//! deviations; these are not truncated.)

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

/// `x * tanh(softplus(x))`, with softplus written so that neither it nor its gradient
/// overflows: `softplus(x) = max(x, 0) + ln(1 + exp(-|x|))`.
pub fn mish(x: &Tensor) -> Result<Tensor> {
    let softplus = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    x * softplus.tanh()?
}

/// A linear layer `in -> out` under `vb`, weights N(0, weight_var / in), zero bias.
pub fn linear(vb: &VarBuilder, in_dim: usize, out_dim: usize, weight_var: f64) -> Result<Linear> {
    let stdev = (weight_var / in_dim as f64).sqrt();
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn { mean: 0.0, stdev },
    )?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

/// Hidden layers with Mish between them; the last layer is linear.
#[derive(Debug, Clone)]
pub struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
}

impl Mlp {
    /// Layers named `{vb}.hidden.{i}.weight`, ..., `{vb}.output.weight`.
    pub fn new(
        vb: &VarBuilder,
        in_dim: usize,
        hidden_dims: &[usize],
        out_dim: usize,
    ) -> Result<Self> {
        let mut hidden = Vec::with_capacity(hidden_dims.len());
        let mut previous = in_dim;
        for (i, &width) in hidden_dims.iter().enumerate() {
            hidden.push(linear(&vb.pp("hidden").pp(i), previous, width, 1.0)?);
            previous = width;
        }
        let output = linear(&vb.pp("output"), previous, out_dim, 1e-4)?;
        Ok(Self { hidden, output })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = mish(&layer.forward(&h)?)?;
        }
        self.output.forward(&h)
    }
}
