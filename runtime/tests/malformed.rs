//! Malformed artifacts: each is refused at load with a typed `LoadError` whose message names
//! the problem. The files are written here from synthetic weights (see `common`) and then
//! broken in one way each.

mod common;

use common::{Artifact, Shape, Tensor, synthetic};
use safetensors::Dtype;
use sdac_runtime::format::{FORMAT_VERSION, MetadataError};
use sdac_runtime::{LoadError, Policy};

fn student() -> Artifact {
    synthetic(&Shape::student(2), 31)
}

fn teacher() -> Artifact {
    synthetic(&Shape::teacher(), 32)
}

/// The load error of `bytes`, and that its message contains every one of `needles`.
fn refused(bytes: &[u8], needles: &[&str]) -> LoadError {
    let error = Policy::from_bytes(bytes).expect_err("must be refused");
    let message = error.to_string();
    for needle in needles {
        assert!(
            message.contains(needle),
            "message {message:?} does not name {needle:?}"
        );
    }
    error
}

/// The metadata JSON with `edit` applied to it as a `serde_json::Value`.
fn with_metadata(artifact: &Artifact, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json = serde_json::to_value(&artifact.metadata).expect("serialises");
    edit(&mut json);
    artifact.bytes_with_metadata(Some(json.to_string()))
}

#[test]
fn valid_files_load_from_bytes_and_from_disk() {
    for artifact in [student(), teacher()] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policy.safetensors");
        std::fs::write(&path, artifact.bytes()).expect("writes");
        let policy = Policy::load(&path).expect("loads");
        assert_eq!(policy.metadata(), &artifact.metadata);
        assert_eq!(
            policy.noise_len(),
            artifact.metadata.n_noise * policy.act_dim()
        );
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let error = Policy::load("/nonexistent/policy.safetensors").expect_err("refused");
    assert!(matches!(error, LoadError::Io { .. }));
    assert!(
        error
            .to_string()
            .contains("/nonexistent/policy.safetensors")
    );
}

#[test]
fn truncated_files_are_refused() {
    let bytes = student().bytes();
    for len in [0, 3, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let error = refused(&bytes[..len], &["not a safetensors file"]);
        assert!(matches!(error, LoadError::Safetensors(_)), "{len}: {error}");
    }
}

#[test]
fn a_corrupt_header_is_refused() {
    let mut bytes = student().bytes();
    // The JSON header starts after the 8-byte length: break its first brace.
    bytes[8] = b'#';
    assert!(matches!(
        refused(&bytes, &["not a safetensors file"]),
        LoadError::Safetensors(_)
    ));
    let mut bytes = student().bytes();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(refused(&bytes, &[]), LoadError::Safetensors(_)));
}

#[test]
fn wrong_dtypes_are_refused_naming_the_tensor() {
    let name = "policy.mlp.hidden.1.weight";
    for (dtype, width) in [(Dtype::F64, 8), (Dtype::F16, 2)] {
        let mut artifact = student();
        let tensor = artifact.tensor_mut(name);
        let count = tensor.bytes.len() / 4;
        tensor.dtype = dtype;
        tensor.bytes = vec![0; count * width];
        let error = refused(&artifact.bytes(), &[name, &format!("{dtype:?}"), "F32"]);
        assert!(matches!(error, LoadError::WrongDtype { .. }), "{error}");
    }
}

#[test]
fn a_wrong_shape_is_refused_naming_tensor_and_both_shapes() {
    let mut artifact = student();
    let name = "policy.mlp.output.weight";
    let tensor = artifact.tensor_mut(name);
    let values = tensor.values();
    *tensor = Tensor::f32(name, vec![32, 2], &values);
    let error = refused(&artifact.bytes(), &[name, "[32, 2]", "[2, 32]"]);
    assert!(matches!(error, LoadError::WrongShape { .. }), "{error}");
}

#[test]
fn a_missing_tensor_is_refused_naming_it() {
    let mut artifact = teacher();
    artifact
        .tensors
        .retain(|t| t.name != "critic.q2.output.bias");
    let error = refused(&artifact.bytes(), &["critic.q2.output.bias", "missing"]);
    assert!(matches!(error, LoadError::MissingTensor { .. }), "{error}");
}

#[test]
fn extra_tensors_are_refused_naming_them() {
    let mut artifact = student();
    artifact.tensors.push(Tensor::f32(
        "policy.mlp.hidden.9.weight",
        vec![2, 2],
        &[0.0; 4],
    ));
    let error = refused(&artifact.bytes(), &["policy.mlp.hidden.9.weight"]);
    assert!(
        matches!(error, LoadError::UnexpectedTensor { .. }),
        "{error}"
    );
    // A student carrying a teacher's critic.
    let mut artifact = student();
    let critic = teacher().tensor("critic.q1.output.bias").clone();
    artifact.tensors.push(critic);
    let error = refused(&artifact.bytes(), &["critic.q1.output.bias"]);
    assert!(
        matches!(error, LoadError::UnexpectedTensor { .. }),
        "{error}"
    );
}

