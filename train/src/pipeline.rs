//! `sdac pipeline`: the whole toolchain on one small task, as a newcomer's first command.
//!
//! 1. `sdac train` (SDAC, the given preset) -> a run directory with the teacher.
//! 2. `sdac distill` -> a K-step student, evaluated beside the teacher on the same episodes.
//! 3. `sdac export` -> the student as safetensors (what the node loads) and ONNX.
//! 4. Sim-in-the-loop: `sdac-sim-bridge` (MuJoCo over ROS 2, lockstep) and `sdac-node` (the
//!    policy node) as separate processes over DDS on loopback, on a ROS domain of their own.
//! 5. A report: the returns of teacher, student and sim-in-the-loop, and the latency the bridge
//!    measured from each observation to the command answering it.
//!
//! Each step is the command a user would type, run as a child process of this binary (its
//! siblings `sdac-sim-bridge` and `sdac-node` must have been built beside it), and printed
//! before it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde::Deserialize;

#[derive(clap::Args)]
pub struct PipelineArgs {
    /// Gymnasium id of the task.
    #[arg(long, default_value = "InvertedPendulum-v5")]
    env: String,
    /// Training preset (`sdac train --preset`).
    #[arg(long, default_value = "ci")]
    preset: String,
    /// Seed of training, distillation and the evaluation episodes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampler steps K of the distilled student, 1 to 4.
    #[arg(long, default_value_t = 1)]
    student_steps: usize,
    /// Episodes of each evaluation (distillation's and sim-in-the-loop's).
    #[arg(long, default_value_t = 5)]
    episodes: u32,
    /// Control rate of the policy node, Hz.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Run directory (default `runs/pipeline-<env>-seed<seed>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the run directory if it exists.
    #[arg(long)]
    force: bool,
    /// Reuse the trained teacher in the run directory instead of training again.
    #[arg(long, conflicts_with = "force")]
    skip_training: bool,
}

/// The part of `sdac distill --report` the summary reads.
#[derive(Deserialize)]
struct DistillReport {
    teacher: Evaluation,
    student: Evaluation,
}

#[derive(Deserialize)]
struct Evaluation {
    mean_return: f64,
    us_per_action: f64,
}

/// The part of `sdac-sim-bridge --report` the summary reads.
#[derive(Deserialize)]
struct BridgeReport {
    episodes: Vec<BridgeEpisode>,
    bad_commands: u64,
    command_timeouts: u64,
    command_latency: Latency,
    /// The node's newest `/diagnostics` values.
    controller_diagnostics: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct BridgeEpisode {
    #[serde(rename = "return")]
    episode_return: f64,
}

#[derive(Deserialize)]
struct Latency {
    count: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

/// How long the sim-in-the-loop run may take before it is stopped as hung.
const SIM_IN_THE_LOOP_LIMIT: Duration = Duration::from_secs(600);

pub fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=4).contains(&args.student_steps),
        "--student-steps must be 1 to 4, not {}",
        args.student_steps
    );
    ensure!(args.episodes > 0, "--episodes must be at least 1");
    ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be a positive number of Hz"
    );
    let sdac = std::env::current_exe().context("locating the sdac binary")?;
    let bin_dir = sdac
        .parent()
        .context("the sdac binary has no parent folder")?;
    let bridge = sibling(bin_dir, "sdac-sim-bridge")?;
    let node = sibling(bin_dir, "sdac-node")?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/pipeline-{}-seed{}", args.env, args.seed)));
    let seed = args.seed.to_string();
    let k = args.student_steps.to_string();
    let episodes = args.episodes.to_string();
    let started = Instant::now();

    if args.skip_training {
        ensure!(
            dir.join("final.safetensors").is_file(),
            "--skip-training: {} holds no trained policy (final.safetensors)",
            dir.display()
        );
    } else {
        let mut train = Command::new(&sdac);
        train.args(["train", "--env", &args.env, "--algo", "sdac"]);
        train.args(["--preset", &args.preset, "--seed", &seed]);
        train.arg("--out").arg(&dir);
        if args.force {
            train.arg("--force");
        }
        run_step("1/4 train the SDAC teacher", &mut train)?;
    }

    let distill_report = dir.join(format!("distill-k{k}.json"));
    let mut distill = Command::new(&sdac);
    distill.arg("distill").arg("--run").arg(&dir);
    distill.args(["--steps", &k, "--seed", &seed, "--eval-episodes", &episodes]);
    distill.arg("--report").arg(&distill_report);
    run_step("2/4 distil the student", &mut distill)?;

    let student = dir.join(format!("policy-k{k}.safetensors"));
    for (format, out) in [
        ("safetensors", student.clone()),
        ("onnx", dir.join(format!("policy-k{k}.onnx"))),
    ] {
        let mut export = Command::new(&sdac);
        export.arg("export").arg("--run").arg(&dir);
        export.args(["--student", &k, "--format", format]);
        export.arg("--out").arg(&out);
        run_step(&format!("3/4 export the student ({format})"), &mut export)?;
    }

    let bridge_report = dir.join("sim-in-the-loop.json");
    sim_in_the_loop(args, &bridge, &node, &student, &bridge_report, &episodes)?;

    let distilled: DistillReport = read_json(&distill_report)?;
    let sil: BridgeReport = read_json(&bridge_report)?;
    ensure!(
        !sil.episodes.is_empty(),
        "the bridge finished no episode ({})",
        bridge_report.display()
    );
    let sil_mean =
        sil.episodes.iter().map(|e| e.episode_return).sum::<f64>() / sil.episodes.len() as f64;
    println!();
    println!(
        "{} pipeline (preset {}, seed {}, {} episodes each) in {:.0} s; run directory {}",
        args.env,
        args.preset,
        args.seed,
        args.episodes,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    println!("| policy | mean return | time per action |");
    println!("|---|---|---|");
    println!(
        "| teacher (20-step DDPM, best-of-N, candle) | {:.1} | {:.0} us |",
        distilled.teacher.mean_return, distilled.teacher.us_per_action
    );
    println!(
        "| student ({k}-step, candle) | {:.1} | {:.0} us |",
        distilled.student.mean_return, distilled.student.us_per_action
    );
    println!(
        "| student over ROS 2 (sdac-node at {} Hz + sdac-sim-bridge) | {sil_mean:.1} | obs -> command p50 {:.0} us, p99 {:.0} us, max {:.0} us ({} commands) |",
        args.rate,
        sil.command_latency.p50_us,
        sil.command_latency.p99_us,
        sil.command_latency.max_us,
        sil.command_latency.count
    );
    println!(
        "bridge: {} bad commands, {} command timeouts",
        sil.bad_commands, sil.command_timeouts
    );
    let diagnostic = |key: &str| {
        sil.controller_diagnostics
            .as_ref()
            .and_then(|d| d.get(key))
            .map_or("?", String::as_str)
    };
    println!(
        "node: {} deadline misses ({} overrun, {} late wake-up), compute p99 {} us",
        diagnostic("deadline_misses_total"),
        diagnostic("deadline_misses_overrun_total"),
        diagnostic("deadline_misses_late_wakeup_total"),
        diagnostic("compute_p99_us")
    );
    Ok(())
}

