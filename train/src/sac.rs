//! Soft Actor-Critic (Haarnoja et al. 2018) with automatic temperature, as CleanRL's
//! `sac_continuous_action.py` runs it, on the same networks and harness as SDAC:
//!
//! 1. Critic: `y = r + gamma (1 - terminated) (min Qbar(s', a') - alpha log pi(a'|s'))`, MSE.
//! 2. Actor, every `policy_frequency` steps (then that many actor steps, to keep the ratio):
//!    minimise `alpha log pi(a|s) - min Q(s, a)` with reparameterised `a`; after each actor
//!    step, temperature: minimise `-alpha (log pi + H*)` in `log alpha`.
//! 3. Targets: Polyak every `target_frequency` steps.

use std::path::Path;

use anyhow::Context as _;
use sdac_models::candle::{Device, Tensor};
use sdac_models::candle_nn::VarMap;
use sdac_models::{
    Adam, GaussianActor, NoiseSource, ScalarAdam, TensorMap, TwinCritic, copy_params, export_vars,
    import_vars, polyak_update, seeded_var_builder, sorted_vars,
};
use sdac_sim::RngState;

use crate::config::{Config, SacConfig};
use crate::replay_buffer::Batch;
use crate::trainer::{Agent, AgentState, Metrics};

pub struct Sac {
    config: SacConfig,
    gamma: f64,
    tau: f64,
    obs_dim: usize,
    act_dim: usize,
    device: Device,
    actor_vars: VarMap,
    actor: GaussianActor,
    critic_vars: VarMap,
    critic: TwinCritic,
    target_critic_vars: VarMap,
    target_critic: TwinCritic,
    actor_optimizer: Adam,
    critic_optimizer: Adam,
    log_alpha: ScalarAdam,
    target_entropy: f64,
    noise: NoiseSource,
    gradient_steps: u64,
}

impl Sac {
    pub fn new(
        config: &Config,
        obs_dim: usize,
        act_dim: usize,
        seed: u64,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let hidden = &config.hidden;
        let actor_vars = VarMap::new();
        let actor = GaussianActor::new(
            &seeded_var_builder(&actor_vars, seed, device).pp("actor"),
            obs_dim,
            act_dim,
            hidden,
        )?;
        let critic_vars = VarMap::new();
        let critic_vb = seeded_var_builder(&critic_vars, seed.wrapping_add(1), device);
        let critic = TwinCritic::new(&critic_vb.pp("critic"), obs_dim, act_dim, hidden)?;
        let target_critic_vars = VarMap::new();
        let target_vb = seeded_var_builder(&target_critic_vars, seed.wrapping_add(1), device);
        let target_critic = TwinCritic::new(&target_vb.pp("critic"), obs_dim, act_dim, hidden)?;
        copy_params(&target_critic_vars, &critic_vars)?;
        Ok(Self {
            config: config.sac.clone(),
            gamma: config.gamma,
            tau: config.tau,
            obs_dim,
            act_dim,
            device: device.clone(),
            actor_optimizer: Adam::new(sorted_vars(&actor_vars), config.policy_lr)?,
            critic_optimizer: Adam::new(sorted_vars(&critic_vars), config.critic_lr)?,
            log_alpha: ScalarAdam::new(config.sac.alpha_init.ln(), config.sac.alpha_lr),
            target_entropy: config.sac.target_entropy_per_dim * act_dim as f64,
            noise: NoiseSource::new(seed.wrapping_add(2), device),
            actor_vars,
            actor,
            critic_vars,
            critic,
            target_critic_vars,
            target_critic,
            gradient_steps: 0,
        })
    }

    fn alpha(&self) -> f64 {
        self.log_alpha.value.exp()
    }
}

