//! The five engines agree: for the fixture teacher (20-step best-of-8 DDPM), its K = 1 and
//! K = 2 students and the K = 1 student with its weights rounded to half precision (which the
//! runtime stores as f16, the others compute in f32), on 64 random observations with random noise, the runtime (`Policy`), the
//! candle model (`CandlePolicy`), tract (the runtime's `onnx` feature, `OnnxPolicy`),
//! candle-onnx (`simple_eval`) and Python onnxruntime (`tools/onnx_act.py`) give the same actions
//! within 1e-5 (relative to the action's magnitude where it exceeds 1). Every file comes from
//! the project's own `sdac export`; every exported graph passes `onnx.checker` (full check).
//!
//! Needs the release `sdac` binary (`cargo test --release --workspace` builds it) and the venv
//! with onnx, onnxruntime and numpy (`bash tools/setup-python.sh`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sdac_models::candle::{Device, Tensor};
use sdac_models::candle_onnx;
use sdac_runtime::{NoiseRng, OnnxPolicy, Policy};
use sdac_tests::policies::fixture_run_dir;
use sdac_tests::processes::{release_binary, venv_python};
use sdac_tests::workspace_root;

const ROWS: usize = 64;
const TOLERANCE: f32 = 1e-5;

/// One policy as the exported files of both formats.
struct Exported {
    name: &'static str,
    safetensors: PathBuf,
    onnx: PathBuf,
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of the fixture run in `dir` whose K = 1 student has half-precision weights (as
/// `sdac distill --weights f16` writes them).
fn run_with_half_precision_student(dir: &Path) -> PathBuf {
    let run = dir.join("half-run");
    std::fs::create_dir_all(&run).unwrap();
    for entry in std::fs::read_dir(fixture_run_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, run.join(path.file_name().unwrap())).unwrap();
        }
    }
    let student = run.join("student-k1.safetensors");
    let rounded = sdac_models::read_policy(&student, &Device::Cpu)
        .unwrap()
        .with_half_precision_weights()
        .unwrap();
    sdac_models::write_policy(&student, &rounded).unwrap();
    run
}

/// The teacher, the K = 1, 2 students and the half-precision K = 1 student, exported by
/// `sdac export`.
fn export_all(dir: &Path) -> Vec<Exported> {
    let sdac = release_binary("sdac").unwrap();
    let half_run = run_with_half_precision_student(dir);
    let mut all = Vec::new();
    for (name, run_dir, student) in [
        ("teacher", fixture_run_dir(), None),
        ("student-k1", fixture_run_dir(), Some("1")),
        ("student-k2", fixture_run_dir(), Some("2")),
        ("student-k1-f16", half_run, Some("1")),
    ] {
        let paths = ["safetensors", "onnx"].map(|format| {
            let out = dir.join(format!("{name}.{format}"));
            let mut command = Command::new(&sdac);
            command.arg("export").arg("--run").arg(&run_dir);
            if let Some(k) = student {
                command.args(["--student", k]);
            }
            run(command.args(["--format", format]).arg("--out").arg(&out));
            out
        });
        let [safetensors, onnx] = paths;
        all.push(Exported {
            name,
            safetensors,
            onnx,
        });
    }
    all
}

/// `rows x len` standard normals from a seeded stream.
fn normals(rng: &mut NoiseRng, rows: usize, len: usize) -> Vec<f32> {
    let mut values = vec![0.0; rows * len];
    rng.fill_standard_normal(&mut values);
    values
}

