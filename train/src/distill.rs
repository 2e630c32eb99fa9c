//! `sdac distill`: a K-step student (K = 1..4) from an SDAC run's teacher, read top to bottom.
//!
//! The teacher is the run's acting policy: the EMA noise network with its 20-step DDPM sampler
//! and best-of-N selection by `min(Q1, Q2)` (see `export::teacher`). The student is a K-step
//! DDIM sampler whose network (the teacher's architecture) predicts the clean action `x0`
//! (`sdac_models::DdimSampler`); it consumes one noise vector per action.
//!
//! Method: regression of the teacher's chosen action from (state, fresh noise), trained by
//! backpropagation through the student's K unrolled steps (K <= 4, so this is cheap):
//!
//! 1. Teacher rollouts give the first states, each labelled with the action the teacher took.
//! 2. Adam on `mean (f_K(s, z) - a_teacher(s))^2` over minibatches of the labelled states, a
//!    fresh `z ~ N(0, I)` for every sample (`f_K` is the student's last `x0` prediction before
//!    its clip, so saturated targets still pass a gradient).
//! 3. DAgger: the student drives episodes, the teacher labels the states it visits, the set
//!    grows, and the student trains on all of it again; repeated `--iterations` times. This
//!    corrects the states the student drifts into, which teacher rollouts never show.
//!
//! The regression's optimum is the teacher's mean action in each state: the teacher's draws for
//! one state vary (the final loss is mostly that variance), and the student's noise input only
//! carries what of that variation the regression can attribute to it. Regressing the teacher's
//! chosen action was preferred over consistency distillation of a DDIM teacher on the same noise
//! network because the teacher SDAC evaluates is the best-of-N selection, not the bare chain:
//! a consistency student of the chain would reproduce one unselected candidate.
//!
//! Initialisation (`--init`, default `teacher`): from the teacher's noise-network weights (same
//! architecture, trained to predict noise rather than `x0`, but its observation features carry
//! over) or from scratch (the project's seeded initialisation). Measured on InvertedPendulum-v5
//! (`ci` teacher, K = 1, one round of 400 Adam steps on 4000 teacher states, seeds 1 and 2):
//! from the teacher, loss 0.195 / 0.203 and return 1000 / 1000; from scratch, loss 0.204 /
//! 0.210 and return 112 / 102. With the full defaults both reach 1000, so the teacher's
//! weights win on speed: the same student in fewer steps (BENCHMARKS.md has the commands).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use sdac_models::candle::{DType, Device, Tensor};
use sdac_models::candle_nn::VarMap;
use sdac_models::{
    Adam, CandlePolicy, DdimSampler, NoiseNet, NoiseSource, seeded_var_builder, sorted_vars,
    student_timesteps,
};
use sdac_runtime::format::{Metadata, NETWORK_PREFIX, Sampler, SamplerKind};
use serde::Serialize;

use crate::export::{self, Teacher};
use crate::run::with_compute_threads;
use crate::trainer::run_episodes;

/// How the student's network starts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentInit {
    /// The project's seeded initialisation (the one training uses).
    Scratch,
    /// A copy of the teacher's EMA noise network.
    Teacher,
}

/// How the student's weights are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightPrecision {
    /// As trained.
    F32,
    /// Rounded to the nearest half-precision value after training (still f32 in the file, so
    /// every engine reads the same values); the runtime then keeps them in half the bytes. The
    /// evaluation below runs the rounded student.
    F16,
}

/// Everything `sdac distill` depends on besides the teacher.
#[derive(clap::Args, Debug, Clone)]
pub struct DistillArgs {
    /// Run directory of a trained SDAC teacher (`sdac train --algo sdac`).
    #[arg(long)]
    pub run: PathBuf,
    /// Sampler steps K of the student, 1 to 4.
    #[arg(long)]
    pub steps: usize,
    /// Seed of the student's initialisation, the minibatches, the noise and the data episodes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the student (default `<run>/student-k{K}.safetensors`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How the student's network starts.
    #[arg(long, value_enum, default_value_t = StudentInit::Teacher)]
    pub init: StudentInit,
    /// Teacher episodes whose states (with the teacher's actions) start the data set.
    #[arg(long, default_value_t = 4)]
    pub teacher_episodes: usize,
    /// DAgger iterations after the first training round: each runs the student for
    /// `--dagger-episodes` episodes, labels their states with the teacher and trains again.
    #[arg(long, default_value_t = 8)]
    pub iterations: usize,
    /// Student episodes per DAgger iteration.
    #[arg(long, default_value_t = 3)]
    pub dagger_episodes: usize,
    /// Episodes are cut after this many steps (data collection only; evaluation runs them out).
    #[arg(long, default_value_t = 1000)]
    pub max_episode_steps: usize,
    /// Adam steps per training round.
    #[arg(long, default_value_t = 1500)]
    pub train_steps: usize,
    /// States per Adam step.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    /// Evaluation episodes of the teacher and the student (the same episodes for both).
    #[arg(long, default_value_t = 10)]
    pub eval_episodes: usize,
    /// Seed of the evaluation episodes' resets (as `sdac eval --seed`).
    #[arg(long, default_value_t = 12345)]
    pub eval_seed: u64,
    /// Precision of the student's written weights.
    #[arg(long, value_enum, default_value_t = WeightPrecision::F32)]
    pub weights: WeightPrecision,
    /// Also write the comparison as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// One policy's evaluation.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub returns: Vec<f64>,
    pub mean_return: f64,
    /// Mean wall time of one action (batch 1, candle on one thread, noise drawing included).
    pub us_per_action: f64,
}

