//! Writes small valid policy artifacts (synthetic seeded weights, as written and rounded to
//! half-precision values) into a folder, the seed corpus of the loader fuzz target: `cargo run --release -p sdac-runtime --example
//! write_fuzz_seeds -- runtime/fuzz/corpus/load`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Shape, synthetic};

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runtime/fuzz/corpus/load".into());
    std::fs::create_dir_all(&dir)?;
    let tiny = |mut shape: Shape, hidden: Vec<usize>| {
        shape.obs_dim = 2;
        shape.act_dim = 1;
        shape.hidden = hidden;
        shape
    };
    let mut teacher = tiny(Shape::teacher(), vec![4]);
    teacher.candidates = 2;
    teacher.schedule_steps = 3;
    teacher.timesteps = vec![2, 1, 0];
    // A teacher wide enough (8 panels) and with enough candidates (4 + 1 rows) for the AVX-512
    // batch kernel.
    let mut wide_teacher = tiny(Shape::teacher(), vec![64]);
    wide_teacher.candidates = 5;
    wide_teacher.schedule_steps = 2;
    wide_teacher.timesteps = vec![1, 0];
    let seeds = [
        ("teacher", teacher),
        ("teacher-wide", wide_teacher),
        ("student-k1", tiny(Shape::student(1), vec![3])),
        ("student-k2", tiny(Shape::student(2), vec![2, 3])),
    ];
    for (i, (name, shape)) in seeds.into_iter().enumerate() {
        let artifact = synthetic(&shape, i as u64);
        let path = format!("{dir}/{name}.safetensors");
        std::fs::write(&path, artifact.bytes())?;
        println!("{path}");
        // The same with half-precision values: the runtime's f16 weight path.
        let path = format!("{dir}/{name}-f16.safetensors");
        std::fs::write(&path, artifact.with_half_precision_values().bytes())?;
        println!("{path}");
    }
    Ok(())
}
