//! Why a policy did not load ([`LoadError`]) or did not act ([`ActError`]).

use std::path::PathBuf;

use crate::format::{METADATA_KEY, MetadataError};

/// Why [`crate::Policy::load`] refused a file. Every message names the problem: the tensor or
/// metadata field, and what was expected against what was found.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a safetensors file (truncated or corrupt header): {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("the file's __metadata__ has no `{METADATA_KEY}` entry: not a policy artifact")]
    MissingMetadata,
    #[error("the `{METADATA_KEY}` metadata is not valid format-v1 JSON: {0}")]
    MetadataJson(#[from] serde_json::Error),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("tensor `{name}` is missing (expected f32 of shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    #[error("tensor `{name}` is not part of this policy (shape {found:?})")]
    UnexpectedTensor { name: String, found: Vec<usize> },
    #[error("tensor `{name}` has dtype {found}, expected F32")]
    WrongDtype { name: String, found: String },
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor `{name}` holds the non-finite value {value} at flat index {index}")]
    NonFiniteWeight {
        name: String,
        index: usize,
        value: f32,
    },
    #[error("the folded constants of visited step {step} are not finite (weights too large)")]
    NonFiniteStepConstant { step: usize },
}

/// Why [`crate::Policy::act`] refused a call; the action buffer is left untouched.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ActError {
    #[error("{what} has {found} values, expected {expected}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what} value {index} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: f32,
    },
    #[error("the sampler produced a non-finite {what} (input too large for the network?)")]
    NonFiniteResult { what: &'static str },
}