/// What `--report` writes.
#[derive(Debug, Serialize)]
pub struct Report {
    pub task: String,
    pub student_steps: usize,
    pub init: StudentInit,
    pub weights: WeightPrecision,
    pub labelled_states: usize,
    pub final_loss: f64,
    pub teacher: Evaluation,
    pub student: Evaluation,
    pub student_path: PathBuf,
}

pub fn run(args: &DistillArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=4).contains(&args.steps),
        "--steps must be 1 to 4, not {}",
        args.steps
    );
    ensure!(
        args.teacher_episodes > 0 && args.eval_episodes > 0,
        "--teacher-episodes and --eval-episodes must be at least 1"
    );
    ensure!(
        args.train_steps > 0 && args.batch_size > 0 && args.max_episode_steps > 0,
        "--train-steps, --batch-size and --max-episode-steps must be at least 1"
    );
    ensure!(
        args.learning_rate.is_finite() && args.learning_rate > 0.0,
        "--learning-rate must be a positive number"
    );
    let teacher = export::teacher(&args.run)?;
    with_compute_threads(teacher.config.compute_threads, || distill(args, &teacher))
}

/// Labelled states: observations (raw, f32) and the teacher's normalised actions.
#[derive(Default)]
struct DataSet {
    obs: Vec<f32>,
    actions: Vec<f32>,
}

