//! The loop both algorithms share: collect with the vectorised environments, learn from the
//! replay buffer, evaluate, log. The algorithm-specific parts sit behind [`Agent`].

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sdac_sim::{Assets, EnvSpec, RngState, VecEnv};

use crate::checkpoint::{self, TrainerState};
use crate::config::Config;
use crate::replay_buffer::{Batch, ReplayBuffer};
use crate::run_log::RunLog;

/// Named scalars from one update, logged under TensorBoard-style tags (`losses/qf1_loss`).
pub type Metrics = Vec<(&'static str, f64)>;

/// What an algorithm provides to the loop. Actions are in normalised units, [-1, 1] before any
/// exploration noise.
pub trait Agent {
    /// The algorithm's name, as in `--algo`.
    fn name(&self) -> &'static str;

    /// One action per row of `obs` (`rows x obs_dim`): with exploration for training, without
    /// for evaluation.
    fn act(&mut self, obs: &[f64], rows: usize, explore: bool) -> anyhow::Result<Vec<f32>>;

    /// One gradient step on `batch`.
    fn update(&mut self, batch: &Batch) -> anyhow::Result<Metrics>;

    /// Writes the parameters of the acting policy (and what it needs, e.g. critics) to `path`.
    fn save(&self, path: &Path) -> anyhow::Result<()>;

    /// Reads back what [`Agent::save`] wrote.
    fn load(&mut self, path: &Path) -> anyhow::Result<()>;

    /// The whole training state, for a checkpoint: every network, optimiser moments and step
    /// counts, the temperature, the RNG position and the update counters.
    fn save_state(&self) -> anyhow::Result<AgentState>;

    /// Restores what [`Agent::save_state`] returned; afterwards the agent behaves exactly as
    /// the one that saved it.
    fn load_state(&mut self, state: &AgentState) -> anyhow::Result<()>;
}

/// An agent's training state: named tensors and the scalars beside them.
pub struct AgentState {
    pub tensors: sdac_models::TensorMap,
    pub scalars: serde_json::Value,
}

/// Environment action from a normalised one: [-1, 1] maps onto [low, high] (beyond stays
/// beyond; MuJoCo clamps controls to their range).
pub fn to_env_action(normalised: &[f32], spec: &EnvSpec, out: &mut [f64]) {
    for (i, (o, a)) in out.iter_mut().zip(normalised).enumerate() {
        let (low, high) = (spec.action_low[i], spec.action_high[i]);
        *o = low + (f64::from(*a) + 1.0) * 0.5 * (high - low);
    }
}

/// Progress on standard error: a bar with steps, SPS and the last evaluation return on a
/// terminal; otherwise (a log file, CI) a line at each evaluation and every 30 s.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total_steps: u64,
    last_line: Instant,
}

