//! `sdac distill` and `sdac export` on the committed fixture teacher (SDAC, InvertedPendulum-v5,
//! `ci` preset, seed 0): the 1-step student keeps at least 95% of the teacher's return on the
//! same evaluation episodes, and what the commands write is a valid policy for the runtime.

use std::path::Path;
use std::process::{Command, Output};

use sdac_runtime::Policy;
use sdac_runtime::format::SamplerKind;
use sdac_tests::policies::fixture_run_dir;

fn sdac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdac"))
        .args(args)
        .output()
        .expect("the sdac binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `sdac distill --run <fixture> --steps 1 <options> --out <student>` with a JSON report in
/// `dir`; returns the report.
fn distill_fixture(dir: &Path, options: &[&str], student: &Path) -> serde_json::Value {
    let (run, report) = (fixture_run_dir(), dir.join("report.json"));
    let mut args = vec!["distill", "--run", path(&run), "--steps", "1"];
    args.extend_from_slice(options);
    args.extend(["--out", path(student), "--report", path(&report)]);
    let output = sdac(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

#[test]
fn one_step_student_keeps_95_percent_of_the_teachers_return() {
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student-k1.safetensors");
    // Fewer DAgger rounds than the defaults (8 of 3 episodes): enough on this task, and the
    // test stays within its time.
    let options = ["--seed", "3", "--iterations", "3", "--dagger-episodes", "2"];
    let report = distill_fixture(dir.path(), &options, &student);
    let teacher = report["teacher"]["mean_return"].as_f64().unwrap();
    let student_return = report["student"]["mean_return"].as_f64().unwrap();
    assert_eq!(
        report["teacher"]["returns"].as_array().unwrap().len(),
        report["student"]["returns"].as_array().unwrap().len()
    );
    assert!(teacher >= 900.0, "the fixture teacher returns {teacher}");
    assert!(
        student_return >= 0.95 * teacher,
        "student {student_return} vs teacher {teacher}"
    );

    let policy = Policy::load(&student).unwrap();
    let m = policy.metadata();
    assert_eq!(m.sampler.kind, SamplerKind::DdimSample);
    assert_eq!(m.sampler.timesteps, vec![19]);
    assert_eq!(policy.noise_len(), 1);
    assert_eq!(m.provenance.task, "InvertedPendulum-v5");
    assert_eq!(m.provenance.algorithm, "sdac-distilled");
    assert_eq!(m.provenance.student_steps, Some(1));
    assert_eq!(m.provenance.config_hash.len(), 16);
}

/// `--weights f16`: the written student holds half-precision values only, so the runtime keeps
/// its layers in f16; the report says so. (A short distillation: this checks the writing, the
/// return check is the test above.)
#[test]
fn half_precision_student_is_written_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let student = dir.path().join("student-k1-f16.safetensors");
    let options = [
        "--teacher-episodes",
        "1",
        "--iterations",
        "0",
        "--train-steps",
        "20",
        "--eval-episodes",
        "1",
        "--weights",
        "f16",
    ];
    let report = distill_fixture(dir.path(), &options, &student);
    assert_eq!(report["weights"], "f16");
    assert!(Policy::load(&student).unwrap().uses_half_weights());
    let f32_student = fixture_run_dir().join("student-k1.safetensors");
    assert!(!Policy::load(&f32_student).unwrap().uses_half_weights());
}

#[test]
fn exported_teacher_is_the_runs_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("teacher.safetensors");
    let run = fixture_run_dir();
    let output = sdac(&[
        "export",
        "--run",
        path(&run),
        "--format",
        "safetensors",
        "--out",
        path(&out),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let policy = Policy::load(&out).unwrap();
    let m = policy.metadata();
    assert_eq!(m.sampler.kind, SamplerKind::DdpmBestOfN);
    assert_eq!(m.sampler.candidates, 8);
    assert_eq!(m.sampler.timesteps, (0..20).rev().collect::<Vec<_>>());
    assert_eq!(m.n_noise, 160);
    assert_eq!(
        (m.action_low.clone(), m.action_high.clone()),
        (vec![-3.0], vec![3.0])
    );
    assert_eq!(m.provenance.algorithm, "sdac");
    assert_eq!(m.provenance.student_steps, None);
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = fixture_run_dir();
    let out = dir.path().join("x.safetensors");
    for (args, expected) in [
        (
            vec!["distill", "--run", path(&run), "--steps", "5"],
            "--steps must be 1 to 4",
        ),
        (
            vec!["distill", "--run", path(dir.path()), "--steps", "1"],
            "run.toml",
        ),
        (
            vec![
                "export",
                "--run",
                path(&run),
                "--student",
                "3",
                "--format",
                "onnx",
                "--out",
                path(&out),
            ],
            "student-k3.safetensors",
        ),
    ] {
        let output = sdac(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
