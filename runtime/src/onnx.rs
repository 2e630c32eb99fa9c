//! [`OnnxPolicy`] (feature `onnx`): a policy exported to ONNX (see `runtime/FORMAT.md`, "ONNX
//! export"), run by tract behind the same `act` call as [`crate::Policy`]. For cross-checks
//! only: tract allocates on every call.

use std::path::{Path, PathBuf};

use tract_onnx::pb::{self, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::*;

use crate::error::ActError;
use crate::format::{METADATA_KEY, Metadata};

/// Why an ONNX policy did not load or act.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the graph does not follow the policy contract: {0}")]
    Contract(String),
    #[error("the `{METADATA_KEY}` metadata_props entry is not valid: {0}")]
    Metadata(String),
    #[error("tract: {0}")]
    Tract(String),
    #[error(transparent)]
    Act(#[from] ActError),
}

fn tract_error(error: TractError) -> OnnxError {
    OnnxError::Tract(format!("{error:#}"))
}

type Plan = std::sync::Arc<TypedRunnableModel>;

/// An ONNX policy graph, optimised by tract for batch 1.
pub struct OnnxPolicy {
    plan: Plan,
    obs_dim: usize,
    act_dim: usize,
    n_noise: usize,
    metadata: Option<Metadata>,
}

impl OnnxPolicy {
    /// Reads the ONNX file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// An ONNX model's bytes: inputs `obs` `[batch, obs_dim]` and `noise`
    /// `[batch, n_noise, act_dim]`, output `action` `[batch, act_dim]`, all float32. The sizes
    /// come from the graph's input shapes; a `sdac_policy` metadata entry, when present, must
    /// agree with them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnnxError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(tract_error)?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| OnnxError::Contract("no graph".into()))?;
        let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(&i.name.as_str()))
            .collect();
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        if names != ["obs", "noise"] {
            return Err(OnnxError::Contract(format!(
                "inputs are {names:?}, expected [\"obs\", \"noise\"]"
            )));
        }
        let obs_shape = fixed_dims(inputs[0])?;
        let noise_shape = fixed_dims(inputs[1])?;
        let (obs_dim, n_noise, act_dim) = match (obs_shape.as_slice(), noise_shape.as_slice()) {
            ([_, Some(obs_dim)], [_, Some(n_noise), Some(act_dim)]) => {
                (*obs_dim, *n_noise, *act_dim)
            }
            _ => {
                return Err(OnnxError::Contract(format!(
                    "input shapes {obs_shape:?} and {noise_shape:?} are not [batch, obs_dim] and \
                     [batch, n_noise, act_dim] with fixed sizes"
                )));
            }
        };
        let metadata = proto
            .metadata_props
            .iter()
            .find(|entry| entry.key == METADATA_KEY)
            .map(|entry| {
                serde_json::from_str::<Metadata>(&entry.value)
                    .map_err(|e| OnnxError::Metadata(e.to_string()))
            })
            .transpose()?;
        if let Some(m) = &metadata
            && (m.obs_dim, m.n_noise, m.act_dim) != (obs_dim, n_noise, act_dim)
        {
            return Err(OnnxError::Metadata(format!(
                "obs_dim {}, n_noise {}, act_dim {} disagree with the graph's inputs ({obs_dim}, \
                 {n_noise}, {act_dim})",
                m.obs_dim, m.n_noise, m.act_dim
            )));
        }
        let plan = onnx
            .model_for_proto_model(&proto)
            .and_then(|model| {
                model
                    .with_input_fact(0, f32::fact([1, obs_dim]).into())?
                    .with_input_fact(1, f32::fact([1, n_noise, act_dim]).into())?
                    .into_optimized()?
                    .into_runnable()
            })
            .map_err(tract_error)?;
        Ok(Self {
            plan,
            obs_dim,
            act_dim,
            n_noise,
            metadata,
        })
    }

    /// The policy metadata stored in the graph, if any.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Noise values one action consumes: `n_noise * act_dim`.
    pub fn noise_len(&self) -> usize {
        self.n_noise * self.act_dim
    }

    /// As [`crate::Policy::act`]: the same checks, and `action_env` untouched on error.
    pub fn act(
        &mut self,
        obs_raw: &[f32],
        noise: &[f32],
        action_env: &mut [f32],
    ) -> Result<(), OnnxError> {
        crate::policy::check_finite("observation", obs_raw, self.obs_dim)?;
        crate::policy::check_finite("noise", noise, self.noise_len())?;
        if action_env.len() != self.act_dim {
            return Err(ActError::WrongLength {
                what: "action output",
                expected: self.act_dim,
                found: action_env.len(),
            }
            .into());
        }
        let obs = Tensor::from_shape(&[1, self.obs_dim], obs_raw).map_err(tract_error)?;
        let noise =
            Tensor::from_shape(&[1, self.n_noise, self.act_dim], noise).map_err(tract_error)?;
        let outputs = self
            .plan
            .run(tvec!(obs.into_tvalue(), noise.into_tvalue()))
            .map_err(tract_error)?;
        let action = outputs
            .first()
            .ok_or_else(|| OnnxError::Contract("no output".into()))?
            .to_plain_array_view::<f32>()
            .map_err(tract_error)?;
        let action = action
            .as_slice()
            .ok_or_else(|| OnnxError::Contract("the output is not contiguous".into()))?;
        if action.len() != self.act_dim {
            return Err(OnnxError::Contract(format!(
                "the output has {} values, expected {}",
                action.len(),
                self.act_dim
            )));
        }
        if action.iter().any(|v| !v.is_finite()) {
            return Err(ActError::NonFiniteResult { what: "action" }.into());
        }
        action_env.copy_from_slice(action);
        Ok(())
    }
}

impl std::fmt::Debug for OnnxPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxPolicy")
            .field("obs_dim", &self.obs_dim)
            .field("act_dim", &self.act_dim)
            .field("n_noise", &self.n_noise)
            .finish_non_exhaustive()
    }
}

/// The dimensions of a float32 tensor input: `Some(size)` where fixed, `None` where symbolic.
fn fixed_dims(input: &pb::ValueInfoProto) -> Result<Vec<Option<usize>>, OnnxError> {
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(tensor)) => tensor,
        _ => {
            return Err(OnnxError::Contract(format!(
                "input `{}` is not a tensor",
                input.name
            )));
        }
    };
    if tensor.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(OnnxError::Contract(format!(
            "input `{}` is not float32",
            input.name
        )));
    }
    let shape = tensor
        .shape
        .as_ref()
        .ok_or_else(|| OnnxError::Contract(format!("input `{}` has no shape", input.name)))?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) => usize::try_from(v).ok().filter(|&v| v > 0),
            _ => None,
        })
        .collect())
}
