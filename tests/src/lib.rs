//! Shared pieces of the end-to-end tests: where the fixtures are and how results are compared.

use std::path::{Path, PathBuf};

use sdac_sim::replay::TraceRow;

pub mod policies;
pub mod processes;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// One recorded Gymnasium episode: `init.csv`, `actions.csv` and the expected `trace.csv`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct GymCase {
    pub env: String,
    pub case: String,
    pub steps: usize,
    pub ended: String,
}

impl GymCase {
    pub fn dir(&self) -> PathBuf {
        gym_fixture_dir().join(&self.env).join(&self.case)
    }
}

pub fn gym_fixture_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/gym_v5")
}

/// The cases listed in `tests/fixtures/gym_v5/manifest.json`.
pub fn gym_cases() -> Result<Vec<GymCase>, String> {
    let path = gym_fixture_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Values agree when they differ by at most `tol` absolutely or relatively, whichever bound is
/// larger: `|a - b| <= tol * max(1, |b|)`.
pub fn close(actual: f64, expected: f64, tol: f64) -> bool {
    (actual - expected).abs() <= tol * expected.abs().max(1.0)
}

/// The first difference between two traces, or `None` when they agree: same length, same flags,
/// rewards and observations [`close`] within `tol`.
pub fn trace_mismatch(actual: &[TraceRow], expected: &[TraceRow], tol: f64) -> Option<String> {
    if actual.len() != expected.len() {
        return Some(format!(
            "{} steps replayed, Gymnasium took {}",
            actual.len(),
            expected.len()
        ));
    }
    for (a, e) in actual.iter().zip(expected) {
        let step = e.step;
        if a.step != e.step {
            return Some(format!(
                "step number {} where Gymnasium has {}",
                a.step, e.step
            ));
        }
        if (a.terminated, a.truncated) != (e.terminated, e.truncated) {
            return Some(format!(
                "step {step}: terminated/truncated {}/{} where Gymnasium has {}/{}",
                a.terminated, a.truncated, e.terminated, e.truncated
            ));
        }
        if !close(a.reward, e.reward, tol) {
            return Some(format!(
                "step {step}: reward {} where Gymnasium has {}",
                a.reward, e.reward
            ));
        }
        if a.obs.len() != e.obs.len() {
            return Some(format!(
                "step {step}: {} observations where Gymnasium has {}",
                a.obs.len(),
                e.obs.len()
            ));
        }
        if let Some(i) = (0..e.obs.len()).find(|&i| !close(a.obs[i], e.obs[i], tol)) {
            return Some(format!(
                "step {step}: obs_{i} {} where Gymnasium has {}",
                a.obs[i], e.obs[i]
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closeness_is_absolute_near_zero_and_relative_far_from_it() {
        assert!(close(1e-6, 0.0, 1e-5));
        assert!(!close(2e-5, 0.0, 1e-5));
        assert!(close(1000.005, 1000.0, 1e-5));
        assert!(!close(1000.02, 1000.0, 1e-5));
        assert!(!close(f64::NAN, 0.0, 1e-5));
    }

    #[test]
    fn a_changed_flag_or_value_is_reported() {
        let row = |reward: f64, terminated: bool| TraceRow {
            step: 1,
            reward,
            terminated,
            truncated: false,
            obs: vec![0.5],
        };
        assert_eq!(
            trace_mismatch(&[row(1.0, false)], &[row(1.0, false)], 1e-5),
            None
        );
        assert!(trace_mismatch(&[row(1.0, true)], &[row(1.0, false)], 1e-5).is_some());
        assert!(trace_mismatch(&[row(1.1, false)], &[row(1.0, false)], 1e-5).is_some());
        assert!(trace_mismatch(&[], &[row(1.0, false)], 1e-5).is_some());
    }
}
