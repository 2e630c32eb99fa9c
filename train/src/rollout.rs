//! `sdac rollout`: episodes of a task under a fixed policy, for a first look at a task.

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args)]
pub struct RolloutArgs {
    /// Gymnasium id of the task, e.g. Hopper-v5.
    #[arg(long, default_value = "InvertedPendulum-v5")]
    env: String,
    /// Which policy acts.
    #[arg(long, value_enum, default_value_t = FixedPolicy::Random)]
    policy: FixedPolicy,
    /// Number of episodes.
    #[arg(long, default_value_t = 5)]
    episodes: u32,
    /// Seed of the task's reset noise and of the random policy.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FixedPolicy {
    /// Uniform over the action bounds.
    Random,
    /// All-zero actions.
    Zero,
}

pub fn run(args: &RolloutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.episodes > 0, "--episodes must be at least 1");
    let assets = sdac_sim::Assets::discover()?;
    let mut env = sdac_sim::make_env(&args.env, &assets)?;
    let spec = env.spec().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut obs = vec![0.0; spec.obs_dim];
    let mut action = vec![0.0; spec.action_dim()];
    let mut returns = Vec::new();
    for episode in 0..args.episodes {
        env.reset(Some(args.seed + u64::from(episode)), &mut obs)?;
        let (mut episode_return, mut length) = (0.0, 0u32);
        loop {
            if let FixedPolicy::Random = args.policy {
                for (a, (lo, hi)) in action
                    .iter_mut()
                    .zip(spec.action_low.iter().zip(&spec.action_high))
                {
                    *a = rng.random_range(*lo..=*hi);
                }
            }
            let outcome = env
                .step(&action, &mut obs)
                .with_context(|| format!("stepping {}", spec.name))?;
            episode_return += outcome.reward;
            length += 1;
            if outcome.terminated || outcome.truncated {
                let end = if outcome.terminated {
                    "terminated"
                } else {
                    "truncated"
                };
                println!(
                    "episode {episode}: return {episode_return:10.3}  length {length:5}  ({end})"
                );
                break;
            }
        }
        returns.push(episode_return);
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
    let policy = match args.policy {
        FixedPolicy::Random => "random",
        FixedPolicy::Zero => "zero",
    };
    println!(
        "{} with the {policy} policy: mean return {mean:.3} +- {std:.3} over {} episodes",
        spec.name, args.episodes
    );
    Ok(())
}
