//! A multi-layer perceptron with Mish activations, initialised as the reference code's Haiku
//! networks: hidden layers N(0, 1/fan_in) weights, the output layer N(0, 1e-4/fan_in) (nearly
//! zero outputs at the start), zero biases. (Haiku truncates its normals at two standard
//! deviations; these are not truncated.)

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use sdac_runtime::mish::{MishPart, mish_in_place};

/// `x * tanh(softplus(x))`. On the CPU one fused pass with a single `exp` per element (candle's
/// separate `tanh`, `exp` and `log` made Mish most of a small network's time); elsewhere the
/// composite form, with softplus written so that neither it nor its gradient overflows:
/// `softplus(x) = max(x, 0) + ln(1 + exp(-|x|))`.
pub fn mish(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return x.contiguous()?.apply_op1(Mish);
    }
    let softplus = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    x * softplus.tanh()?
}

/// `part` of Mish over a contiguous f32 tensor, into a new one.
fn map_f32(storage: &CpuStorage, layout: &Layout, part: MishPart) -> Result<(CpuStorage, Shape)> {
    let values = storage.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("mish: expected a contiguous tensor")
    };
    let mut out = values[start..end].to_vec();
    mish_in_place(&mut out, part);
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

struct Mish;

impl CustomOp1 for Mish {
    fn name(&self) -> &'static str {
        "mish"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, MishPart::Value)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            (arg.contiguous()?.apply_op1_no_bwd(&MishDerivative)? * grad_res)?,
        ))
    }
}

struct MishDerivative;

impl CustomOp1 for MishDerivative {
    fn name(&self) -> &'static str {
        "mish-derivative"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, MishPart::Derivative)
    }
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

impl Mlp {
    /// The hidden layers and the output layer.
    pub(crate) fn layers(&self) -> (&[Linear], &Linear) {
        (&self.hidden, &self.output)
    }

    /// The first layer (hidden layer 0, or the output layer of an MLP without hidden layers).
    pub fn first_layer(&self) -> &Linear {
        self.hidden.first().unwrap_or(&self.output)
    }

    /// The rest of the network from the first layer's pre-activation on (for callers that
    /// compute the first layer themselves).
    pub fn forward_from_first(&self, first_pre_activation: &Tensor) -> Result<Tensor> {
        if self.hidden.is_empty() {
            return Ok(first_pre_activation.clone());
        }
        let mut h = mish(first_pre_activation)?;
        for layer in &self.hidden[1..] {
            h = mish(&layer.forward(&h)?)?;
        }
        self.output.forward(&h)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_from_first(&self.first_layer().forward(x)?)
    }
}
