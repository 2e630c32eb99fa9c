//! Reading an artifact's bytes: the safetensors container, the metadata JSON and every tensor,
//! each checked once (see [`LoadError`] for what is refused).

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

use crate::error::LoadError;
use crate::format::{FORMAT_VERSION, METADATA_KEY, Metadata, MetadataError};

/// A validated artifact: its metadata and every expected tensor as f32 values (row major).
pub(crate) struct Artifact {
    pub(crate) metadata: Metadata,
    pub(crate) tensors: HashMap<String, Vec<f32>>,
}

impl Artifact {
    /// The values of tensor `name`; the caller only asks for tensors in
    /// [`Metadata::expected_tensors`], which [`parse`] has checked are all present.
    pub(crate) fn tensor(&self, name: &str) -> &[f32] {
        self.tensors.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Parses and validates `bytes` as a policy artifact.
pub(crate) fn parse(bytes: &[u8]) -> Result<Artifact, LoadError> {
    let file = SafeTensors::deserialize(bytes)?;
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get(METADATA_KEY))
        .ok_or(LoadError::MissingMetadata)?;
    let metadata = parse_metadata(json)?;
    metadata.validate()?;

    let expected = metadata.expected_tensors();
    let mut tensors = HashMap::with_capacity(expected.len());
    for spec in &expected {
        let view = file
            .tensor(&spec.name)
            .map_err(|_| LoadError::MissingTensor {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
            })?;
        if view.dtype() != Dtype::F32 {
            return Err(LoadError::WrongDtype {
                name: spec.name.clone(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != spec.shape.as_slice() {
            return Err(LoadError::WrongShape {
                name: spec.name.clone(),
                expected: spec.shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(LoadError::NonFiniteWeight {
                name: spec.name.clone(),
                index,
                value: values[index],
            });
        }
        tensors.insert(spec.name.clone(), values);
    }
    if let Some((name, view)) = file
        .iter()
        .filter(|(name, _)| !tensors.contains_key(*name))
        .min_by_key(|(name, _)| *name)
    {
        return Err(LoadError::UnexpectedTensor {
            name: name.to_owned(),
            found: view.shape().to_vec(),
        });
    }
    Ok(Artifact { metadata, tensors })
}

/// The metadata JSON, refusing a newer format version before looking at the other fields (a
/// newer writer may have added some).
fn parse_metadata(json: &str) -> Result<Metadata, LoadError> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        format_version: u32,
    }
    if let Ok(VersionOnly { format_version }) = serde_json::from_str::<VersionOnly>(json)
        && format_version > FORMAT_VERSION
    {
        return Err(MetadataError::NewerFormat {
            found: format_version,
            supported: FORMAT_VERSION,
        }
        .into());
    }
    Ok(serde_json::from_str(json)?)
}
