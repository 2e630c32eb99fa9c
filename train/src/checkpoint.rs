//! Checkpoints that lose nothing and survive a crash while being written.
//!
//! A checkpoint is a folder `<run>/checkpoints/step-<N>/` holding `agent.safetensors` (every
//! network and optimiser moment), `replay_buffer.bin` and `state.json` (counters, RNG
//! positions, the environments' exact states, how long the logs were, the agent's scalars);
//! `<run>/checkpoints/latest` names the newest complete one.
//!
//! Writing goes to `.partial-step-<N>/`, whose files are synced before the folder is renamed to
//! `step-<N>`; then `latest` is replaced by a rename, and only after that are older
//! checkpoints deleted. A kill or a full disk at any point leaves `latest` naming a complete
//! checkpoint; a leftover partial folder is removed by the next resume.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use sdac_models::candle::{self, Device};
use sdac_sim::{RngState, VecEnvState};

use crate::replay_buffer::ReplayBuffer;
use crate::run_log::LogPosition;
use crate::trainer::AgentState;

/// Version of the checkpoint layout; a resume refuses others.
const FORMAT_VERSION: u32 = 1;
const LATEST: &str = "latest";
const PARTIAL_PREFIX: &str = ".partial-";
const AGENT_FILE: &str = "agent.safetensors";
const BUFFER_FILE: &str = "replay_buffer.bin";
const STATE_FILE: &str = "state.json";

/// The training loop's own state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    pub env_steps: u64,
    pub updates: u64,
    pub next_eval: u64,
    pub next_checkpoint: u64,
    pub best_eval: Option<f64>,
    pub last_eval: Option<f64>,
    /// The loop's RNG (warm-up actions, batch sampling).
    pub rng: RngState,
    pub envs: VecEnvState,
    pub log: LogPosition,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    format_version: u32,
    trainer: TrainerState,
    agent: serde_json::Value,
}

/// Everything a checkpoint holds.
pub struct Checkpoint {
    pub trainer: TrainerState,
    pub agent: AgentState,
    pub buffer: ReplayBuffer,
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint for `trainer.env_steps` and makes it the latest.
pub fn write(
    run_dir: &Path,
    trainer: &TrainerState,
    agent: &AgentState,
    buffer: &ReplayBuffer,
) -> anyhow::Result<()> {
    let dir = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("step-{}", trainer.env_steps);
    let partial = dir.join(format!("{PARTIAL_PREFIX}{name}"));
    let written = write_files(&partial, trainer, agent, buffer);
    if let Err(error) = written {
        // Best effort: a full disk may refuse even this; the next resume removes it.
        let _ = std::fs::remove_dir_all(&partial);
        return Err(error.context(format!(
            "writing checkpoint {name} (the previous checkpoint is intact)"
        )));
    }
    let complete = dir.join(&name);
    if complete.exists() {
        std::fs::remove_dir_all(&complete)?;
    }
    std::fs::rename(&partial, &complete)?;
    let latest_partial = dir.join(format!("{PARTIAL_PREFIX}{LATEST}"));
    write_synced(&latest_partial, name.as_bytes())?;
    std::fs::rename(&latest_partial, dir.join(LATEST))?;
    sync_dir(&dir)?;
    remove_folders(&dir, |folder| folder.starts_with("step-") && folder != name)?;
    Ok(())
}

/// Removes the folders of `dir` whose names `doomed` picks.
fn remove_folders(dir: &Path, doomed: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let folder = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && doomed(folder) {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn write_files(
    partial: &Path,
    trainer: &TrainerState,
    agent: &AgentState,
    buffer: &ReplayBuffer,
) -> anyhow::Result<()> {
    if partial.exists() {
        std::fs::remove_dir_all(partial)?;
    }
    std::fs::create_dir(partial)?;
    let agent_path = partial.join(AGENT_FILE);
    candle::safetensors::save(&agent.tensors, &agent_path)?;
    File::open(&agent_path)?.sync_all()?;

    let buffer_path = partial.join(BUFFER_FILE);
    let mut out = BufWriter::new(File::create(&buffer_path)?);
    buffer.write_to(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let state = StateFile {
        format_version: FORMAT_VERSION,
        trainer: trainer.clone(),
        agent: agent.scalars.clone(),
    };
    write_synced(&partial.join(STATE_FILE), &serde_json::to_vec(&state)?)?;
    sync_dir(partial)
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Reads the latest complete checkpoint of `run_dir` (removing partial ones) for a run whose
/// buffer has this capacity and these dimensions.
pub fn read_latest(
    run_dir: &Path,
    buffer_capacity: usize,
    obs_dim: usize,
    act_dim: usize,
) -> anyhow::Result<Checkpoint> {
    let dir = checkpoints_dir(run_dir);
    let latest = dir.join(LATEST);
    let name = std::fs::read_to_string(&latest).with_context(|| {
        format!(
            "{} has no checkpoint to resume from ({} is missing)",
            run_dir.display(),
            latest.display()
        )
    })?;
    remove_folders(&dir, |folder| folder.starts_with(PARTIAL_PREFIX))?;
    let checkpoint = dir.join(name.trim());
    let context = || format!("reading checkpoint {}", checkpoint.display());

    let state_text = std::fs::read(checkpoint.join(STATE_FILE)).with_context(context)?;
    let state: StateFile = serde_json::from_slice(&state_text).with_context(context)?;
    if state.format_version != FORMAT_VERSION {
        bail!(
            "checkpoint {} has format version {}, this build reads version {FORMAT_VERSION}",
            checkpoint.display(),
            state.format_version
        );
    }
    let tensors = candle::safetensors::load(checkpoint.join(AGENT_FILE), &Device::Cpu)
        .with_context(context)?;
    let buffer_file = File::open(checkpoint.join(BUFFER_FILE)).with_context(context)?;
    let buffer = ReplayBuffer::read_from(
        &mut BufReader::new(buffer_file),
        buffer_capacity,
        obs_dim,
        act_dim,
    )
    .with_context(context)?;
    Ok(Checkpoint {
        trainer: state.trainer,
        agent: AgentState {
            tensors: tensors.into_iter().collect(),
            scalars: state.agent,
        },
        buffer,
    })
}