fn distill(args: &DistillArgs, teacher: &Teacher) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let task = teacher.info.env.clone();
    let assets = sdac_sim::Assets::discover()?;
    let teacher_meta = teacher.policy.metadata().clone();
    let od = teacher_meta.obs_dim;
    let mut noise = NoiseSource::new(args.seed ^ 0xD157_11ED, &device);
    let mut student = Student::new(args, teacher)?;

    // 1. Teacher rollouts: states with the teacher's own actions as labels.
    let mut data = DataSet::default();
    let data_seed = args.seed.wrapping_mul(0x9E37_79B9).wrapping_add(0xDA7A);
    collect(
        args,
        &task,
        &assets,
        data_seed,
        args.teacher_episodes,
        &mut data,
        &mut |obs| act_normalized(&teacher.policy, obs, &mut noise),
    )?;
    eprintln!("{} teacher states", data.obs.len() / od);

    // 2. and 3. Train; then DAgger: states the student visits, labelled by the teacher.
    let mut loss = f64::NAN;
    for iteration in 0..=args.iterations {
        let first_new = data.obs.len();
        if iteration > 0 {
            let mut visited = DataSet::default();
            let current = student.policy()?;
            collect(
                args,
                &task,
                &assets,
                data_seed.wrapping_add(iteration as u64),
                args.dagger_episodes,
                &mut visited,
                &mut |obs| act_normalized(&current, obs, &mut noise),
            )?;
            label(&teacher.policy, &mut visited, &mut noise)?;
            data.obs.extend(visited.obs);
            data.actions.extend(visited.actions);
        }
        loss = student.train_round(args, &teacher.policy, &data, &mut noise)?;
        eprintln!(
            "round {iteration}: +{} student states, loss {loss:.5}",
            (data.obs.len() - first_new) / od
        );
    }

    // The student artifact, then both policies on the same evaluation episodes.
    let student = match args.weights {
        WeightPrecision::F32 => student.policy()?,
        WeightPrecision::F16 => student
            .policy()?
            .with_half_precision_weights()
            .context("rounding the student's weights to half precision")?,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| export::student_path(&args.run, args.steps));
    sdac_models::write_policy(&out, &student)
        .with_context(|| format!("writing the student to {}", out.display()))?;
    let mut eval_noise = NoiseSource::new(args.eval_seed, &device);
    let teacher_eval = evaluate(args, &task, &assets, &teacher.policy, &mut eval_noise)?;
    let mut eval_noise = NoiseSource::new(args.eval_seed, &device);
    let student_eval = evaluate(args, &task, &assets, &student, &mut eval_noise)?;

    println!(
        "{task}: {}-step student from the {}-step best-of-{} teacher ({} labelled states, init {:?}, weights {:?}) -> {}\n",
        args.steps,
        teacher_meta.sampler.timesteps.len(),
        teacher_meta.sampler.candidates,
        data.obs.len() / od,
        args.init,
        args.weights,
        out.display()
    );
    println!("| policy | mean return | min | max | us/action (candle, 1 thread) |");
    println!("|---|---|---|---|---|");
    for (name, e) in [("teacher", &teacher_eval), ("student", &student_eval)] {
        let min = e.returns.iter().copied().fold(f64::INFINITY, f64::min);
        let max = e.returns.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "| {name} | {:.2} | {min:.2} | {max:.2} | {:.1} |",
            e.mean_return, e.us_per_action
        );
    }
    println!(
        "\nstudent / teacher return: {:.1}% over {} episodes (seed {})",
        100.0 * student_eval.mean_return / teacher_eval.mean_return,
        args.eval_episodes,
        args.eval_seed
    );
    if let Some(path) = &args.report {
        let report = Report {
            task,
            student_steps: args.steps,
            init: args.init,
            weights: args.weights,
            labelled_states: data.obs.len() / od,
            final_loss: loss,
            teacher: teacher_eval,
            student: student_eval,
            student_path: out,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The student being trained: its metadata, network, sampler and optimiser.
struct Student {
    metadata: Metadata,
    vars: VarMap,
    net: NoiseNet,
    sampler: DdimSampler,
    optimizer: Adam,
}

impl Student {
    /// A `--steps`-step student of `teacher`, initialised as `--init` says.
    fn new(args: &DistillArgs, teacher: &Teacher) -> anyhow::Result<Self> {
        let t = teacher.policy.metadata();
        let Some(timesteps) = student_timesteps(t.sampler.schedule_steps, args.steps) else {
            bail!(
                "the teacher's schedule has {} steps: a {}-step student does not fit",
                t.sampler.schedule_steps,
                args.steps
            );
        };
        let metadata = student_metadata(args, teacher, timesteps)?;
        let vars = VarMap::new();
        let net = NoiseNet::new(
            &seeded_var_builder(&vars, args.seed, &Device::Cpu).pp(NETWORK_PREFIX),
            t.obs_dim,
            t.act_dim,
            &t.network.hidden,
        )?;
        if args.init == StudentInit::Teacher {
            // The variables' names are the artifact's (`policy.*`), the teacher's network's too.
            for (name, var) in sorted_vars(&vars) {
                let source = teacher
                    .policy
                    .tensors()
                    .get(&name)
                    .with_context(|| format!("the teacher has no tensor {name}"))?;
                var.set(source)?;
            }
        }
        let s = &metadata.sampler;
        let sampler = DdimSampler::new(teacher.policy.schedule(), &s.timesteps, s.init_noise_std);
        let optimizer = Adam::new(sorted_vars(&vars), args.learning_rate)?;
        Ok(Self {
            metadata,
            vars,
            net,
            sampler,
            optimizer,
        })
    }

    /// The student as it is now, as a policy (what the artifact holds).
    fn policy(&self) -> anyhow::Result<CandlePolicy> {
        let tensors = sorted_vars(&self.vars)
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()));
        Ok(CandlePolicy::new(
            self.metadata.clone(),
            tensors,
            &Device::Cpu,
        )?)
    }

    /// `--train-steps` Adam steps on minibatches of `data` (observations normalised as the
    /// teacher's, which the student shares); returns the mean loss of the last tenth.
    fn train_round(
        &mut self,
        args: &DistillArgs,
        teacher: &CandlePolicy,
        data: &DataSet,
        noise: &mut NoiseSource,
    ) -> anyhow::Result<f64> {
        use rand::Rng as _;
        let (od, ad) = (self.metadata.obs_dim, self.metadata.act_dim);
        let rows = data.obs.len() / od;
        let all_obs =
            teacher.normalize_obs(&Tensor::from_slice(&data.obs, (rows, od), &Device::Cpu)?)?;
        let all_actions = Tensor::from_slice(&data.actions, (rows, ad), &Device::Cpu)?;
        let tail = (args.train_steps / 10).max(1);
        let mut tail_loss = 0.0;
        for step in 0..args.train_steps {
            let picks: Vec<u32> = (0..args.batch_size)
                .map(|_| noise.rng().random_range(0..rows as u32))
                .collect();
            let picks = Tensor::from_vec(picks, args.batch_size, &Device::Cpu)?;
            let obs = all_obs.index_select(&picks, 0)?;
            let target = all_actions.index_select(&picks, 0)?;
            let z = noise.normal((args.batch_size, ad), 1.0)?;
            let prediction = self.sampler.last_prediction(&self.net, &obs, &z)?;
            let loss = (prediction - target)?.sqr()?.mean_all()?;
            self.optimizer.backward_step(&loss)?;
            if step + tail >= args.train_steps {
                tail_loss += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?);
            }
        }
        Ok(tail_loss / tail as f64)
    }
}

