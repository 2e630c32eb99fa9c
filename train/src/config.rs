//! The configuration of a training run: one struct, every field documented, loaded from a preset
//! (`train/presets/*.toml`, compiled in) with `key=value` overrides, and written back into the
//! run directory as `config.toml`.

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The presets shipped with the binary.
pub const PRESETS: [(&str, &str); 3] = [
    ("reference", include_str!("../presets/reference.toml")),
    ("cpu-small", include_str!("../presets/cpu-small.toml")),
    ("ci", include_str!("../presets/ci.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Sdac,
    Sac,
}

/// Everything a run depends on besides the task and the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Environments stepped together; one environment step of the run is one step of one env.
    pub num_envs: usize,
    /// Threads that step the environments (the calling thread included).
    pub env_threads: usize,
    /// Threads for the networks' CPU kernels. Small networks run fastest on one: handing a
    /// small matrix product to a second thread costs more than it saves.
    pub compute_threads: usize,
    /// Environment steps of the whole run, all environments counted.
    pub total_steps: u64,
    /// Environment steps taken with uniform random actions before any update.
    pub warmup_steps: u64,
    /// Environment steps per gradient update (5 in the reference: 5 envs, one update a round).
    pub env_steps_per_update: u64,
    /// Transitions per gradient update.
    pub batch_size: usize,
    /// Capacity of the replay buffer, in transitions.
    pub buffer_size: usize,
    /// Discount factor.
    pub gamma: f64,
    /// Polyak rate of the target critics (and, for SDAC, of the EMA policy).
    pub tau: f64,
    /// Widths of the hidden layers of every network.
    pub hidden: Vec<usize>,
    /// Adam learning rate of the critics.
    pub critic_lr: f64,
    /// Adam learning rate of the policy (initial value for SDAC, which decays it).
    pub policy_lr: f64,
    /// Environment steps between evaluations.
    pub eval_every: u64,
    /// Environment steps between checkpoints (0: none). The final policy is saved either way.
    pub checkpoint_every: u64,
    /// Episodes per evaluation (on separate environments, seeds disjoint from training).
    pub eval_episodes: usize,
    /// SDAC's own settings.
    pub sdac: SdacConfig,
    /// SAC's own settings.
    pub sac: SacConfig,
}

/// Settings only SDAC reads (see `SDAC_SPEC.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdacConfig {
    /// Rewards are multiplied by this before they enter the critic target.
    pub reward_scale: f64,
    /// Diffusion steps T of the sampler and the loss.
    pub diffusion_steps: usize,
    /// Standard deviation of the sampler's starting noise.
    pub init_noise_std: f64,
    /// Candidate actions per state; the one with the highest min(Q1, Q2) is taken.
    pub candidates: usize,
    /// Reverse samples K per state in the reweighted score-matching loss.
    pub reverse_samples: usize,
    /// Q values are multiplied by `weight_scale / alpha` inside the softmax of the loss weights.
    pub weight_scale: f64,
    /// Gradient steps per policy update, target-critic update and EMA-policy update.
    pub policy_delay: u64,
    /// Final policy learning rate of the linear decay.
    pub policy_lr_end: f64,
    /// Policy update at which the decay begins.
    pub policy_lr_decay_begin: u64,
    /// Policy update at which the decay ends.
    pub policy_lr_decay_end: u64,
    /// Initial temperature alpha.
    pub alpha_init: f64,
    /// Adam learning rate of log alpha.
    pub alpha_lr: f64,
    /// Gradient steps between alpha updates.
    pub alpha_every: u64,
    /// Exploration noise std is this times alpha (normalised action units).
    pub exploration_noise: f64,
    /// Target entropy per action dimension (H* = this x act_dim).
    pub target_entropy_per_dim: f64,
}

