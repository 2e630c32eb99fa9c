//! `sdac act` as a user runs it: the runtime's actions for CSV observations and noise, the same
//! through the ONNX graph (tract), and a clear error naming the row for each kind of bad CSV.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sdac_runtime::{NoiseRng, Policy};
use sdac_tests::policies::fixture_run_dir;

const ROWS: usize = 16;

fn sdac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(args)
        .output()
        .expect("the sdac binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn student_k1() -> PathBuf {
    fixture_run_dir().join("student-k1.safetensors")
}

fn csv(prefix: &str, rows: &[Vec<f32>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let mut text: Vec<String> = vec![
        (0..columns)
            .map(|i| format!("{prefix}_{i}"))
            .collect::<Vec<_>>()
            .join(","),
    ];
    for row in rows {
        text.push(
            row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    text.join("\n") + "\n"
}

/// `ROWS` observations near the origin and their noise for `policy`.
fn inputs(policy: &Policy) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = NoiseRng::new(7);
    let mut draw = |len: usize, scale: f32| {
        let mut v = vec![0.0; len];
        rng.fill_standard_normal(&mut v);
        v.iter_mut().for_each(|x| *x *= scale);
        v
    };
    let obs = (0..ROWS).map(|_| draw(policy.obs_dim(), 0.1)).collect();
    let noise = (0..ROWS).map(|_| draw(policy.noise_len(), 1.0)).collect();
    (obs, noise)
}

fn act(dir: &Path, policy: &Path, obs: &str, noise: &str) -> (Output, PathBuf) {
    let (obs_csv, noise_csv, out) = (
        dir.join("obs.csv"),
        dir.join("noise.csv"),
        dir.join("actions.csv"),
    );
    std::fs::write(&obs_csv, obs).unwrap();
    std::fs::write(&noise_csv, noise).unwrap();
    let output = sdac(&[
        "act",
        "--policy",
        path(policy),
        "--obs",
        path(&obs_csv),
        "--noise",
        path(&noise_csv),
        "--out",
        path(&out),
    ]);
    (output, out)
}

fn read_actions(path: &Path) -> Vec<f32> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("a_0"));
    lines
        .flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap()))
        .collect()
}

#[test]
fn act_writes_the_runtimes_actions() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = Policy::load(student_k1()).unwrap();
    let (obs, noise) = inputs(&policy);
    let (output, out) = act(
        dir.path(),
        &student_k1(),
        &csv("obs", &obs),
        &csv("noise", &noise),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = read_actions(&out);
    let mut expected = vec![0.0f32; ROWS];
    for (row, (o, z)) in obs.iter().zip(&noise).enumerate() {
        policy.act(o, z, &mut expected[row..row + 1]).unwrap();
    }
    assert_eq!(written, expected, "the CSV round trip is exact");
}

#[test]
fn act_on_the_onnx_graph_matches_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("student-k1.onnx");
    let run = fixture_run_dir();
    let output = sdac(&[
        "export",
        "--run",
        path(&run),
        "--student",
        "1",
        "--format",
        "onnx",
        "--out",
        path(&graph),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut policy = Policy::load(student_k1()).unwrap();
    let (obs, noise) = inputs(&policy);
    let (output, out) = act(dir.path(), &graph, &csv("obs", &obs), &csv("noise", &noise));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = read_actions(&out);
    let mut expected = [0.0f32];
    for (row, (o, z)) in obs.iter().zip(&noise).enumerate() {
        policy.act(o, z, &mut expected).unwrap();
        let difference = (written[row] - expected[0]).abs() / expected[0].abs().max(1.0);
        assert!(
            difference <= 1e-5,
            "row {row}: tract {} vs runtime {}",
            written[row],
            expected[0]
        );
    }
}

#[test]
fn bad_csv_is_refused_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::load(student_k1()).unwrap();
    let (obs, noise) = inputs(&policy);
    let good_obs = csv("obs", &obs);
    let good_noise = csv("noise", &noise);
    let replace_line = |text: &str, line: usize, with: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[line] = with;
        lines.join("\n") + "\n"
    };
    let cases = [
        (
            "too few columns in a row",
            replace_line(&good_obs, 3, "0.1,0.2,0.3"),
            good_noise.clone(),
            "obs.csv:4: row has 3 values, the header has 4",
        ),
        (
            "not a number",
            replace_line(&good_obs, 2, "0.1,abc,0.3,0.4"),
            good_noise.clone(),
            "obs.csv:3: column obs_1: `abc` is not a number",
        ),
        (
            "NaN",
            good_obs.clone(),
            replace_line(&good_noise, 5, "NaN"),
            "row 5 (line 6): noise_0 is NaN",
        ),
        (
            "infinite",
            replace_line(&good_obs, 1, "0.1,inf,0.3,0.4"),
            good_noise.clone(),
            "row 1 (line 2): obs_1 is inf",
        ),
        (
            "wrong width",
            csv("obs", &[vec![0.0; 5]]),
            good_noise.clone(),
            "expected 4 columns",
        ),
        (
            "fewer noise rows than observations",
            good_obs.clone(),
            csv("noise", &noise[..3]),
            "one noise row per observation",
        ),
    ];
    for (what, obs_text, noise_text, expected) in cases {
        let (output, _) = act(dir.path(), &student_k1(), &obs_text, &noise_text);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: accepted");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    let (output, _) = act(
        dir.path(),
        &fixture_run_dir().join("config.toml"),
        &good_obs,
        &good_noise,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(".safetensors artifact or an .onnx graph"),
        "{stderr}"
    );
}
