//! The ONNX writer: a policy's whole sampler as one graph, built from `candle_onnx::onnx`'s
//! protobuf types and encoded with `prost`.
//!
//! Inputs `obs` float32 `[batch, obs_dim]` (raw) and `noise` float32 `[batch, n_noise, act_dim]`
//! (standard normal), output `action` float32 `[batch, act_dim]` in environment units; `batch`
//! is symbolic. IR version 8, opset 18; the metadata JSON sits in `metadata_props` under
//! `sdac_policy`. Every sampler step is unrolled; what a step shares with the others is
//! computed once (the observations' part of the first layer), and what depends only on the
//! step index is folded into constants (each step's time features times the first layer's time
//! columns, plus its bias; the schedule's coefficients).
//!
//! Mish is written with `Exp` and arithmetic only: `tanh(ln(1 + n)) = n (n + 2) / (n (n + 2) + 2)`
//! with `n = e^x`, the exponent clipped to `[-87, 20]` (beyond 20 the fraction is 1 in f32, and
//! the clip keeps `n (n + 2)` finite; below -87 `e^x` leaves f32's normal range). That is the
//! runtime's own formula (`sdac_runtime::mish`). candle-onnx 0.11 has neither `Mish` nor
//! `Softplus`, and tract's `Tanh` is a rational fit whose error a sensitive student amplifies
//! past the parity tolerance (3e-5 on the fixture's K = 2 student with `Tanh(Log(Exp(x) + 1))`);
//! every engine's `Exp` is within a few ulp.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use candle_onnx::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use prost::Message as _;
use sdac_runtime::format::{CRITIC_PREFIX, METADATA_KEY, NETWORK_PREFIX, SamplerKind};

use crate::policy::{CandlePolicy, action_half_range};

/// The ONNX IR version written.
pub const ONNX_IR_VERSION: i64 = 8;
/// The default-domain opset the graph uses.
pub const ONNX_OPSET: i64 = 18;
/// Mish's exponent is clipped to `[MISH_EXP_FLOOR, MISH_LINEAR_FROM]` (as in the runtime).
const MISH_EXP_FLOOR: f64 = -87.0;
const MISH_LINEAR_FROM: f64 = 20.0;

/// Why a graph could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("policy tensor {0} is missing")]
    MissingTensor(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("metadata to JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The encoded ONNX model of `policy`'s sampler.
pub fn onnx_bytes(policy: &CandlePolicy) -> Result<Vec<u8>, OnnxError> {
    Ok(onnx_model(policy)?.encode_to_vec())
}

/// The ONNX model of `policy`'s sampler (see the module documentation).
pub fn onnx_model(policy: &CandlePolicy) -> Result<ModelProto, OnnxError> {
    let m = policy.metadata();
    let mut g = GraphBuilder::new(policy);
    let mean = g.constant_f64("obs_mean", &[m.obs_dim], &m.obs_normalization.mean);
    let std = g.constant_f64("obs_std", &[m.obs_dim], &m.obs_normalization.std);
    let centered = g.node("Sub", &["obs", &mean], vec![]);
    let obs = g.node("Div", &[&centered, &std], vec![]);
    let action = match m.sampler.kind {
        SamplerKind::DdimSample => g.ddim_sample(&obs)?,
        SamplerKind::DdpmBestOfN => g.ddpm_best_of_n(&obs)?,
    };
    let half_range = action_half_range(m);
    let clipped = g.clip(&action);
    let shifted = g.add_scalar(&clipped, 1.0);
    let half_range = g.constant_f64("action_half_range", &[m.act_dim], &half_range);
    let low = g.constant_f64("action_low", &[m.act_dim], &m.action_low);
    let scaled = g.node("Mul", &[&shifted, &half_range], vec![]);
    g.node_named("Add", &[&scaled, &low], "action", vec![]);

    let graph = GraphProto {
        node: g.nodes,
        name: format!("sdac_{}", sampler_name(m.sampler.kind)),
        initializer: g.initializers,
        input: vec![
            tensor_info("obs", &[None, Some(m.obs_dim)]),
            tensor_info("noise", &[None, Some(m.n_noise), Some(m.act_dim)]),
        ],
        output: vec![tensor_info("action", &[None, Some(m.act_dim)])],
        ..GraphProto::default()
    };
    Ok(ModelProto {
        ir_version: ONNX_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: ONNX_OPSET,
        }],
        producer_name: "sdac".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: METADATA_KEY.into(),
            value: serde_json::to_string(m)?,
        }],
        ..ModelProto::default()
    })
}

fn sampler_name(kind: SamplerKind) -> &'static str {
    match kind {
        SamplerKind::DdimSample => "ddim_sample",
        SamplerKind::DdpmBestOfN => "ddpm_best_of_n",
    }
}