/// `name` in the folder of the running `sdac` binary.
pub(crate) fn sibling(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build every binary of the workspace first (cargo build --release --workspace)",
            path.display()
        );
    }
    Ok(path)
}

/// Prints `command` under `title`, runs it to the end and fails unless it succeeded.
fn run_step(title: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("\n== {title}: {}", shown(command));
    let status = command
        .status()
        .with_context(|| format!("starting {}", shown(command)))?;
    check_status(title, status)
}

fn check_status(title: &str, status: ExitStatus) -> anyhow::Result<()> {
    if !status.success() {
        bail!("step '{title}' failed ({status})");
    }
    Ok(())
}

fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bridge and node as separate processes on a ROS domain of their own; the node is stopped
/// (SIGINT, as Ctrl-C would) once the bridge has finished its episodes.
fn sim_in_the_loop(
    args: &PipelineArgs,
    bridge: &Path,
    node: &Path,
    policy: &Path,
    report: &Path,
    episodes: &str,
) -> anyhow::Result<()> {
    // Domains 0..=232 are valid for ROS 2 on Linux; stay clear of the default 0.
    let domain = (1 + std::process::id() % 200).to_string();
    let seed = args.seed.to_string();
    let mut bridge_command = Command::new(bridge);
    bridge_command.args(["--env", &args.env, "--lockstep", "--episodes", episodes]);
    bridge_command.args(["--seed", &seed]);
    // The node's /diagnostics (deadline misses by cause, compute time) go into the report.
    bridge_command.args(["--diag-topic", "/diagnostics"]);
    bridge_command.arg("--report").arg(report);
    bridge_command.env("ROS_DOMAIN_ID", &domain);
    let mut node_command = Command::new(node);
    node_command.arg("--policy").arg(policy);
    node_command.args(["--rate", &args.rate.to_string(), "--seed", &seed]);
    node_command.env("ROS_DOMAIN_ID", &domain);

    let title = "4/4 sim-in-the-loop over ROS 2";
    eprintln!(
        "\n== {title} (ROS_DOMAIN_ID={domain}):\n   {}\n   {}",
        shown(&bridge_command),
        shown(&node_command)
    );
    let mut node_process = KillOnDrop(
        node_command
            .spawn()
            .with_context(|| format!("starting {}", node.display()))?,
    );
    let mut bridge_process = KillOnDrop(
        bridge_command
            .spawn()
            .with_context(|| format!("starting {}", bridge.display()))?,
    );
    let deadline = Instant::now() + SIM_IN_THE_LOOP_LIMIT;
    let bridge_status = loop {
        if let Some(status) = bridge_process.0.try_wait()? {
            break status;
        }
        if let Some(status) = node_process.0.try_wait()? {
            bail!("sdac-node exited ({status}) before the bridge finished its episodes");
        }
        if Instant::now() > deadline {
            bail!(
                "sim-in-the-loop did not finish within {} s",
                SIM_IN_THE_LOOP_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    check_status("sdac-sim-bridge", bridge_status)?;
    node_process.interrupt_and_wait()
}

/// A child process that is killed if the pipeline stops before it does.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl KillOnDrop {
    /// SIGINT, then the exit status within 5 s (a kill after that).
    pub(crate) fn interrupt_and_wait(&mut self) -> anyhow::Result<()> {
        let Ok(pid) = libc::pid_t::try_from(self.0.id()) else {
            bail!("process id {} out of range", self.0.id());
        };
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.0.try_wait()? {
                return check_status("sdac-node shutdown", status);
            }
            if Instant::now() > deadline {
                bail!("sdac-node did not stop within 5 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // Best effort on the way out of an error: the error itself is already reported.
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
