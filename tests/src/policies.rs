//! The trained policies the end-to-end tests drive.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::processes::release_binary;
use crate::workspace_root;

/// The committed run of the fixture teacher (SDAC on InvertedPendulum-v5, seed 0) with its
/// distilled students; its `run.toml` and `config.toml` are its provenance.
pub fn fixture_run_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0")
}

/// The K=1 student of the fixture teacher, exported by the project's own `sdac export` into
/// `out_dir/student-k1.safetensors`.
pub fn student_k1_artifact(out_dir: &Path) -> Result<PathBuf, String> {
    let out = out_dir.join("student-k1.safetensors");
    let output = Command::new(release_binary("sdac")?)
        .arg("export")
        .arg("--run")
        .arg(fixture_run_dir())
        .args(["--student", "1", "--format", "safetensors", "--out"])
        .arg(&out)
        .output()
        .map_err(|e| format!("running sdac export: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "sdac export failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}
