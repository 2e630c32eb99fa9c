//! A multi-layer perceptron with Mish activations, initialised as the reference code's Haiku
//! networks: hidden layers N(0, 1/fan_in) weights, the output layer N(0, 1e-4/fan_in) (nearly
//! zero outputs at the start), zero biases. (Haiku truncates its normals at two standard
//! deviations; these are not truncated.)

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

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

/// Above this, `mish(x) = x` and its derivative is 1 to f32 precision.
const MISH_LINEAR_FROM: f32 = 20.0;
/// Below this, `e^x` underflows f32's normal range.
const EXP_FLOOR: f32 = -87.0;

/// `e^x` for `x` in `[EXP_FLOOR, MISH_LINEAR_FROM]`, within 2 ulp: `x = k ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r` (the Cephes `expf` coefficients) and `2^k`
/// written into the exponent bits. Branch-free so that the loops below vectorise (libm's `expf`
/// is a call per element).
#[inline(always)]
fn exp_in_range(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in f32 arithmetic.
    const ROUNDER: f32 = 12_582_912.0;
    let k = (x * LOG2_E + ROUNDER) - ROUNDER;
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // `k + 127` sits in the low mantissa bits of `k + 127 + ROUNDER`; shifted into the exponent
    // field it is `2^k` (no float-to-int conversion, which would not vectorise).
    let two_to_k = f32::from_bits((k + (ROUNDER + 127.0)).to_bits() << 23);
    e_r * two_to_k
}

/// `tanh(softplus(x))` and `sigmoid(x)` from one exponential: with `n = e^x`,
/// `tanh(ln(1 + n)) = n (n + 2) / (n (n + 2) + 2)` and `sigmoid = n / (1 + n)`. Beyond
/// `MISH_LINEAR_FROM` both are 1 to f32 precision; the clamp keeps `n (n + 2)` finite.
#[inline(always)]
fn mish_parts(x: f32) -> (f32, f32) {
    let n = exp_in_range(x.clamp(EXP_FLOOR, MISH_LINEAR_FROM));
    let p = n * (n + 2.0);
    (p / (p + 2.0), n / (1.0 + n))
}

#[inline(always)]
fn mish_value(x: f32) -> f32 {
    x * mish_parts(x).0
}

/// `d mish / dx = tanh(sp) + x sech^2(sp) sigmoid(x)`, `sp = softplus(x)`.
#[inline(always)]
fn mish_derivative(x: f32) -> f32 {
    let (t, s) = mish_parts(x);
    t + x * (1.0 - t * t) * s
}

/// `f` over a contiguous f32 tensor. Compiled twice: for the baseline x86-64 target and, picked
/// at run time where the CPU has them, with AVX2 and FMA (twice the lanes for the exponential).
fn map_f32(
    storage: &CpuStorage,
    layout: &Layout,
    f: impl Fn(f32) -> f32 + Copy,
) -> Result<(CpuStorage, Shape)> {
    let values = storage.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("mish: expected a contiguous tensor")
    };
    let input = &values[start..end];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        let out = unsafe { map_avx2_fma(input, f) };
        return Ok((CpuStorage::F32(out), layout.shape().clone()));
    }
    Ok((CpuStorage::F32(map_slice(input, f)), layout.shape().clone()))
}

#[inline(always)]
fn map_slice(input: &[f32], f: impl Fn(f32) -> f32) -> Vec<f32> {
    let mut out = vec![0.0; input.len()];
    for (o, &x) in out.iter_mut().zip(input) {
        *o = f(x);
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_avx2_fma(input: &[f32], f: impl Fn(f32) -> f32) -> Vec<f32> {
    map_slice(input, f)
}

struct Mish;

impl CustomOp1 for Mish {
    fn name(&self) -> &'static str {
        "mish"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_f32(storage, layout, mish_value)
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
        map_f32(storage, layout, mish_derivative)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_in_range_is_within_two_ulp_of_exp() {
        let mut x = EXP_FLOOR;
        while x <= MISH_LINEAR_FROM {
            let (approx, exact) = (exp_in_range(x), f64::from(x).exp());
            let relative = (f64::from(approx) - exact).abs() / exact;
            assert!(relative <= 2.5e-7, "x={x}: {approx} vs {exact}");
            x += 0.001;
        }
    }
}