/// The student's metadata: the teacher's, with the DDIM sampler over `timesteps`.
fn student_metadata(
    args: &DistillArgs,
    teacher: &Teacher,
    timesteps: Vec<usize>,
) -> anyhow::Result<Metadata> {
    let t = teacher.policy.metadata();
    let sampler = Sampler {
        kind: SamplerKind::DdimSample,
        timesteps,
        candidates: 1,
        ..t.sampler.clone()
    };
    Ok(Metadata {
        n_noise: sampler.noise_vectors(),
        sampler,
        provenance: export::provenance(
            &args.run,
            &teacher.info,
            "sdac-distilled",
            Some(args.steps),
        )?,
        ..t.clone()
    })
}

/// One normalised action of `policy` for one observation, with fresh noise.
fn act_normalized(
    policy: &CandlePolicy,
    obs: &[f64],
    noise: &mut NoiseSource,
) -> anyhow::Result<Vec<f32>> {
    let m = policy.metadata();
    let obs: Vec<f32> = obs.iter().map(|&o| o as f32).collect();
    let obs = Tensor::from_vec(obs, (1, m.obs_dim), &Device::Cpu)?;
    let z = noise.normal((1, m.n_noise, m.act_dim), 1.0)?;
    Ok(policy.act_normalized(&obs, &z)?.flatten_all()?.to_vec1()?)
}

/// Runs `episodes` episodes (each cut after `--max-episode-steps`) with `act`, recording every
/// observation and the action taken into `data`.
fn collect(
    args: &DistillArgs,
    task: &str,
    assets: &sdac_sim::Assets,
    seed: u64,
    episodes: usize,
    data: &mut DataSet,
    act: &mut dyn FnMut(&[f64]) -> anyhow::Result<Vec<f32>>,
) -> anyhow::Result<()> {
    for episode in 0..episodes {
        let mut steps = 0;
        run_episodes(
            task,
            assets,
            1,
            seed.wrapping_add(episode as u64),
            &mut |obs| {
                steps += 1;
                if steps > args.max_episode_steps {
                    bail!(EpisodeCut);
                }
                let action = act(obs)?;
                data.obs.extend(obs.iter().map(|&o| o as f32));
                data.actions.extend_from_slice(&action);
                Ok(action)
            },
        )
        .map(|_| ())
        .or_else(|e| if e.is::<EpisodeCut>() { Ok(()) } else { Err(e) })?;
    }
    Ok(())
}

/// Ends a data episode early (not an error to the caller of [`collect`]).
#[derive(Debug, thiserror::Error)]
#[error("episode cut at --max-episode-steps")]
struct EpisodeCut;

/// Replaces the actions of `data` by the teacher's, in batches.
fn label(
    teacher: &CandlePolicy,
    data: &mut DataSet,
    noise: &mut NoiseSource,
) -> anyhow::Result<()> {
    let m = teacher.metadata();
    let rows = data.obs.len() / m.obs_dim;
    let obs = Tensor::from_slice(&data.obs, (rows, m.obs_dim), &Device::Cpu)?;
    let z = noise.normal((rows, m.n_noise, m.act_dim), 1.0)?;
    data.actions = teacher.act_normalized(&obs, &z)?.flatten_all()?.to_vec1()?;
    Ok(())
}

/// The returns of `policy` on the evaluation episodes, and its mean time per action.
fn evaluate(
    args: &DistillArgs,
    task: &str,
    assets: &sdac_sim::Assets,
    policy: &CandlePolicy,
    noise: &mut NoiseSource,
) -> anyhow::Result<Evaluation> {
    let (mut acting, mut actions) = (Duration::ZERO, 0u32);
    let returns = run_episodes(
        task,
        assets,
        args.eval_episodes,
        args.eval_seed,
        &mut |obs| {
            let started = Instant::now();
            let action = act_normalized(policy, obs, noise);
            acting += started.elapsed();
            actions += 1;
            action
        },
    )?;
    Ok(Evaluation {
        mean_return: returns.iter().sum::<f64>() / returns.len() as f64,
        returns,
        us_per_action: acting.as_secs_f64() * 1e6 / f64::from(actions.max(1)),
    })
}
