//! `sdac act`: a policy file's actions for given observations and noise, so that any engine can
//! be checked against the runtime.
//!
//! Files (CSV, comma-separated, one header line, then one row per action):
//! - `OBS.csv`: header `obs_0,...,obs_{obs_dim-1}`, raw observations;
//! - `NOISE.csv`: header `noise_0,...,noise_{n_noise*act_dim-1}`, the row's standard-normal noise
//!   flattened in the format's order (noise vector after noise vector);
//! - `ACTIONS.csv` (written): header `a_0,...,a_{act_dim-1}`, actions in environment units.
//!
//! A `.safetensors` policy runs on `sdac_runtime::Policy`; an `.onnx` one on the runtime's tract
//! path (`sdac_runtime::OnnxPolicy`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct ActArgs {
    /// Policy artifact (`.safetensors`) or ONNX graph (`.onnx`).
    #[arg(long)]
    policy: PathBuf,
    /// Observations, one per row (header obs_0..).
    #[arg(long)]
    obs: PathBuf,
    /// Noise, one row per observation (header noise_0..).
    #[arg(long)]
    noise: PathBuf,
    /// Where to write the actions (header a_0..).
    #[arg(long)]
    out: PathBuf,
}

/// The engines `sdac act` runs, behind one call.
trait Engine {
    fn dims(&self) -> (usize, usize, usize);
    fn act(&mut self, obs: &[f32], noise: &[f32], action: &mut [f32]) -> anyhow::Result<()>;
}

impl Engine for sdac_runtime::Policy {
    fn dims(&self) -> (usize, usize, usize) {
        (self.obs_dim(), self.noise_len(), self.act_dim())
    }

    fn act(&mut self, obs: &[f32], noise: &[f32], action: &mut [f32]) -> anyhow::Result<()> {
        Ok(sdac_runtime::Policy::act(self, obs, noise, action)?)
    }
}

impl Engine for sdac_runtime::OnnxPolicy {
    fn dims(&self) -> (usize, usize, usize) {
        (self.obs_dim(), self.noise_len(), self.act_dim())
    }

    fn act(&mut self, obs: &[f32], noise: &[f32], action: &mut [f32]) -> anyhow::Result<()> {
        Ok(sdac_runtime::OnnxPolicy::act(self, obs, noise, action)?)
    }
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Engine>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let context = || format!("loading the policy {}", path.display());
    Ok(match extension {
        "safetensors" => Box::new(sdac_runtime::Policy::load(path).with_context(context)?),
        "onnx" => Box::new(sdac_runtime::OnnxPolicy::load(path).with_context(context)?),
        _ => bail!(
            "{}: the policy must be a .safetensors artifact or an .onnx graph",
            path.display()
        ),
    })
}

/// The rows of a CSV file with header `{prefix}_0..{prefix}_{columns-1}`, each value finite
/// (as f32); errors name the file and the line.
fn read_rows(path: &Path, prefix: &str, columns: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = (0..columns).map(|i| format!("{prefix}_{i}")).collect();
    let table = sdac_sim::replay::parse_table(path, &text, Some(&header))?;
    let mut rows = Vec::with_capacity(table.rows.len());
    for (index, row) in table.rows.iter().enumerate() {
        let values: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        if let Some(column) = values.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: row {} (line {}): {prefix}_{column} is {}; values must be finite f32",
                path.display(),
                index + 1,
                index + 2,
                row[column]
            );
        }
        rows.push(values);
    }
    Ok(rows)
}

pub fn run(args: &ActArgs) -> anyhow::Result<()> {
    let mut engine = open(&args.policy)?;
    let (obs_dim, noise_len, act_dim) = engine.dims();
    let obs = read_rows(&args.obs, "obs", obs_dim)?;
    let noise = read_rows(&args.noise, "noise", noise_len)?;
    if obs.len() != noise.len() {
        bail!(
            "{} has {} rows but {} has {}: one noise row per observation",
            args.obs.display(),
            obs.len(),
            args.noise.display(),
            noise.len()
        );
    }
    let mut text: String = (0..act_dim)
        .map(|i| format!("a_{i}"))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    let mut action = vec![0.0f32; act_dim];
    for (index, (o, z)) in obs.iter().zip(&noise).enumerate() {
        engine
            .act(o, z, &mut action)
            .with_context(|| format!("row {}", index + 1))?;
        let cells: Vec<String> = action.iter().map(|a| format!("{a:?}")).collect();
        let _ = writeln!(text, "{}", cells.join(","));
    }
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("{} actions -> {}", obs.len(), args.out.display());
    Ok(())
}