/// A float32 tensor value with `dims` (`None`: the symbolic `batch`).
fn tensor_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(size) => tensor_shape_proto::dimension::Value::DimValue(*size as i64),
                None => tensor_shape_proto::dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One layer of an MLP, as graph constants: `x W^T + b` is `MatMul(x, weight_t) + bias`.
#[derive(Clone)]
struct Layer {
    weight_t: String,
    bias: String,
}

/// Nodes and constants of the graph being written, with unique names.
struct GraphBuilder<'a> {
    policy: &'a CandlePolicy,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Layers already written as constants, by tensor prefix and column range.
    layers: HashMap<(String, Option<(usize, usize)>), Layer>,
    /// Scalar constants already written, by their f32 bits.
    scalars: HashMap<u32, String>,
    next_id: usize,
}

impl<'a> GraphBuilder<'a> {
    fn new(policy: &'a CandlePolicy) -> Self {
        Self {
            policy,
            nodes: Vec::new(),
            initializers: Vec::new(),
            layers: HashMap::new(),
            scalars: HashMap::new(),
            next_id: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{hint}_{}", self.next_id)
    }

    fn push_initializer(
        &mut self,
        hint: &str,
        dims: &[usize],
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            name: name.clone(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn constant_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(hint, dims, DataType::Float, raw)
    }

    fn constant_f64(&mut self, hint: &str, dims: &[usize], values: &[f64]) -> String {
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        self.constant_f32(hint, dims, &values)
    }

    fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(hint, &[values.len()], DataType::Int64, raw)
    }

    fn constant_tensor(&mut self, hint: &str, tensor: &Tensor) -> Result<String, OnnxError> {
        let values: Vec<f32> = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        Ok(self.constant_f32(hint, tensor.dims(), &values))
    }

    fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
    }

