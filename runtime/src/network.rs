//! The networks of a loaded policy, packed for the kernels, with everything that does not
//! depend on the call folded in at load:
//!
//! - the sampler network's first layer is split by input columns into an observation part, an
//!   action part and a time part; the time branch (`time_out(mish(time_in(emb(t))))`) times the
//!   time columns plus the first bias is one constant vector per visited step, computed in f64;
//! - each critic's first layer is split into an observation part (carrying the bias) and an
//!   action part.

use crate::error::LoadError;
use crate::format::{CRITIC_PREFIX, NETWORK_PREFIX, TIME_EMBEDDING_DIM};
use crate::kernels::{Dense, Isa, Packing};
use crate::load::Artifact;
use crate::mish::{MishPart, mish_in_place_with_isa};

/// An MLP after its first layer's pre-activation: Mish, then the remaining hidden layers (each
/// followed by Mish) and the linear output layer.
#[derive(Debug, Clone)]
pub(crate) struct MlpTail {
    /// Hidden layers `1..` then the output layer.
    layers: Vec<Dense>,
}

impl MlpTail {
    /// `out[rows, outputs] = tail(pre[rows, width_0])`; `pre` is overwritten, `spare` is scratch.
    /// Both hold at least `rows * widest` values (sized at load).
    pub(crate) fn forward(
        &self,
        isa: Isa,
        rows: usize,
        pre: &mut [f32],
        spare: &mut [f32],
        out: &mut [f32],
    ) {
        let (mut current, mut next) = (pre, spare);
        let Some((output, hidden)) = self.layers.split_last() else {
            return;
        };
        mish_in_place_with_isa(
            prefix_mut(current, rows * output_inputs(hidden, output)),
            MishPart::Value,
            isa,
        );
        for layer in hidden {
            layer.forward(isa, current, next, rows);
            mish_in_place_with_isa(
                prefix_mut(next, rows * layer.outputs()),
                MishPart::Value,
                isa,
            );
            std::mem::swap(&mut current, &mut next);
        }
        output.forward(isa, current, out, rows);
    }

    /// Whether every layer stores its weights in half precision (see `kernels`).
    pub(crate) fn is_half(&self) -> bool {
        self.layers.iter().all(Dense::is_half)
    }

    /// The widest layer output.
    pub(crate) fn widest(&self) -> usize {
        self.layers.iter().map(Dense::outputs).max().unwrap_or(0)
    }
}

/// The first layer's width: the inputs of the first tail layer.
fn output_inputs(hidden: &[Dense], output: &Dense) -> usize {
    hidden.first().unwrap_or(output).inputs()
}

/// The first `n` values of `values` (all of them if there are fewer).
pub(crate) fn prefix_mut(values: &mut [f32], n: usize) -> &mut [f32] {
    let n = n.min(values.len());
    &mut values[..n]
}

/// The sampler network `f(obs_normalized, x, t)` with its time branch folded away.
#[derive(Debug, Clone)]
pub(crate) struct NoiseNet {
    /// First-layer columns of the observation, no bias.
    pub(crate) obs_part: Dense,
    /// First-layer columns of `x`; the bias is the per-step constant.
    pub(crate) x_part: Dense,
    /// For visited step `k`, values `k * width_0 ..`: time columns times the time features of
    /// `timesteps[k]`, plus the first layer's bias.
    pub(crate) step_bias: Vec<f32>,
    pub(crate) tail: MlpTail,
}

/// A critic `q(obs_normalized, action_normalized)`.
#[derive(Debug, Clone)]
pub(crate) struct Critic {
    /// First-layer columns of the observation, with the first layer's bias.
    pub(crate) obs_part: Dense,
    /// First-layer columns of the action, no bias.
    pub(crate) action_part: Dense,
    pub(crate) tail: MlpTail,
}

/// The packed MLP tail and first layer (weight, bias) of the MLP at `prefix`.
fn mlp_layers(
    artifact: &Artifact,
    prefix: &str,
    hidden: &[usize],
    inputs: usize,
    outputs: usize,
    packing: Packing,
) -> Result<(Vec<f32>, Vec<f32>, MlpTail), LoadError> {
    let first_weight = artifact
        .tensor(&format!("{prefix}.hidden.0.weight"))
        .to_vec();
    let first_bias = artifact.tensor(&format!("{prefix}.hidden.0.bias")).to_vec();
    let mut layers = Vec::with_capacity(hidden.len());
    let widths = hidden.iter().copied().chain([outputs]);
    let mut previous = hidden.first().copied().unwrap_or(inputs);
    for (i, width) in widths.enumerate().skip(1) {
        let name = if i < hidden.len() {
            format!("{prefix}.hidden.{i}")
        } else {
            format!("{prefix}.output")
        };
        let weight = artifact.tensor(&format!("{name}.weight"));
        let bias = artifact.tensor(&format!("{name}.bias")).to_vec();
        layers.push(dense(
            Dense::new(previous, width, weight, bias, packing),
            &name,
        )?);
        previous = width;
    }
    Ok((first_weight, first_bias, MlpTail { layers }))
}

/// The columns `columns` of the first layer `name` (row-major `weight` of `inputs` columns and
/// `bias.len()` rows) as a layer with `bias`.
fn first_layer_columns(
    weight: &[f32],
    inputs: usize,
    columns: std::ops::Range<usize>,
    bias: Vec<f32>,
    packing: Packing,
    name: &str,
) -> Result<Dense, LoadError> {
    let width = bias.len();
    let layer = Dense::from_columns(
        inputs,
        width,
        weight,
        columns.start,
        columns.len(),
        bias,
        packing,
    );
    dense(layer, name)
}