/// Settings only SAC reads (CleanRL's defaults in the reference preset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SacConfig {
    /// Gradient steps between policy updates; each time, the policy takes this many steps.
    pub policy_frequency: u64,
    /// Gradient steps between target-critic updates.
    pub target_frequency: u64,
    /// Adam learning rate of log alpha.
    pub alpha_lr: f64,
    /// Initial temperature alpha.
    pub alpha_init: f64,
    /// Target entropy is this times act_dim.
    pub target_entropy_per_dim: f64,
}

/// A preset by name, with `key=value` overrides (dotted keys for sections: `sdac.candidates=8`;
/// values in TOML syntax, strings may be bare).
pub fn resolve(preset: &str, overrides: &[String]) -> anyhow::Result<Config> {
    let Some((_, text)) = PRESETS.iter().find(|(name, _)| *name == preset) else {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        bail!("unknown preset `{preset}`; presets: {}", names.join(", "));
    };
    let mut table: toml::Table =
        toml::from_str(text).with_context(|| format!("preset `{preset}` does not parse"))?;
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    let config: Config = toml::Value::Table(table)
        .try_into()
        .with_context(|| format!("preset `{preset}` with overrides {overrides:?}"))?;
    config.validate()?;
    Ok(config)
}

/// Reads a resolved config back from a run directory's `config.toml`.
pub fn from_toml(text: &str) -> anyhow::Result<Config> {
    let config: Config = toml::from_str(text)?;
    config.validate()?;
    Ok(config)
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> anyhow::Result<()> {
    let Some((key, raw_value)) = assignment.split_once('=') else {
        bail!("override `{assignment}` is not key=value");
    };
    let (key, raw_value) = (key.trim(), raw_value.trim());
    let value = toml::from_str::<toml::Table>(&format!("v = {raw_value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw_value.to_owned()));
    let mut path: Vec<&str> = key.split('.').collect();
    let Some(leaf) = path.pop() else {
        bail!("override `{assignment}` has an empty key")
    };
    let mut current = table;
    for section in path {
        current = match current.get_mut(section) {
            Some(toml::Value::Table(inner)) => inner,
            _ => bail!("unknown config section `{section}` in override `{assignment}`"),
        };
    }
    match current.get(leaf) {
        Some(old) if old.type_str() == value.type_str() => {}
        Some(toml::Value::Float(_)) if matches!(value, toml::Value::Integer(_)) => {}
        Some(old) => bail!(
            "override `{assignment}`: `{key}` takes a {}, not a {}",
            old.type_str(),
            value.type_str()
        ),
        None => bail!("unknown config field `{key}` in override `{assignment}`"),
    }
    let value = match (current.get(leaf), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, value) => value,
    };
    current.insert(leaf.to_owned(), value);
    Ok(())
}

impl Config {
    /// Rejects values no run can use, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive: [(&str, u64); 10] = [
            ("num_envs", self.num_envs as u64),
            ("env_threads", self.env_threads as u64),
            ("compute_threads", self.compute_threads as u64),
            ("total_steps", self.total_steps),
            ("env_steps_per_update", self.env_steps_per_update),
            ("batch_size", self.batch_size as u64),
            ("buffer_size", self.buffer_size as u64),
            ("eval_every", self.eval_every),
            ("eval_episodes", self.eval_episodes as u64),
            ("sdac.diffusion_steps", self.sdac.diffusion_steps as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("config field `{name}` must be at least 1");
            }
        }
        for (name, value) in [
            ("sdac.candidates", self.sdac.candidates as u64),
            ("sdac.reverse_samples", self.sdac.reverse_samples as u64),
            ("sdac.policy_delay", self.sdac.policy_delay),
            ("sdac.alpha_every", self.sdac.alpha_every),
            ("sac.policy_frequency", self.sac.policy_frequency),
            ("sac.target_frequency", self.sac.target_frequency),
        ] {
            if value == 0 {
                bail!("config field `{name}` must be at least 1");
            }
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            bail!("config field `hidden` needs at least one layer, each at least 1 wide");
        }
        for (name, value) in [("gamma", self.gamma), ("tau", self.tau)] {
            if !(0.0..=1.0).contains(&value) {
                bail!("config field `{name}` must be in [0, 1], not {value}");
            }
        }
        for (name, value) in [
            ("critic_lr", self.critic_lr),
            ("policy_lr", self.policy_lr),
            ("sdac.policy_lr_end", self.sdac.policy_lr_end),
            ("sdac.alpha_init", self.sdac.alpha_init),
            ("sdac.alpha_lr", self.sdac.alpha_lr),
            ("sdac.init_noise_std", self.sdac.init_noise_std),
            ("sdac.reward_scale", self.sdac.reward_scale),
            ("sdac.weight_scale", self.sdac.weight_scale),
            ("sac.alpha_lr", self.sac.alpha_lr),
            ("sac.alpha_init", self.sac.alpha_init),
        ] {
            if !(value.is_finite() && value > 0.0) {
                bail!("config field `{name}` must be a positive number, not {value}");
            }
        }
        if self.buffer_size < self.batch_size {
            bail!(
                "buffer_size ({}) is smaller than batch_size ({})",
                self.buffer_size,
                self.batch_size
            );
        }
        if self.sdac.policy_lr_decay_end < self.sdac.policy_lr_decay_begin {
            bail!("sdac.policy_lr_decay_end comes before sdac.policy_lr_decay_begin");
        }
        Ok(())
    }

    /// This config as TOML (what `config.toml` of a run directory holds).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_resolves_and_round_trips() {
        for (name, _) in PRESETS {
            let config = resolve(name, &[]).unwrap();
            assert_eq!(
                from_toml(&config.to_toml().unwrap()).unwrap(),
                config,
                "{name}"
            );
        }
    }

    #[test]
    fn reference_preset_has_the_spec_values() {
        let c = resolve("reference", &[]).unwrap();
        assert_eq!(
            (c.num_envs, c.warmup_steps, c.total_steps),
            (5, 30_000, 1_000_000)
        );
        assert_eq!(
            (c.env_steps_per_update, c.batch_size, c.hidden.clone()),
            (5, 256, vec![256; 3])
        );
        assert_eq!(
            (
                c.sdac.candidates,
                c.sdac.reverse_samples,
                c.sdac.diffusion_steps
            ),
            (32, 64, 20)
        );
        assert_eq!((c.sdac.reward_scale, c.sdac.policy_lr_end), (0.2, 3e-5));
    }

    #[test]
    fn overrides_change_fields_and_unknown_ones_are_named() {
        let c = resolve(
            "ci",
            &[
                "sdac.candidates=3".into(),
                "gamma=0.9".into(),
                "critic_lr=1".into(),
            ],
        )
        .unwrap();
        assert_eq!((c.sdac.candidates, c.gamma, c.critic_lr), (3, 0.9, 1.0));
        let err = resolve("ci", &["sdac.candidatez=3".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown config field `sdac.candidatez`"),
            "{err}"
        );
        let err = resolve("ci", &["nope.x=3".into()]).unwrap_err().to_string();
        assert!(err.contains("unknown config section `nope`"), "{err}");
        let err = resolve("ci", &["batch_size=many".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes a integer"), "{err}");
        let err = resolve("nightly", &[]).unwrap_err().to_string();
        assert!(
            err.contains("unknown preset `nightly`") && err.contains("cpu-small"),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_are_named() {
        for (assignment, field) in [
            ("batch_size=0", "batch_size"),
            ("total_steps=0", "total_steps"),
            ("gamma=1.5", "gamma"),
            ("critic_lr=-1.0", "critic_lr"),
            ("hidden=[]", "hidden"),
        ] {
            let err = resolve("ci", &[assignment.into()]).unwrap_err().to_string();
            assert!(err.contains(field), "{assignment}: {err}");
        }
        let err = resolve("ci", &["batch_size=-4".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("batch_size"), "{err:#}");
    }
}