    /// One node with a fresh output name, which it returns.
    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node_named(op, inputs, &output, attribute);
        output
    }

    /// A scalar f32 constant (one initializer per distinct value).
    fn scalar(&mut self, value: f64) -> String {
        let value = value as f32;
        if let Some(name) = self.scalars.get(&value.to_bits()) {
            return name.clone();
        }
        let name = self.constant_f32("scalar", &[], &[value]);
        self.scalars.insert(value.to_bits(), name.clone());
        name
    }

    fn mul_scalar(&mut self, x: &str, factor: f64) -> String {
        let c = self.scalar(factor);
        self.node("Mul", &[x, &c], vec![])
    }

    fn add_scalar(&mut self, x: &str, offset: f64) -> String {
        let c = self.scalar(offset);
        self.node("Add", &[x, &c], vec![])
    }

    fn clip(&mut self, x: &str) -> String {
        let (lo, hi) = (self.scalar(-1.0), self.scalar(1.0));
        self.node("Clip", &[x, &lo, &hi], vec![])
    }

    fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let shape = self.constant_i64("shape", shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    /// `x * tanh(ln(1 + e^x))` as `x * p / (p + 2)`, `p = n (n + 2)`, `n = e^clip(x, -87, 20)`
    /// (see the module documentation).
    fn mish(&mut self, x: &str) -> String {
        let (lo, hi) = (self.scalar(MISH_EXP_FLOOR), self.scalar(MISH_LINEAR_FROM));
        let clamped = self.node("Clip", &[x, &lo, &hi], vec![]);
        let n = self.node("Exp", &[&clamped], vec![]);
        let n_plus_2 = self.add_scalar(&n, 2.0);
        let p = self.node("Mul", &[&n, &n_plus_2], vec![]);
        let p_plus_2 = self.add_scalar(&p, 2.0);
        let tanh_softplus = self.node("Div", &[&p, &p_plus_2], vec![]);
        self.node("Mul", &[x, &tanh_softplus], vec![])
    }

    fn tensor(&self, name: &str) -> Result<&'a Tensor, OnnxError> {
        self.policy
            .tensors()
            .get(name)
            .ok_or_else(|| OnnxError::MissingTensor(name.to_owned()))
    }

    /// The layer `{prefix}` (`.weight` `[out, in]`, `.bias` `[out]`) as constants (written
    /// once, however often the graph applies it); with `columns`, only those input columns of
    /// the weight.
    fn layer(&mut self, prefix: &str, columns: Option<(usize, usize)>) -> Result<Layer, OnnxError> {
        let key = (prefix.to_owned(), columns);
        if let Some(layer) = self.layers.get(&key) {
            return Ok(layer.clone());
        }
        let mut weight = self.tensor(&format!("{prefix}.weight"))?.clone();
        if let Some((start, len)) = columns {
            weight = weight.narrow(1, start, len)?;
        }
        let weight_t = weight.t()?.contiguous()?;
        let bias = self.tensor(&format!("{prefix}.bias"))?;
        let layer = Layer {
            weight_t: self.constant_tensor("weight_t", &weight_t)?,
            bias: self.constant_tensor("bias", bias)?,
        };
        self.layers.insert(key, layer.clone());
        Ok(layer)
    }

    fn apply(&mut self, layer: &Layer, x: &str) -> String {
        let product = self.node("MatMul", &[x, &layer.weight_t], vec![]);
        self.node("Add", &[&product, &layer.bias], vec![])
    }

    /// The layers of MLP `{prefix}` after the first: hidden ones (Mish) and the output.
    fn mlp_rest(&mut self, prefix: &str, first_activation: &str) -> Result<String, OnnxError> {
        let hidden = self.policy.metadata().network.hidden.len();
        let mut h = first_activation.to_owned();
        for i in 1..hidden {
            let layer = self.layer(&format!("{prefix}.hidden.{i}"), None)?;
            let pre = self.apply(&layer, &h);
            h = self.mish(&pre);
        }
        let output = self.layer(&format!("{prefix}.output"), None)?;
        Ok(self.apply(&output, &h))
    }

    /// What the sampler network's steps share: `obs W_obs^T` (`[rows, width_0]`), the first
    /// layer's action columns, and for each visited step `t` the constant
    /// `time_features(t) W_time^T + b_0` (`[width_0]`).
    fn network_chain(&mut self, obs: &str) -> Result<NetworkChain, OnnxError> {
        let m = self.policy.metadata();
        let (od, ad) = (m.obs_dim, m.act_dim);
        let first = format!("{NETWORK_PREFIX}.mlp.hidden.0");
        let obs_layer = self.layer(&first, Some((0, od)))?;
        let obs_part = self.node("MatMul", &[obs, &obs_layer.weight_t], vec![]);
        let action_weight_t = self.layer(&first, Some((od, ad)))?.weight_t;
        let time_weight = self.tensor(&format!("{first}.weight"))?.narrow(
            1,
            od + ad,
            m.network.time_embedding_dim,
        )?;
        let bias = self.tensor(&format!("{first}.bias"))?.unsqueeze(0)?;
        let steps: Vec<f32> = m.sampler.timesteps.iter().map(|&t| t as f32).collect();
        let steps = Tensor::from_vec(steps, m.sampler.timesteps.len(), time_weight.device())?;
        let time_rows = self
            .policy
            .net()
            .time_features(&steps)?
            .matmul(&time_weight.t()?)?
            .broadcast_add(&bias)?;
        let time_constants = (0..m.sampler.timesteps.len())
            .map(|k| self.constant_tensor("step_constant", &time_rows.get(k)?))
            .collect::<Result<_, _>>()?;
        Ok(NetworkChain {
            obs_part,
            action_weight_t,
            time_constants,
        })
    }

    /// The sampler network at the `k`-th visited step for samples `x` (`[rows, act_dim]`).
    fn network_step(
        &mut self,
        chain: &NetworkChain,
        x: &str,
        k: usize,
    ) -> Result<String, OnnxError> {
        let action_part = self.node("MatMul", &[x, &chain.action_weight_t], vec![]);
        let sum = self.node("Add", &[&chain.obs_part, &action_part], vec![]);
        let pre = self.node("Add", &[&sum, &chain.time_constants[k]], vec![]);
        let h = self.mish(&pre);
        self.mlp_rest(&format!("{NETWORK_PREFIX}.mlp"), &h)
    }

    /// The student's DDIM chain on normalised observations; returns `x` before the final clip.
    fn ddim_sample(&mut self, obs: &str) -> Result<String, OnnxError> {
        let m = self.policy.metadata();
        let s = &m.sampler;
        let schedule = self.policy.schedule();
        let noise = self.reshape("noise", &[-1, m.act_dim as i64]);
        let mut x = self.mul_scalar(&noise, s.init_noise_std);
        let chain = self.network_chain(obs)?;
        let last = s.timesteps.len() - 1;
        for (k, &t) in s.timesteps.iter().enumerate() {
            let prediction = self.network_step(&chain, &x, k)?;
            let x0 = self.clip(&prediction);
            if k == last {
                return Ok(x0);
            }
            // x' = sqrt(abar') x0 + sqrt(1 - abar') (x - sqrt(abar) x0) / sqrt(1 - abar)
            let (abar, abar_next) = (
                schedule.alpha_bars[t],
                schedule.alpha_bars[s.timesteps[k + 1]],
            );
            let scaled_x0 = self.mul_scalar(&x0, abar.sqrt());
            let residual = self.node("Sub", &[&x, &scaled_x0], vec![]);
            let eps = self.mul_scalar(&residual, 1.0 / (1.0 - abar).sqrt());
            let signal = self.mul_scalar(&x0, abar_next.sqrt());
            let noise_part = self.mul_scalar(&eps, (1.0 - abar_next).sqrt());
            x = self.node("Add", &[&signal, &noise_part], vec![]);
        }
        Ok(x)
    }

    /// The teacher's best-of-N DDPM chains on normalised observations; returns the chosen
    /// sample before its clip, `[batch, act_dim]`.
    fn ddpm_best_of_n(&mut self, obs: &str) -> Result<String, OnnxError> {
        let m = self.policy.metadata();
        let s = &m.sampler;
        let (n, od, ad, steps) = (
            s.candidates as i64,
            m.obs_dim as i64,
            m.act_dim as i64,
            s.timesteps.len(),
        );
        let schedule = self.policy.schedule();
        // Rows b * N + c: each observation repeated for its N candidates.
        let obs_3d = self.reshape(obs, &[-1, 1, od]);
        let expand_shape = self.constant_i64("expand", &[1, n, 1]);
        let obs_expanded = self.node("Expand", &[&obs_3d, &expand_shape], vec![]);
        let obs_rows = self.reshape(&obs_expanded, &[-1, od]);
        // Noise block k (N vectors per observation) as rows b * N + c.
        let blocks = self.reshape("noise", &[-1, steps as i64, n, ad]);
        let block = |g: &mut Self, k: usize| {
            let starts = g.constant_i64("starts", &[k as i64]);
            let ends = g.constant_i64("ends", &[k as i64 + 1]);
            let axes = g.constant_i64("axes", &[1]);
            let slice = g.node("Slice", &[&blocks, &starts, &ends, &axes], vec![]);
            g.reshape(&slice, &[-1, ad])
        };
        let start = block(self, 0);
        let mut x = self.mul_scalar(&start, s.init_noise_std);
        let chain = self.network_chain(&obs_rows)?;
        for (k, &t) in s.timesteps.iter().enumerate() {
            let eps = self.network_step(&chain, &x, k)?;
            let abar = schedule.alpha_bars[t];
            let x_part = self.mul_scalar(&x, (1.0 / abar).sqrt());
            let eps_part = self.mul_scalar(&eps, (1.0 / abar - 1.0).sqrt());
            let x0 = self.node("Sub", &[&x_part, &eps_part], vec![]);
            let x0 = self.clip(&x0);
            let mean_x0 = self.mul_scalar(&x0, schedule.posterior_coef_x0[t]);
            let mean_x = self.mul_scalar(&x, schedule.posterior_coef_xt[t]);
            x = self.node("Add", &[&mean_x0, &mean_x], vec![]);
            if t > 0 {
                let z = block(self, k + 1);
                let sigma = schedule.posterior_variance[t].max(1e-20).sqrt();
                let scaled = self.mul_scalar(&z, sigma);
                x = self.node("Add", &[&x, &scaled], vec![]);
            }
        }
        // Scores min(Q1, Q2) of the unclipped samples; the first best per observation.
        let critic_input = self.node("Concat", &[&obs_rows, &x], vec![int_attribute("axis", 1)]);
        let mut q = Vec::new();
        for name in ["q1", "q2"] {
            let prefix = format!("{CRITIC_PREFIX}.{name}");
            let first = self.layer(&format!("{prefix}.hidden.0"), None)?;
            let pre = self.apply(&first, &critic_input);
            let h = self.mish(&pre);
            q.push(self.mlp_rest(&prefix, &h)?);
        }
        let min_q = self.node("Min", &[&q[0], &q[1]], vec![]);
        let scores = self.reshape(&min_q, &[-1, n]);
        let best = self.node(
            "ArgMax",
            &[&scores],
            vec![int_attribute("axis", 1), int_attribute("keepdims", 1)],
        );
        let best = self.reshape(&best, &[-1, 1, 1]);
        let index_shape = self.constant_i64("expand", &[1, 1, ad]);
        let index = self.node("Expand", &[&best, &index_shape], vec![]);
        let samples = self.reshape(&x, &[-1, n, ad]);
        let chosen = self.node(
            "GatherElements",
            &[&samples, &index],
            vec![int_attribute("axis", 1)],
        );
        Ok(self.reshape(&chosen, &[-1, ad]))
    }
}

/// See [`GraphBuilder::network_chain`].
struct NetworkChain {
    obs_part: String,
    action_weight_t: String,
    time_constants: Vec<String>,
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}