impl Progress {
    fn new(total_steps: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_steps);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            total_steps,
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, env_steps: u64, updates: u64, sps: f64, last_eval: f64, evaluated: bool) {
        let message = format!("updates {updates}  SPS {sps:.1}  eval return {last_eval:.2}");
        match &self.bar {
            Some(bar) => {
                bar.set_position(env_steps);
                bar.set_message(message);
            }
            None if evaluated || self.last_line.elapsed().as_secs() >= 30 => {
                eprintln!("step {env_steps:>8}/{}  {message}", self.total_steps);
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Mean undiscounted return of `episodes` evaluation episodes (no exploration), on a fresh
/// environment seeded apart from the training ones.
pub fn evaluate(
    agent: &mut dyn Agent,
    task: &str,
    assets: &Assets,
    episodes: usize,
    seed: u64,
) -> anyhow::Result<Vec<f64>> {
    run_episodes(task, assets, episodes, seed, &mut |obs| {
        agent.act(obs, 1, false)
    })
}

/// The undiscounted return of each of `episodes` episodes on a fresh environment, episode `i`
/// reset with seed `seed + 1_000_003 (i + 1)`, `act` mapping each observation to a normalised
/// action (what [`evaluate`] runs, for any policy).
pub fn run_episodes(
    task: &str,
    assets: &Assets,
    episodes: usize,
    seed: u64,
    act: &mut dyn FnMut(&[f64]) -> anyhow::Result<Vec<f32>>,
) -> anyhow::Result<Vec<f64>> {
    let mut env = sdac_sim::make_env(task, assets)?;
    let spec = env.spec().clone();
    let mut obs = vec![0.0; spec.obs_dim];
    let mut env_action = vec![0.0; spec.action_dim()];
    let mut returns = Vec::with_capacity(episodes);
    for episode in 0..episodes {
        env.reset(
            Some(seed.wrapping_add(1_000_003 * (episode as u64 + 1))),
            &mut obs,
        )?;
        let mut episode_return = 0.0;
        loop {
            let action = act(&obs)?;
            to_env_action(&action, &spec, &mut env_action);
            let outcome = env.step(&env_action, &mut obs)?;
            episode_return += outcome.reward;
            if outcome.terminated || outcome.truncated {
                break;
            }
        }
        returns.push(episode_return);
    }
    Ok(returns)
}

/// A finished run's headline figures.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub final_eval_return: f64,
    pub best_eval_return: f64,
    pub env_steps: u64,
    pub updates: u64,
    pub seconds: f64,
}

/// Whether a run starts afresh or continues from its latest checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
}

/// Trains `agent` on `task` until `config.total_steps` environment steps, logging into
/// `run_dir` and checkpointing every `config.checkpoint_every` steps. Resumed on the same
/// machine, a run continues exactly as if it had never stopped.
pub fn train(
    agent: &mut dyn Agent,
    task: &str,
    config: &Config,
    seed: u64,
    run_dir: &Path,
    start: Start,
) -> anyhow::Result<RunSummary> {
    let assets = Assets::discover()?;
    let mut envs = VecEnv::new(task, &assets, config.num_envs, config.env_threads)?;
    let spec = envs.spec().clone();
    let (od, ad, n) = (spec.obs_dim, spec.action_dim(), config.num_envs);
    let curve_title = format!("{task} {}", agent.name());
    let (mut buffer, mut rng, mut obs, mut log, loop_state);
    match start {
        Start::Fresh => {
            buffer = ReplayBuffer::new(config.buffer_size, od, ad);
            rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5DAC_0001);
            obs = envs.reset(seed)?.to_vec();
            log = RunLog::create(run_dir, curve_title)?;
            loop_state = LoopState {
                env_steps: 0,
                updates: 0,
                next_eval: config.eval_every,
                next_checkpoint: config.checkpoint_every,
                best_eval: f64::NEG_INFINITY,
                last_eval: f64::NAN,
            };
        }
        Start::Resume => {
            let saved = checkpoint::read_latest(run_dir, config.buffer_size, od, ad)?;
            agent
                .load_state(&saved.agent)
                .context("restoring the agent from the checkpoint")?;
            buffer = saved.buffer;
            rng = saved.trainer.rng.to_rng();
            obs = envs.load_state(&saved.trainer.envs)?.to_vec();
            log = RunLog::reopen(run_dir, curve_title, &saved.trainer.log)?;
            loop_state = LoopState {
                env_steps: saved.trainer.env_steps,
                updates: saved.trainer.updates,
                next_eval: saved.trainer.next_eval,
                next_checkpoint: saved.trainer.next_checkpoint,
                best_eval: saved.trainer.best_eval.unwrap_or(f64::NEG_INFINITY),
                last_eval: saved.trainer.last_eval.unwrap_or(f64::NAN),
            };
            eprintln!(
                "resuming from the checkpoint at step {}",
                loop_state.env_steps
            );
        }
    }
    let LoopState {
        mut env_steps,
        mut updates,
        mut next_eval,
        mut next_checkpoint,
        mut best_eval,
        mut last_eval,
    } = loop_state;
    let mut batch = Batch::default();
    let mut newest_metrics = Metrics::new();
    let mut env_actions = vec![0.0; n * ad];
    let (started, steps_at_start) = (Instant::now(), env_steps);
    let sps =
        |env_steps: u64| (env_steps - steps_at_start) as f64 / started.elapsed().as_secs_f64();
    let mut progress = Progress::new(config.total_steps);
    while env_steps < config.total_steps {
        let actions: Vec<f32> = if env_steps < config.warmup_steps {
            (0..n * ad)
                .map(|_| rng.random_range(-1.0f32..=1.0))
                .collect()
        } else {
            agent.act(&obs, n, true)?
        };
        for (row, chunk) in actions.chunks(ad).enumerate() {
            to_env_action(chunk, &spec, &mut env_actions[row * ad..(row + 1) * ad]);
        }
        let step = envs.step(&env_actions)?;
        for i in 0..n {
            buffer.push(
                &obs[i * od..(i + 1) * od],
                &actions[i * ad..(i + 1) * ad],
                step.rewards[i],
                &step.final_obs[i * od..(i + 1) * od],
                step.terminated[i],
            );
        }
        env_steps += n as u64;
        for end in step.episode_ends {
            log.log(env_steps, "charts/episodic_return", end.episode_return)?;
            log.log(env_steps, "charts/episodic_length", f64::from(end.length))?;
        }
        obs.copy_from_slice(step.obs);

        if env_steps >= config.warmup_steps {
            let due = (env_steps - config.warmup_steps) / config.env_steps_per_update + 1;
            while updates < due {
                buffer.sample_into(config.batch_size, &mut rng, &mut batch);
                let metrics = agent.update(&batch)?;
                updates += 1;
                if let Some((tag, value)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
                    log.flush()?;
                    bail!(
                        "{tag} became {value} at update {updates} (environment step \
                         {env_steps}): training stopped. The latest checkpoint in {} holds the \
                         last good state.",
                        checkpoint::checkpoints_dir(run_dir).display()
                    );
                }
                // Every 100 updates, the newest value of each tag: some (the policy's) are
                // produced only every `policy_delay` updates.
                for (tag, value) in metrics {
                    match newest_metrics.iter_mut().find(|(seen, _)| *seen == tag) {
                        Some(entry) => entry.1 = value,
                        None => newest_metrics.push((tag, value)),
                    }
                }
                if updates % 100 == 0 {
                    // In tag order, so that a resumed run logs what an uninterrupted one does.
                    newest_metrics.sort_unstable_by_key(|(tag, _)| *tag);
                    for (tag, value) in newest_metrics.drain(..) {
                        log.log(env_steps, tag, value)?;
                    }
                }
            }
        }

        let evaluated = env_steps >= next_eval || env_steps >= config.total_steps;
        if evaluated {
            next_eval += config.eval_every;
            let returns = evaluate(agent, task, &assets, config.eval_episodes, seed)?;
            last_eval = returns.iter().sum::<f64>() / returns.len() as f64;
            best_eval = best_eval.max(last_eval);
            log.log(env_steps, "eval/episodic_return", last_eval)?;
            log.log(env_steps, "charts/SPS", sps(env_steps))?;
            log.flush()?;
        }
        if config.checkpoint_every > 0 && env_steps >= next_checkpoint {
            next_checkpoint += config.checkpoint_every;
            let trainer_state = TrainerState {
                env_steps,
                updates,
                next_eval,
                next_checkpoint,
                best_eval: best_eval.is_finite().then_some(best_eval),
                last_eval: last_eval.is_finite().then_some(last_eval),
                rng: RngState::of(&rng),
                envs: envs.save_state()?,
                log: log.position()?,
            };
            checkpoint::write(run_dir, &trainer_state, &agent.save_state()?, &buffer)?;
        }
        progress.update(env_steps, updates, sps(env_steps), last_eval, evaluated);
    }
    progress.finish();
    log.flush()?;
    agent.save(&run_dir.join("final.safetensors"))?;
    Ok(RunSummary {
        final_eval_return: last_eval,
        best_eval_return: best_eval,
        env_steps,
        updates,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The loop's counters and evaluation results.
struct LoopState {
    env_steps: u64,
    updates: u64,
    next_eval: u64,
    next_checkpoint: u64,
    best_eval: f64,
    last_eval: f64,
}

/// `runs/<task>-<algo>-seed<seed>` unless the user named one.
pub fn default_run_dir(task: &str, algo: &str, seed: u64) -> PathBuf {
    PathBuf::from("runs").join(format!("{task}-{algo}-seed{seed}"))
}