#[test]
fn non_finite_weights_are_refused_naming_tensor_and_index() {
    for (value, shown) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut artifact = teacher();
        let name = "critic.q1.hidden.0.weight";
        let tensor = artifact.tensor_mut(name);
        let mut values = tensor.values();
        values[17] = value;
        *tensor = Tensor::f32(name, tensor.shape.clone(), &values);
        let error = refused(&artifact.bytes(), &[name, "index 17", shown]);
        assert!(
            matches!(error, LoadError::NonFiniteWeight { index: 17, .. }),
            "{error}"
        );
    }
}

#[test]
fn absurd_dimensions_are_refused_naming_the_field() {
    let artifact = student();
    let cases: [(&str, serde_json::Value, &str); 6] = [
        ("obs_dim", 1_000_000.into(), "obs_dim"),
        ("act_dim", 0.into(), "act_dim"),
        (
            "network",
            serde_json::json!({"hidden": [100000], "activation": "mish", "time_embedding_dim": 16}),
            "network.hidden",
        ),
        (
            "network",
            serde_json::json!({"hidden": vec![8; 40], "activation": "mish", "time_embedding_dim": 16}),
            "network.hidden",
        ),
        (
            "network",
            serde_json::json!({"hidden": [8192, 8192, 8192], "activation": "mish", "time_embedding_dim": 16}),
            "parameters exceed",
        ),
        ("n_noise", 5.into(), "n_noise"),
    ];
    for (field, value, needle) in cases {
        let bytes = with_metadata(&artifact, |json| json[field] = value);
        let error = refused(&bytes, &[needle]);
        assert!(
            matches!(error, LoadError::Metadata(MetadataError::Invalid { .. })),
            "{error}"
        );
    }
    let mut teacher_json = teacher();
    teacher_json.metadata.sampler.candidates = 1_000_000;
    teacher_json.metadata.n_noise = 5_000_000;
    let error = refused(&teacher_json.bytes(), &["sampler.candidates"]);
    assert!(matches!(error, LoadError::Metadata(_)), "{error}");
}

#[test]
fn inconsistent_sampler_metadata_is_refused_naming_the_field() {
    type Edit = fn(&mut Artifact);
    let cases: [(Edit, &str); 9] = [
        (
            |a| a.metadata.sampler.timesteps = vec![9, 19],
            "sampler.timesteps",
        ),
        (
            |a| a.metadata.sampler.timesteps = vec![25, 9],
            "sampler.timesteps",
        ),
        (|a| a.metadata.sampler.candidates = 3, "sampler.candidates"),
        (|a| a.metadata.sampler.beta_scale = 2.0, "beta at step 10"),
        (|a| a.metadata.sampler.beta_min = -1.0, "beta at step 0"),
        (
            |a| a.metadata.sampler.init_noise_std = -1.0,
            "sampler.init_noise_std",
        ),
        (|a| a.metadata.action_low[1] = 10.0, "action_high"),
        (
            |a| a.metadata.obs_normalization.std[2] = 0.0,
            "obs_normalization.std",
        ),
        (
            |a| a.metadata.obs_normalization.mean.push(0.0),
            "obs_normalization.mean",
        ),
    ];
    for (edit, needle) in cases {
        let mut artifact = student();
        edit(&mut artifact);
        let error = refused(&artifact.bytes(), &[needle]);
        assert!(matches!(error, LoadError::Metadata(_)), "{error}");
    }
    // A teacher must end at step 0 (its noise layout has no row for a later final step).
    let mut artifact = teacher();
    artifact.metadata.sampler.timesteps = vec![4, 3, 2, 1];
    artifact.metadata.n_noise = 16;
    refused(&artifact.bytes(), &["sampler.timesteps", "step 0"]);
}

#[test]
fn a_newer_format_version_is_refused_naming_both_versions() {
    let newer = FORMAT_VERSION + 1;
    // Even with fields this version does not know: the version is read first.
    let bytes = with_metadata(&student(), |json| {
        json["format_version"] = newer.into();
        json["future_field"] = "x".into();
    });
    let error = refused(
        &bytes,
        &[
            &format!("format version {newer}"),
            &format!("version {FORMAT_VERSION}"),
        ],
    );
    assert!(
        matches!(
            error,
            LoadError::Metadata(MetadataError::NewerFormat { .. })
        ),
        "{error}"
    );
}

#[test]
fn missing_metadata_is_refused() {
    let error = refused(&student().bytes_with_metadata(None), &["sdac_policy"]);
    assert!(matches!(error, LoadError::MissingMetadata), "{error}");
}

#[test]
fn bad_metadata_json_is_refused_naming_the_problem() {
    let bytes = with_metadata(&student(), |json| json["colour"] = "blue".into());
    let error = refused(&bytes, &["unknown field", "colour"]);
    assert!(matches!(error, LoadError::MetadataJson(_)), "{error}");
    let bytes = student().bytes_with_metadata(Some("{not json".into()));
    assert!(matches!(
        refused(&bytes, &["JSON"]),
        LoadError::MetadataJson(_)
    ));
    let bytes = with_metadata(&student(), |json| {
        json.as_object_mut().expect("object").remove("sampler");
    });
    assert!(matches!(
        refused(&bytes, &["sampler"]),
        LoadError::MetadataJson(_)
    ));
}