/// The layer, or an error naming it (only reachable if a shape check was missed).
fn dense(layer: Option<Dense>, name: &str) -> Result<Dense, LoadError> {
    layer.ok_or_else(|| LoadError::WrongShape {
        name: format!("{name}.weight"),
        expected: Vec::new(),
        found: Vec::new(),
    })
}

impl NoiseNet {
    /// The network of `artifact`, its layers packed for calls of `packing`'s rows.
    pub(crate) fn new(artifact: &Artifact, packing: Packing) -> Result<Self, LoadError> {
        let m = &artifact.metadata;
        let (obs_dim, act_dim) = (m.obs_dim, m.act_dim);
        let inputs = obs_dim + act_dim + TIME_EMBEDDING_DIM;
        let prefix = format!("{NETWORK_PREFIX}.mlp");
        let (weight, bias, tail) = mlp_layers(
            artifact,
            &prefix,
            &m.network.hidden,
            inputs,
            act_dim,
            packing,
        )?;
        let width = bias.len();
        let first = format!("{prefix}.hidden.0");
        let obs_part = first_layer_columns(
            &weight,
            inputs,
            0..obs_dim,
            vec![0.0; width],
            packing,
            &first,
        )?;
        let x_part = first_layer_columns(
            &weight,
            inputs,
            obs_dim..obs_dim + act_dim,
            vec![0.0; width],
            packing,
            &first,
        )?;
        let time_branch = TimeBranch::new(artifact);
        let mut step_bias = Vec::with_capacity(m.sampler.timesteps.len() * width);
        for (step, &t) in m.sampler.timesteps.iter().enumerate() {
            let features = time_branch.features(t as f64);
            for (row, b) in weight.chunks_exact(inputs).zip(&bias) {
                let time_columns = &row[obs_dim + act_dim..];
                let value = f64::from(*b)
                    + time_columns
                        .iter()
                        .zip(&features)
                        .map(|(w, f)| f64::from(*w) * f)
                        .sum::<f64>();
                let value = value as f32;
                if !value.is_finite() {
                    return Err(LoadError::NonFiniteStepConstant { step });
                }
                step_bias.push(value);
            }
        }
        Ok(Self {
            obs_part,
            x_part,
            step_bias,
            tail,
        })
    }

    /// The width of the first layer.
    pub(crate) fn width(&self) -> usize {
        self.x_part.outputs()
    }
}

impl Critic {
    /// The critic `name` of `artifact`, packed as `packing` (it scores all candidates at once).
    pub(crate) fn new(
        artifact: &Artifact,
        name: &str,
        packing: Packing,
    ) -> Result<Self, LoadError> {
        let m = &artifact.metadata;
        let (obs_dim, act_dim) = (m.obs_dim, m.act_dim);
        let inputs = obs_dim + act_dim;
        let prefix = format!("{CRITIC_PREFIX}.{name}");
        let (weight, bias, tail) =
            mlp_layers(artifact, &prefix, &m.network.hidden, inputs, 1, packing)?;
        let width = bias.len();
        let first = format!("{prefix}.hidden.0");
        Ok(Self {
            action_part: first_layer_columns(
                &weight,
                inputs,
                obs_dim..obs_dim + act_dim,
                vec![0.0; width],
                packing,
                &first,
            )?,
            obs_part: first_layer_columns(&weight, inputs, 0..obs_dim, bias, packing, &first)?,
            tail,
        })
    }
}

/// The time branch in f64: `time_out(mish(time_in(emb(t))))`.
struct TimeBranch {
    time_in_weight: Vec<f64>,
    time_in_bias: Vec<f64>,
    time_out_weight: Vec<f64>,
    time_out_bias: Vec<f64>,
}

impl TimeBranch {
    fn new(artifact: &Artifact) -> Self {
        let f64s = |name: &str| -> Vec<f64> {
            artifact
                .tensor(&format!("{NETWORK_PREFIX}.{name}"))
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        };
        Self {
            time_in_weight: f64s("time_in.weight"),
            time_in_bias: f64s("time_in.bias"),
            time_out_weight: f64s("time_out.weight"),
            time_out_bias: f64s("time_out.bias"),
        }
    }

    /// The `TIME_EMBEDDING_DIM` time features of step `t`.
    fn features(&self, t: f64) -> Vec<f64> {
        let embedding = sinusoidal_embedding(t);
        let hidden: Vec<f64> = affine(&self.time_in_weight, &self.time_in_bias, &embedding)
            .into_iter()
            .map(mish_f64)
            .collect();
        affine(&self.time_out_weight, &self.time_out_bias, &hidden)
    }
}

/// `concat(sin(t f_j), cos(t f_j)) / sqrt(16)`, `f_j = 10000^(-j / 8)`.
pub(crate) fn sinusoidal_embedding(t: f64) -> [f64; TIME_EMBEDDING_DIM] {
    let half = TIME_EMBEDDING_DIM / 2;
    let scale = 1.0 / (TIME_EMBEDDING_DIM as f64).sqrt();
    std::array::from_fn(|i| {
        let phase = t * 10000f64.powf(-((i % half) as f64) / half as f64);
        scale * if i < half { phase.sin() } else { phase.cos() }
    })
}

/// `W x + b` with row-major `W` of `b.len()` rows.
fn affine(weight: &[f64], bias: &[f64], x: &[f64]) -> Vec<f64> {
    weight
        .chunks_exact(x.len().max(1))
        .zip(bias)
        .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
        .collect()
}

/// `x tanh(ln(1 + e^x))` in f64.
fn mish_f64(x: f64) -> f64 {
    x * x.exp().ln_1p().tanh()
}
