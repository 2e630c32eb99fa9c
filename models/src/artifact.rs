//! Policy artifact files (format v1, `sdac_runtime::format`): a safetensors file whose
//! `__metadata__` holds one entry, `sdac_policy`, the [`Metadata`] as JSON. [`write_policy`]
//! writes a [`CandlePolicy`]; [`read_policy`] reads one back into candle networks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use sdac_runtime::format::{METADATA_KEY, Metadata};

use crate::policy::{CandlePolicy, PolicyError};

/// Why a policy file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error("the file has no `{METADATA_KEY}` entry in its __metadata__ (not a policy artifact)")]
    MissingMetadata,
    #[error("the `{METADATA_KEY}` metadata is not valid JSON for format v1: {0}")]
    MetadataJson(#[from] serde_json::Error),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The artifact's bytes: every tensor of `policy` and its metadata.
pub fn policy_bytes(policy: &CandlePolicy) -> Result<Vec<u8>, ArtifactError> {
    let metadata = HashMap::from([(
        METADATA_KEY.to_owned(),
        serde_json::to_string(policy.metadata())?,
    )]);
    let tensors = policy.tensors().iter().map(|(name, t)| (name.as_str(), t));
    Ok(safetensors::serialize(tensors, Some(metadata))?)
}

/// Writes `policy` to `path` (replacing the file through a temporary one beside it, so a reader
/// never sees half a file).
pub fn write_policy(path: &Path, policy: &CandlePolicy) -> Result<(), ArtifactError> {
    let bytes = policy_bytes(policy)?;
    let io = |source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

/// The [`Metadata`] stored in an artifact's bytes.
pub fn read_metadata(bytes: &[u8]) -> Result<Metadata, ArtifactError> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get(METADATA_KEY))
        .ok_or(ArtifactError::MissingMetadata)?;
    Ok(serde_json::from_str(json)?)
}

/// A policy from an artifact's bytes, its networks on `device`.
pub fn policy_from_bytes(bytes: &[u8], device: &Device) -> Result<CandlePolicy, ArtifactError> {
    let metadata = read_metadata(bytes)?;
    let tensors = candle_core::safetensors::load_buffer(bytes, device)?;
    Ok(CandlePolicy::new(metadata, tensors, device)?)
}

/// Reads the policy artifact at `path`.
pub fn read_policy(path: &Path, device: &Device) -> Result<CandlePolicy, ArtifactError> {
    let bytes = std::fs::read(path).map_err(|source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    })?;
    policy_from_bytes(&bytes, device)
}