fn write_csv(path: &Path, prefix: &str, values: &[f32], columns: usize) {
    let mut text: Vec<String> = vec![
        (0..columns)
            .map(|i| format!("{prefix}_{i}"))
            .collect::<Vec<_>>()
            .join(","),
    ];
    for row in values.chunks(columns) {
        text.push(
            row.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

fn read_csv(path: &Path) -> Vec<f32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .flat_map(|line| {
            line.split(',')
                .map(|v| v.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The largest `|a - b| / max(1, |b|)`.
fn max_difference(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// The actions of every engine for one policy, by engine name.
fn actions_of_every_engine(
    policy: &Exported,
    dir: &Path,
    seed: u64,
) -> Vec<(&'static str, Vec<f32>)> {
    let candle = sdac_models::read_policy(&policy.safetensors, &Device::Cpu).unwrap();
    let m = candle.metadata().clone();
    let (od, ad, n_noise) = (m.obs_dim, m.act_dim, m.n_noise);
    let mut rng = NoiseRng::new(seed);
    // Row r scaled by 0.01 * 100^(r / ROWS): near-upright states (where the policies act
    // smoothly) to far-off ones (where they saturate).
    let mut obs = normals(&mut rng, ROWS, od);
    for (row, values) in obs.chunks_mut(od).enumerate() {
        let scale = 0.01 * 100f32.powf(row as f32 / ROWS as f32);
        values.iter_mut().for_each(|v| *v *= scale);
    }
    let noise = normals(&mut rng, ROWS, n_noise * ad);
    let mut engines = Vec::new();

    let obs_t = Tensor::from_slice(&obs, (ROWS, od), &Device::Cpu).unwrap();
    let noise_t = Tensor::from_slice(&noise, (ROWS, n_noise, ad), &Device::Cpu).unwrap();
    let reference = candle.act(&obs_t, &noise_t).unwrap();
    engines.push((
        "candle",
        reference.flatten_all().unwrap().to_vec1().unwrap(),
    ));

    let mut runtime = Policy::load(&policy.safetensors).unwrap();
    assert_eq!(
        runtime.uses_half_weights(),
        policy.name.ends_with("f16"),
        "{}",
        policy.name
    );
    let mut tract = OnnxPolicy::load(&policy.onnx).unwrap();
    let (mut from_runtime, mut from_tract) = (vec![0.0; ROWS * ad], vec![0.0; ROWS * ad]);
    for row in 0..ROWS {
        let o = &obs[row * od..(row + 1) * od];
        let z = &noise[row * n_noise * ad..(row + 1) * n_noise * ad];
        runtime
            .act(o, z, &mut from_runtime[row * ad..(row + 1) * ad])
            .unwrap();
        tract
            .act(o, z, &mut from_tract[row * ad..(row + 1) * ad])
            .unwrap();
    }
    engines.push(("runtime", from_runtime));
    engines.push(("tract", from_tract));

    let model = candle_onnx::read_file(&policy.onnx).unwrap();
    let inputs = HashMap::from([("obs".to_owned(), obs_t), ("noise".to_owned(), noise_t)]);
    let outputs = candle_onnx::simple_eval(&model, inputs).unwrap();
    engines.push((
        "candle-onnx",
        outputs["action"].flatten_all().unwrap().to_vec1().unwrap(),
    ));

    let (obs_csv, noise_csv) = (
        dir.join(format!("{}-obs.csv", policy.name)),
        dir.join(format!("{}-noise.csv", policy.name)),
    );
    let actions_csv = dir.join(format!("{}-ort.csv", policy.name));
    write_csv(&obs_csv, "obs", &obs, od);
    write_csv(&noise_csv, "noise", &noise, n_noise * ad);
    run(Command::new(venv_python().unwrap())
        .arg(workspace_root().join("tools/onnx_act.py"))
        .arg("act")
        .arg("--model")
        .arg(&policy.onnx)
        .arg("--obs")
        .arg(&obs_csv)
        .arg("--noise")
        .arg(&noise_csv)
        .arg("--out")
        .arg(&actions_csv));
    engines.push(("onnxruntime", read_csv(&actions_csv)));
    engines
}

#[test]
fn five_engines_agree_on_the_teacher_and_its_students() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (index, policy) in export_all(dir.path()).iter().enumerate() {
        let engines = actions_of_every_engine(policy, dir.path(), 100 + index as u64);
        let (_, reference) = &engines[0];
        // The actions must not be degenerate (all at one bound) for the comparison to mean much.
        let distinct = reference
            .iter()
            .map(|a| a.to_bits())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(
            distinct > ROWS / 4,
            "{}: only {distinct} distinct actions",
            policy.name
        );
        for (engine, actions) in &engines[1..] {
            let difference = max_difference(actions, reference);
            eprintln!(
                "{} {engine}: max difference {difference:.2e} from candle",
                policy.name
            );
            // A NaN difference fails too.
            if difference.is_nan() || difference > TOLERANCE {
                failures.push(format!("{} {engine}: {difference:e}", policy.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "engines disagree beyond {TOLERANCE}: {failures:?}"
    );
}

#[test]
fn exported_graphs_pass_the_onnx_checker() {
    let dir = tempfile::tempdir().unwrap();
    for policy in export_all(dir.path()) {
        let printed = run(Command::new(venv_python().unwrap())
            .arg(workspace_root().join("tools/onnx_act.py"))
            .arg("check")
            .arg("--model")
            .arg(&policy.onnx));
        assert!(
            printed.starts_with("ok: opset 18, ir 8"),
            "{}: {printed}",
            policy.name
        );
    }
}
