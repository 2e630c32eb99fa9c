//! Python's `safetensors` package opens a policy artifact unchanged: same tensor names, shapes,
//! dtypes and values, and the `sdac_policy` metadata entry as the same JSON. Uses the project's
//! Python environment `.cache/venv` (made by `tools/setup-python.sh`, which CI runs) and fails,
//! saying so, when it is missing. Weights are synthetic (seeded random, see `common`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Shape, synthetic};
use sdac_runtime::format::{METADATA_KEY, Metadata};

const SCRIPT: &str = r#"
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, "np") as f:
    metadata = f.metadata()
print(json.dumps({
    "metadata": metadata,
    "tensors": {name: {"dtype": str(t.dtype), "shape": list(t.shape),
                       "values": [float(v) for v in t.reshape(-1)]}
                for name, t in tensors.items()},
}))
"#;

#[test]
fn python_safetensors_opens_the_file() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tools/setup-python.sh (it installs safetensors and numpy)",
        python.display()
    );
    for shape in [Shape::teacher(), Shape::student(2)] {
        let artifact = synthetic(&shape, 51);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policy.safetensors");
        std::fs::write(&path, artifact.bytes()).expect("writes");
        let output = Command::new(&python)
            .arg("-c")
            .arg(SCRIPT)
            .arg(&path)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let read: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("python printed JSON");
        let metadata_json = read["metadata"][METADATA_KEY]
            .as_str()
            .expect("the sdac_policy entry is there");
        let metadata: Metadata = serde_json::from_str(metadata_json).expect("same metadata");
        assert_eq!(metadata, artifact.metadata);
        let tensors = read["tensors"].as_object().expect("tensors");
        assert_eq!(tensors.len(), artifact.tensors.len());
        for tensor in &artifact.tensors {
            let seen = &tensors[&tensor.name];
            assert_eq!(seen["dtype"], "float32", "{}", tensor.name);
            assert_eq!(
                seen["shape"],
                serde_json::json!(tensor.shape),
                "{}",
                tensor.name
            );
            let values: Vec<f32> = seen["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(values, tensor.values(), "{}", tensor.name);
        }
    }
}