impl Agent for Sac {
    fn name(&self) -> &'static str {
        "sac"
    }

    fn act(&mut self, obs: &[f64], rows: usize, explore: bool) -> anyhow::Result<Vec<f32>> {
        let obs: Vec<f32> = obs.iter().map(|&o| o as f32).collect();
        let obs = Tensor::from_vec(obs, (rows, self.obs_dim), &self.device)?;
        let actions = if explore {
            self.actor.sample(&obs, &mut self.noise)?.0
        } else {
            self.actor.mode(&obs)?
        };
        Ok(actions.flatten_all()?.to_vec1()?)
    }

    fn update(&mut self, batch: &Batch) -> anyhow::Result<Metrics> {
        let (b, od, ad) = (batch.len, self.obs_dim, self.act_dim);
        let obs = Tensor::from_slice(&batch.obs, (b, od), &self.device)?;
        let actions = Tensor::from_slice(&batch.actions, (b, ad), &self.device)?;
        let next_obs = Tensor::from_slice(&batch.next_obs, (b, od), &self.device)?;
        let rewards = Tensor::from_slice(&batch.rewards, b, &self.device)?;
        let not_terminated = (1.0 - Tensor::from_slice(&batch.terminated, b, &self.device)?)?;
        let mut metrics = Metrics::new();

        let (next_actions, next_log_prob) = self.actor.sample(&next_obs, &mut self.noise)?;
        let soft_next_q = (self.target_critic.min_q(&next_obs, &next_actions)?
            - (next_log_prob * self.alpha())?)?;
        let target = (rewards + (not_terminated * soft_next_q)?.affine(self.gamma, 0.0)?)?.detach();
        let (q1, q2) = self.critic.forward(&obs, &actions)?;
        let q1_loss = (&q1 - &target)?.sqr()?.mean_all()?;
        let q2_loss = (&q2 - &target)?.sqr()?.mean_all()?;
        self.critic_optimizer
            .backward_step(&(&q1_loss + &q2_loss)?)?;
        metrics.push(("losses/qf1_loss", f64::from(q1_loss.to_scalar::<f32>()?)));
        metrics.push(("losses/qf2_loss", f64::from(q2_loss.to_scalar::<f32>()?)));
        metrics.push((
            "losses/qf1_values",
            f64::from(q1.mean_all()?.to_scalar::<f32>()?),
        ));

        if self
            .gradient_steps
            .is_multiple_of(self.config.policy_frequency)
        {
            for _ in 0..self.config.policy_frequency {
                let (new_actions, log_prob) = self.actor.sample(&obs, &mut self.noise)?;
                let q = self.critic.min_q(&obs, &new_actions)?;
                let actor_loss = ((&log_prob * self.alpha())? - q)?.mean_all()?;
                self.actor_optimizer.backward_step(&actor_loss)?;
                // d/d(log alpha) of -alpha (log pi + H*) = -alpha mean(log pi + H*).
                let mean_log_prob = f64::from(log_prob.mean_all()?.to_scalar::<f32>()?);
                self.log_alpha
                    .step(-self.alpha() * (mean_log_prob + self.target_entropy));
                metrics.push((
                    "losses/actor_loss",
                    f64::from(actor_loss.to_scalar::<f32>()?),
                ));
            }
        }
        if self
            .gradient_steps
            .is_multiple_of(self.config.target_frequency)
        {
            polyak_update(&self.target_critic_vars, &self.critic_vars, self.tau)?;
        }
        self.gradient_steps += 1;
        metrics.push(("losses/alpha", self.alpha()));
        Ok(metrics)
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        self.actor_vars.save(path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        self.actor_vars.load(path)?;
        Ok(())
    }

    fn save_state(&self) -> anyhow::Result<AgentState> {
        let mut tensors = TensorMap::new();
        export_vars(&self.actor_vars, "actor", &mut tensors);
        export_vars(&self.critic_vars, "critic", &mut tensors);
        export_vars(&self.target_critic_vars, "target", &mut tensors);
        self.actor_optimizer
            .export_state("actor_adam", &mut tensors);
        self.critic_optimizer
            .export_state("critic_adam", &mut tensors);
        let scalars = SacScalars {
            gradient_steps: self.gradient_steps,
            actor_adam_steps: self.actor_optimizer.steps(),
            critic_adam_steps: self.critic_optimizer.steps(),
            log_alpha: self.log_alpha.clone(),
            noise: RngState::of(self.noise.current_rng()),
        };
        Ok(AgentState {
            tensors,
            scalars: serde_json::to_value(scalars)?,
        })
    }

    fn load_state(&mut self, state: &AgentState) -> anyhow::Result<()> {
        let scalars: SacScalars = serde_json::from_value(state.scalars.clone())
            .context("the checkpoint's SAC scalars")?;
        let tensors = &state.tensors;
        import_vars(&self.actor_vars, "actor", tensors)?;
        import_vars(&self.critic_vars, "critic", tensors)?;
        import_vars(&self.target_critic_vars, "target", tensors)?;
        self.actor_optimizer
            .import_state("actor_adam", tensors, scalars.actor_adam_steps)?;
        self.critic_optimizer
            .import_state("critic_adam", tensors, scalars.critic_adam_steps)?;
        self.log_alpha = scalars.log_alpha;
        self.noise.set_rng(scalars.noise.to_rng());
        self.gradient_steps = scalars.gradient_steps;
        Ok(())
    }
}

/// The scalar part of SAC's training state.
#[derive(serde::Serialize, serde::Deserialize)]
struct SacScalars {
    gradient_steps: u64,
    actor_adam_steps: u64,
    critic_adam_steps: u64,
    log_alpha: ScalarAdam,
    noise: RngState,
}
