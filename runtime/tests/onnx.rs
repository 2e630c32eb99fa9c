//! `OnnxPolicy` (feature `onnx`) on small graphs built here with tract's ONNX protobuf types:
//! sizes come from the graph's inputs, the `sdac_policy` metadata is read (and must agree),
//! actions come back from tract, and bad input gets the same `ActError`s as `Policy` with the
//! action buffer untouched. The graph is not a sampler (`action = 2 obs + sum over noise rows`):
//! this checks the wrapper; parity on exported policies is the end-to-end tests' job.
#![cfg(feature = "onnx")]

mod common;

use prost::Message as _;
use sdac_runtime::format::METADATA_KEY;
use sdac_runtime::{ActError, OnnxError, OnnxPolicy};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_proto::DataType,
    tensor_shape_proto::{Dimension, dimension},
    type_proto,
};

const OBS_DIM: usize = 3;
const N_NOISE: usize = 2;

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("batch".into()),
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

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        ..Default::default()
    }
}

/// `action = 2 obs + sum_r noise[:, r, :]` with `act_dim = obs_dim = 3`, and `metadata_json`
/// under `sdac_policy` if given.
fn graph_bytes(metadata_json: Option<String>, obs_name: &str) -> Vec<u8> {
    let two = TensorProto {
        name: "two".into(),
        dims: vec![1],
        data_type: DataType::Float as i32,
        float_data: vec![2.0],
        ..Default::default()
    };
    let axes = TensorProto {
        name: "axes".into(),
        dims: vec![1],
        data_type: DataType::Int64 as i32,
        int64_data: vec![1],
        ..Default::default()
    };
    let mut reduce = node("ReduceSum", &["noise", "axes"], "noise_sum");
    reduce.attribute.push(tract_onnx::pb::AttributeProto {
        name: "keepdims".into(),
        r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    });
    let graph = GraphProto {
        name: "test".into(),
        node: vec![
            node("Mul", &[obs_name, "two"], "scaled"),
            reduce,
            node("Add", &["scaled", "noise_sum"], "action"),
        ],
        initializer: vec![two, axes],
        input: vec![
            value_info(obs_name, &[None, Some(OBS_DIM as i64)]),
            value_info("noise", &[None, Some(N_NOISE as i64), Some(OBS_DIM as i64)]),
        ],
        output: vec![value_info("action", &[None, Some(OBS_DIM as i64)])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        metadata_props: metadata_json
            .map(|value| StringStringEntryProto {
                key: METADATA_KEY.into(),
                value,
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A format-v1 metadata JSON with the graph's sizes (`obs_dim` as given).
fn metadata_json(obs_dim: usize) -> String {
    let mut shape = common::Shape::student(1);
    shape.obs_dim = obs_dim;
    shape.act_dim = OBS_DIM;
    let mut metadata = common::synthetic(&shape, 1).metadata;
    metadata.n_noise = N_NOISE;
    serde_json::to_string(&metadata).expect("serialises")
}

#[test]
fn sizes_metadata_and_actions_come_from_the_graph() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.onnx");
    std::fs::write(&path, graph_bytes(Some(metadata_json(OBS_DIM)), "obs")).expect("writes");
    let mut policy = OnnxPolicy::load(&path).expect("loads");
    assert_eq!(
        (policy.obs_dim(), policy.act_dim(), policy.noise_len()),
        (OBS_DIM, OBS_DIM, N_NOISE * OBS_DIM)
    );
    assert_eq!(policy.metadata().map(|m| m.n_noise), Some(N_NOISE));
    let obs = [0.5, -1.0, 2.0];
    let noise = [1.0, 2.0, 3.0, 0.25, 0.5, 0.75];
    let mut action = [0.0f32; OBS_DIM];
    policy.act(&obs, &noise, &mut action).expect("acts");
    assert_eq!(action, [2.25, 0.5, 7.75]);

    let without_metadata = OnnxPolicy::from_bytes(&graph_bytes(None, "obs")).expect("loads");
    assert!(without_metadata.metadata().is_none());
}

#[test]
fn bad_input_is_refused_and_the_action_left_untouched() {
    let mut policy = OnnxPolicy::from_bytes(&graph_bytes(None, "obs")).expect("loads");
    let noise = [0.0f32; N_NOISE * OBS_DIM];
    let cases: [(&[f32], &[f32], usize); 4] = [
        (&[f32::NAN, 0.0, 0.0], &noise, OBS_DIM),
        (&[0.0, 0.0], &noise, OBS_DIM),
        (&[0.0; OBS_DIM], &noise[1..], OBS_DIM),
        (&[0.0; OBS_DIM], &noise, OBS_DIM + 1),
    ];
    for (obs, noise, out_len) in cases {
        let mut out = vec![7.0f32; out_len];
        let error = policy.act(obs, noise, &mut out).expect_err("refused");
        assert!(matches!(error, OnnxError::Act(_)), "{error}");
        assert!(out.iter().all(|&v| v == 7.0));
    }
    let mut out = [7.0f32; OBS_DIM];
    let error = policy
        .act(&[f32::MAX; OBS_DIM], &noise, &mut out)
        .expect_err("2 * f32::MAX is infinite");
    assert!(
        matches!(error, OnnxError::Act(ActError::NonFiniteResult { .. })),
        "{error}"
    );
    assert_eq!(out, [7.0; OBS_DIM]);
}

#[test]
fn graphs_off_the_contract_are_refused() {
    let error = OnnxPolicy::from_bytes(&graph_bytes(Some(metadata_json(OBS_DIM + 1)), "obs"))
        .expect_err("metadata disagrees");
    assert!(matches!(error, OnnxError::Metadata(_)), "{error}");
    let error = OnnxPolicy::from_bytes(&graph_bytes(None, "state")).expect_err("wrong input name");
    assert!(matches!(error, OnnxError::Contract(_)), "{error}");
    assert!(error.to_string().contains("state"));
    let error = OnnxPolicy::from_bytes(b"not a protobuf").expect_err("garbage");
    assert!(
        matches!(error, OnnxError::Tract(_) | OnnxError::Contract(_)),
        "{error}"
    );
}
