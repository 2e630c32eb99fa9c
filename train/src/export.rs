//! `sdac export`: a run's teacher or one of its distilled students as a policy artifact
//! (safetensors, format v1) or as an ONNX graph of the whole sampler.
//!
//! The teacher is the run's acting policy as `final.safetensors` holds it: the EMA noise
//! network (tensors `policy.*`) with its 20-step DDPM sampler and best-of-N selection by the
//! twin critics (`critic.*`); a student is `<run>/student-k{K}.safetensors` from `sdac distill`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sdac_models::candle::Device;
use sdac_models::{CandlePolicy, DiffusionSchedule};
use sdac_runtime::format::{
    Activation, FORMAT_VERSION, Metadata, Network, ObsNormalization, Provenance, Sampler,
    SamplerKind, TIME_EMBEDDING_DIM,
};

use crate::config::{Algo, Config};
use crate::run::{RunInfo, read_run};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// The policy artifact (format v1), what `sdac-runtime` and the ROS node load.
    Safetensors,
    /// An ONNX graph of the whole sampler (inputs `obs`, `noise`; output `action`).
    Onnx,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Run directory written by `sdac train` (and `sdac distill` for a student).
    #[arg(long)]
    run: PathBuf,
    /// Export the K-step student `<run>/student-k{K}.safetensors` instead of the teacher.
    #[arg(long, value_name = "K")]
    student: Option<usize>,
    /// File format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let policy = match args.student {
        None => teacher(&args.run)?.policy,
        Some(k) => {
            let path = student_path(&args.run, k);
            sdac_models::read_policy(&path, &Device::Cpu)
                .with_context(|| format!("reading the student {}", path.display()))?
        }
    };
    match args.format {
        ExportFormat::Safetensors => sdac_models::write_policy(&args.out, &policy)?,
        ExportFormat::Onnx => {
            let bytes = sdac_models::onnx_bytes(&policy)?;
            std::fs::write(&args.out, bytes)
                .with_context(|| format!("writing {}", args.out.display()))?;
        }
    }
    let m = policy.metadata();
    eprintln!(
        "{} {:?} sampler, {} steps, {} noise vectors -> {}",
        m.provenance.task,
        m.sampler.kind,
        m.sampler.timesteps.len(),
        m.n_noise,
        args.out.display()
    );
    Ok(())
}

/// Where `sdac distill` writes the `k`-step student of a run.
pub fn student_path(run_dir: &Path, k: usize) -> PathBuf {
    run_dir.join(format!("student-k{k}.safetensors"))
}

/// A run's teacher with what describes it.
pub struct Teacher {
    pub policy: CandlePolicy,
    pub info: RunInfo,
    pub config: Config,
}

/// The teacher of an SDAC run directory: `final.safetensors` with the run's sampler settings,
/// the task's action bounds and raw (unnormalised) observations.
pub fn teacher(run_dir: &Path) -> anyhow::Result<Teacher> {
    let (info, config) = read_run(run_dir)?;
    if info.algo != Algo::Sdac {
        bail!(
            "{} is a {:?} run: only SDAC runs have a diffusion policy to export or distil",
            run_dir.display(),
            info.algo
        );
    }
    let assets = sdac_sim::Assets::discover()?;
    let spec = sdac_sim::make_env(&info.env, &assets)?.spec().clone();
    let c = &config.sdac;
    let sampler = Sampler {
        kind: SamplerKind::DdpmBestOfN,
        schedule_steps: c.diffusion_steps,
        beta_min: DiffusionSchedule::SDAC_BETA_MIN,
        beta_max: DiffusionSchedule::SDAC_BETA_MAX,
        beta_scale: DiffusionSchedule::SDAC_BETA_SCALE,
        timesteps: (0..c.diffusion_steps).rev().collect(),
        init_noise_std: c.init_noise_std,
        candidates: c.candidates,
    };
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        obs_dim: spec.obs_dim,
        act_dim: spec.action_dim(),
        action_low: spec.action_low.clone(),
        action_high: spec.action_high.clone(),
        obs_normalization: ObsNormalization {
            mean: vec![0.0; spec.obs_dim],
            std: vec![1.0; spec.obs_dim],
        },
        n_noise: sampler.noise_vectors(),
        sampler,
        network: Network {
            hidden: config.hidden.clone(),
            activation: Activation::Mish,
            time_embedding_dim: TIME_EMBEDDING_DIM,
        },
        provenance: provenance(run_dir, &info, "sdac", None)?,
    };
    let weights = run_dir.join("final.safetensors");
    let tensors = sdac_models::candle::safetensors::load(&weights, &Device::Cpu)
        .with_context(|| format!("reading {}", weights.display()))?;
    let policy = CandlePolicy::new(metadata, tensors, &Device::Cpu)
        .with_context(|| format!("the teacher in {}", weights.display()))?;
    Ok(Teacher {
        policy,
        info,
        config,
    })
}

/// Where a policy of `run_dir` came from: the run's task and seed, the FNV-1a 64 hash of its
/// `config.toml`, and the git commit of the source tree this binary was built from.
pub fn provenance(
    run_dir: &Path,
    info: &RunInfo,
    algorithm: &str,
    student_steps: Option<usize>,
) -> anyhow::Result<Provenance> {
    let config_path = run_dir.join("config.toml");
    let config_bytes = std::fs::read(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    Ok(Provenance {
        task: info.env.clone(),
        algorithm: algorithm.to_owned(),
        seed: info.seed,
        config_hash: format!("{:016x}", fnv1a_64(&config_bytes)),
        git_commit: git_commit(),
        student_steps,
    })
}

/// FNV-1a, 64 bits.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `git rev-parse HEAD` of the source tree the binary was built from, or `unknown`.
fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
