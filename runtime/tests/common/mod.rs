//! Artifacts for the tests, written here with the `safetensors` crate from seeded random
//! weights. Synthetic weights are enough for format and kernel tests: they exercise every
//! tensor, shape and code path; a trained policy adds nothing to what these tests check.
#![allow(dead_code)]

use std::collections::HashMap;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use sdac_runtime::NoiseRng;
use sdac_runtime::format::{
    Activation, FORMAT_VERSION, METADATA_KEY, Metadata, Network, ObsNormalization, Provenance,
    Sampler, SamplerKind, TIME_EMBEDDING_DIM,
};

/// One tensor to write: name, shape, values (f32 unless written raw).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub bytes: Vec<u8>,
}

impl Tensor {
    pub fn f32(name: &str, shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            name: name.to_owned(),
            shape,
            dtype: Dtype::F32,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn values(&self) -> Vec<f32> {
        self.bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// A policy artifact being assembled: its metadata JSON and tensors.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub metadata: Metadata,
    pub tensors: Vec<Tensor>,
}

/// The shapes of a synthetic policy.
#[derive(Debug, Clone)]
pub struct Shape {
    pub kind: SamplerKind,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub hidden: Vec<usize>,
    pub candidates: usize,
    pub schedule_steps: usize,
    pub timesteps: Vec<usize>,
}

impl Shape {
    /// A small best-of-N teacher visiting every step of a 5-step schedule.
    pub fn teacher() -> Self {
        Self {
            kind: SamplerKind::DdpmBestOfN,
            obs_dim: 5,
            act_dim: 3,
            hidden: vec![32, 24],
            candidates: 4,
            schedule_steps: 5,
            timesteps: vec![4, 3, 2, 1, 0],
        }
    }

    /// A K-step student of a 20-step schedule (`t_k = 19 - k * floor(20 / K)`).
    pub fn student(steps: usize) -> Self {
        Self {
            kind: SamplerKind::DdimSample,
            obs_dim: 6,
            act_dim: 2,
            hidden: vec![32, 32, 32],
            candidates: 1,
            schedule_steps: 20,
            timesteps: (0..steps).map(|k| 19 - k * (20 / steps)).collect(),
        }
    }
}

/// A synthetic artifact of `shape` with weights drawn from `seed`: uniform in
/// `±1.5 / sqrt(fan_in)`, biases in `±0.1`, and a non-trivial normalisation and action range.
pub fn synthetic(shape: &Shape, seed: u64) -> Artifact {
    let mut rng = NoiseRng::new(seed);
    let mut uniform = |n: usize, scale: f64| -> Vec<f32> {
        (0..n)
            .map(|_| ((2.0 * rng.uniform() - 1.0) * scale) as f32)
            .collect()
    };
    let n_noise = match shape.kind {
        SamplerKind::DdpmBestOfN => shape.candidates * shape.timesteps.len(),
        SamplerKind::DdimSample => 1,
    };
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        obs_dim: shape.obs_dim,
        act_dim: shape.act_dim,
        action_low: (0..shape.act_dim).map(|i| -1.0 - i as f64).collect(),
        action_high: (0..shape.act_dim).map(|i| 2.0 + 0.5 * i as f64).collect(),
        obs_normalization: ObsNormalization {
            mean: uniform(shape.obs_dim, 1.0)
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
            std: uniform(shape.obs_dim, 1.0)
                .iter()
                .map(|&v| 0.5 + f64::from(v).abs())
                .collect(),
        },
        sampler: Sampler {
            kind: shape.kind,
            schedule_steps: shape.schedule_steps,
            beta_min: 1e-4,
            beta_max: 0.999,
            beta_scale: 0.8,
            timesteps: shape.timesteps.clone(),
            init_noise_std: 1.0,
            candidates: shape.candidates,
        },
        n_noise,
        network: Network {
            hidden: shape.hidden.clone(),
            activation: Activation::Mish,
            time_embedding_dim: TIME_EMBEDDING_DIM,
        },
        provenance: Provenance {
            task: "Synthetic-v0".into(),
            algorithm: match shape.kind {
                SamplerKind::DdpmBestOfN => "sdac".into(),
                SamplerKind::DdimSample => "sdac-distilled".into(),
            },
            seed,
            config_hash: "0000000000000000".into(),
            git_commit: "unknown".into(),
            student_steps: match shape.kind {
                SamplerKind::DdpmBestOfN => None,
                SamplerKind::DdimSample => Some(shape.timesteps.len()),
            },
        },
    };
    let tensors = metadata
        .expected_tensors()
        .into_iter()
        .map(|spec| {
            let scale = if spec.shape.len() == 2 {
                1.5 / (spec.shape[1] as f64).sqrt()
            } else {
                0.1
            };
            let values = uniform(spec.elements(), scale);
            Tensor::f32(&spec.name, spec.shape, &values)
        })
        .collect();
    Artifact { metadata, tensors }
}

impl Artifact {
    /// The file's bytes, with the metadata serialised as JSON.
    pub fn bytes(&self) -> Vec<u8> {
        let json = serde_json::to_string(&self.metadata).expect("metadata serialises");
        self.bytes_with_metadata(Some(json))
    }

    /// The file's bytes with `metadata_json` (or no `__metadata__`) as the policy metadata.
    pub fn bytes_with_metadata(&self, metadata_json: Option<String>) -> Vec<u8> {
        let views: Vec<(String, TensorView)> = self
            .tensors
            .iter()
            .map(|t| {
                let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                    .expect("tensor bytes match the shape");
                (t.name.clone(), view)
            })
            .collect();
        let metadata = metadata_json.map(|json| HashMap::from([(METADATA_KEY.to_owned(), json)]));
        safetensors::serialize(views, metadata).expect("serialises")
    }

    /// Every value rounded to the nearest half-precision value (kept as f32), as
    /// `sdac distill --weights f16` writes a student.
    pub fn with_half_precision_values(mut self) -> Self {
        for tensor in &mut self.tensors {
            let rounded: Vec<f32> = tensor
                .values()
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect();
            *tensor = Tensor::f32(&tensor.name, tensor.shape.clone(), &rounded);
        }
        self
    }

    pub fn tensor_mut(&mut self, name: &str) -> &mut Tensor {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    pub fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
}

/// `n` standard normals from `seed`.
pub fn normals(n: usize, seed: u64) -> Vec<f32> {
    let mut values = vec![0.0; n];
    NoiseRng::new(seed).fill_standard_normal(&mut values);
    values
}
