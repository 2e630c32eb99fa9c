//! Soft Diffusion Actor-Critic (Ma et al., arXiv 2502.00361), as `SDAC_SPEC.md` describes the
//! authors' code. Read top to bottom:
//!
//! 1. Networks: a noise-prediction policy `eps_theta(s, a_t, t)` with an EMA copy that acts and
//!    is evaluated, twin critics with Polyak targets.
//! 2. Acting: best-of-N reverse-diffusion samples scored by min(Q1, Q2), plus Gaussian
//!    exploration noise of std `0.1 alpha`.
//! 3. Critic update: `y = 0.2 r + gamma (1 - terminated) min(Qbar)(s', a')`, `a'` from the online
//!    policy; no entropy term.
//! 4. Policy update (reweighted score matching, every 2nd step): noise the policy's own action
//!    to a random step `t`, draw K reverse samples of the forward kernel, weight them by
//!    `softmax(weight_scale * min Q / alpha)`, and regress `eps_theta` on the weighted noise.
//!    No backpropagation through the sampling chain.
//! 5. Targets and EMA policy: Polyak, every 2nd step. Temperature: the reference's data-free
//!    schedule, an Adam step on `log alpha` every 250 steps.

use std::path::Path;

use anyhow::Context as _;
use candle_core::{D, Device, Tensor};
use candle_nn::VarMap;
use sdac_models::candle as candle_core;
use sdac_models::candle_nn;
use sdac_models::{
    Adam, DiffusionSampler, DiffusionSchedule, NoiseNet, NoiseSource, ScalarAdam, TensorMap,
    TwinCritic, copy_params, export_vars, import_vars, polyak_update, seeded_var_builder,
    sorted_vars,
};
use sdac_sim::RngState;

use crate::config::{Config, SdacConfig};
use crate::replay_buffer::Batch;
use crate::trainer::{Agent, AgentState, Metrics};

pub struct Sdac {
    config: SdacConfig,
    gamma: f64,
    tau: f64,
    obs_dim: usize,
    act_dim: usize,
    device: Device,
    policy_vars: VarMap,
    policy: NoiseNet,
    /// The EMA policy: acts in the environment and is evaluated.
    ema_vars: VarMap,
    ema_policy: NoiseNet,
    critic_vars: VarMap,
    critic: TwinCritic,
    target_critic_vars: VarMap,
    target_critic: TwinCritic,
    sampler: DiffusionSampler,
    critic_optimizer: Adam,
    policy_optimizer: Adam,
    initial_policy_lr: f64,
    log_alpha: ScalarAdam,
    noise: NoiseSource,
    gradient_steps: u64,
    policy_updates: u64,
}

impl Sdac {
    pub fn new(
        config: &Config,
        obs_dim: usize,
        act_dim: usize,
        seed: u64,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let hidden = &config.hidden;
        let policy_vars = VarMap::new();
        let policy = NoiseNet::new(
            &seeded_var_builder(&policy_vars, seed, device).pp("policy"),
            obs_dim,
            act_dim,
            hidden,
        )?;
        let ema_vars = VarMap::new();
        let ema_policy = NoiseNet::new(
            &seeded_var_builder(&ema_vars, seed, device).pp("policy"),
            obs_dim,
            act_dim,
            hidden,
        )?;
        copy_params(&ema_vars, &policy_vars)?;
        let critic_vars = VarMap::new();
        let critic = TwinCritic::new(
            &seeded_var_builder(&critic_vars, seed.wrapping_add(1), device).pp("critic"),
            obs_dim,
            act_dim,
            hidden,
        )?;
        let target_critic_vars = VarMap::new();
        let target_critic = TwinCritic::new(
            &seeded_var_builder(&target_critic_vars, seed.wrapping_add(1), device).pp("critic"),
            obs_dim,
            act_dim,
            hidden,
        )?;
        copy_params(&target_critic_vars, &critic_vars)?;
        let sdac = &config.sdac;
        Ok(Self {
            config: sdac.clone(),
            gamma: config.gamma,
            tau: config.tau,
            obs_dim,
            act_dim,
            device: device.clone(),
            sampler: DiffusionSampler::new(
                DiffusionSchedule::sdac(sdac.diffusion_steps),
                sdac.init_noise_std,
            ),
            critic_optimizer: Adam::new(sorted_vars(&critic_vars), config.critic_lr)?,
            policy_optimizer: Adam::new(sorted_vars(&policy_vars), config.policy_lr)?,
            initial_policy_lr: config.policy_lr,
            log_alpha: ScalarAdam::new(sdac.alpha_init.ln(), sdac.alpha_lr),
            noise: NoiseSource::new(seed.wrapping_add(2), device),
            policy_vars,
            policy,
            ema_vars,
            ema_policy,
            critic_vars,
            critic,
            target_critic_vars,
            target_critic,
            gradient_steps: 0,
            policy_updates: 0,
        })
    }

    pub fn alpha(&self) -> f64 {
        self.log_alpha.value.exp()
    }

    fn tensor(&self, values: &[f32], rows: usize, cols: usize) -> candle_core::Result<Tensor> {
        Tensor::from_slice(values, (rows, cols), &self.device)
    }

    /// The policy learning rate after `policy_updates` updates: constant, then linear from
    /// `policy_lr` down to `policy_lr_end` between the decay's begin and end.
    fn policy_lr(&self) -> f64 {
        let c = &self.config;
        let span = (c.policy_lr_decay_end - c.policy_lr_decay_begin).max(1) as f64;
        let progress =
            (self.policy_updates.saturating_sub(c.policy_lr_decay_begin) as f64 / span).min(1.0);
        self.initial_policy_lr + (c.policy_lr_end - self.initial_policy_lr) * progress
    }

    /// Entropy of the exploration noise, `(d/2) ln(2 pi e (0.1 alpha)^2)`.
    fn exploration_entropy(&self) -> f64 {
        let std = self.config.exploration_noise * self.alpha();
        0.5 * self.act_dim as f64
            * (2.0 * std::f64::consts::PI * std::f64::consts::E * std * std).ln()
    }

    /// The reweighted score-matching loss on states `obs` (`[B, obs_dim]`) whose actions `a`
    /// (`[B, act_dim]`) the policy just sampled; returns `(loss, mean max weight)`.
    ///
    /// Per state: `t ~ U{0..T-1}`, `a~ = sqrt(abar_t) a + sqrt(1 - abar_t) eps_1`; K samples
    /// `a0_k = clip((a~ - sqrt(1 - abar_t) eps_k) / sqrt(abar_t), -1, 1)`;
    /// `w = softmax_k(weight_scale * min Q(s, a0_k) / alpha)`. The loss
    /// `mean_{b,k,d} w_bk (eps_theta(s, a~, t) - eps_bk)^2` is computed in its exact short form
    /// `(1/K) mean_{b,d} (eps_theta(s, a~, t) - sum_k w_bk eps_bk)^2` (same gradient, since the
    /// weights of a state sum to one): one network pass on B rows instead of B K.
    fn score_matching_loss(
        &mut self,
        obs: &Tensor,
        actions: &Tensor,
    ) -> anyhow::Result<(Tensor, f64)> {
        let (batch, k, ad) = (obs.dim(0)?, self.config.reverse_samples, self.act_dim);
        let schedule = &self.sampler.schedule;
        let steps = self.noise.steps(batch, schedule.steps())?;
        let step_indices: Vec<f32> = steps.to_vec1()?;
        let column = |f: &dyn Fn(f64) -> f64| -> candle_core::Result<Tensor> {
            let values: Vec<f32> = step_indices
                .iter()
                .map(|&t| f(schedule.alpha_bars[t as usize]) as f32)
                .collect();
            Tensor::from_vec(values, (batch, 1), &self.device)
        };
        let sqrt_abar = column(&|abar| abar.sqrt())?;
        let sqrt_one_minus_abar = column(&|abar| (1.0 - abar).sqrt())?;

        let eps1 = self.noise.normal((batch, ad), 1.0)?;
        let noisy =
            (actions.broadcast_mul(&sqrt_abar)? + eps1.broadcast_mul(&sqrt_one_minus_abar)?)?;

        let eps_k = self.noise.normal((batch, k, ad), 1.0)?;
        let reverse = noisy
            .unsqueeze(1)?
            .broadcast_sub(&eps_k.broadcast_mul(&sqrt_one_minus_abar.unsqueeze(2)?)?)?
            .broadcast_div(&sqrt_abar.unsqueeze(2)?)?
            .clamp(-1f32, 1f32)?
            .reshape((batch * k, ad))?;
        let repeated_obs = obs
            .unsqueeze(1)?
            .repeat((1, k, 1))?
            .reshape((batch * k, self.obs_dim))?;
        let q = self
            .critic
            .min_q(&repeated_obs, &reverse)?
            .reshape((batch, k))?
            .detach();
        let weights =
            candle_nn::ops::softmax(&(q * (self.config.weight_scale / self.alpha()))?, D::Minus1)?;
        let weighted_noise = eps_k.broadcast_mul(&weights.unsqueeze(2)?)?.sum(1)?;

        let predicted = self.policy.forward(obs, &noisy, &steps)?;
        let loss = ((predicted - weighted_noise)?.sqr()?.mean_all()? / k as f64)?;
        let max_weight = weights.max(D::Minus1)?.mean_all()?.to_scalar::<f32>()?;
        Ok((loss, f64::from(max_weight)))
    }
}

impl Agent for Sdac {
    fn name(&self) -> &'static str {
        "sdac"
    }

    fn act(&mut self, obs: &[f64], rows: usize, explore: bool) -> anyhow::Result<Vec<f32>> {
        let obs: Vec<f32> = obs.iter().map(|&o| o as f32).collect();
        let obs = self.tensor(&obs, rows, self.obs_dim)?;
        let mut actions = self.sampler.best_of_n(
            &self.ema_policy,
            &self.critic,
            &obs,
            self.act_dim,
            self.config.candidates,
            &mut self.noise,
        )?;
        if explore {
            let std = self.config.exploration_noise * self.alpha();
            actions = (actions + self.noise.normal((rows, self.act_dim), std)?)?;
        }
        Ok(actions.flatten_all()?.to_vec1()?)
    }

    fn update(&mut self, batch: &Batch) -> anyhow::Result<Metrics> {
        let (b, od, ad) = (batch.len, self.obs_dim, self.act_dim);
        let obs = self.tensor(&batch.obs, b, od)?;
        let actions = self.tensor(&batch.actions, b, ad)?;
        let next_obs = self.tensor(&batch.next_obs, b, od)?;
        let rewards = Tensor::from_slice(&batch.rewards, b, &self.device)?;
        let not_terminated = (1.0 - Tensor::from_slice(&batch.terminated, b, &self.device)?)?;
        let mut metrics = Metrics::new();

        // Critic: bootstrap from the online policy's best-of-N action in the next state.
        let next_actions = self
            .sampler
            .best_of_n(
                &self.policy,
                &self.critic,
                &next_obs,
                ad,
                self.config.candidates,
                &mut self.noise,
            )?
            .detach();
        let next_q = self.target_critic.min_q(&next_obs, &next_actions)?;
        let target = ((rewards * self.config.reward_scale)?
            + (not_terminated * next_q)?.affine(self.gamma, 0.0)?)?
        .detach();
        let (q1, q2) = self.critic.forward(&obs, &actions)?;
        let q1_loss = (&q1 - &target)?.sqr()?.mean_all()?;
        let q2_loss = (&q2 - &target)?.sqr()?.mean_all()?;
        let critic_grads = (&q1_loss + &q2_loss)?.backward()?;
        metrics.push(("losses/qf1_loss", f64::from(q1_loss.to_scalar::<f32>()?)));
        metrics.push(("losses/qf2_loss", f64::from(q2_loss.to_scalar::<f32>()?)));
        metrics.push((
            "losses/qf1_values",
            f64::from(q1.mean_all()?.to_scalar::<f32>()?),
        ));

        // Policy: every `policy_delay` steps, with the critics as they were before this step.
        let delayed = self.gradient_steps.is_multiple_of(self.config.policy_delay);
        let policy_grads = if delayed {
            let own_actions = self
                .sampler
                .best_of_n(
                    &self.policy,
                    &self.critic,
                    &obs,
                    ad,
                    self.config.candidates,
                    &mut self.noise,
                )?
                .detach();
            let (loss, max_weight) = self.score_matching_loss(&obs, &own_actions)?;
            metrics.push(("losses/actor_loss", f64::from(loss.to_scalar::<f32>()?)));
            metrics.push(("losses/max_weight", max_weight));
            Some(loss.backward()?)
        } else {
            None
        };

        self.critic_optimizer.step(&critic_grads)?;
        if let Some(grads) = policy_grads {
            self.policy_optimizer.learning_rate = self.policy_lr();
            self.policy_optimizer.step(&grads)?;
            self.policy_updates += 1;
            polyak_update(&self.target_critic_vars, &self.critic_vars, self.tau)?;
            polyak_update(&self.ema_vars, &self.policy_vars, self.tau)?;
        }

        // Temperature: the reference's schedule, d/d(log alpha) of -log alpha (H* - H) = H - H*.
        if self.gradient_steps.is_multiple_of(self.config.alpha_every) {
            let target_entropy = self.config.target_entropy_per_dim * ad as f64;
            self.log_alpha
                .step(self.exploration_entropy() - target_entropy);
        }
        self.gradient_steps += 1;
        metrics.push(("losses/alpha", self.alpha()));
        metrics.push(("charts/policy_lr", self.policy_optimizer.learning_rate));
        Ok(metrics)
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        // The acting policy (EMA) and the critics that score its candidates.
        let all = VarMap::new();
        {
            let mut data = all
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("parameter map poisoned"))?;
            for (name, var) in sorted_vars(&self.ema_vars)
                .into_iter()
                .chain(sorted_vars(&self.critic_vars))
            {
                data.insert(name, var);
            }
        }
        all.save(path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        self.ema_vars.load(path)?;
        self.critic_vars.load(path)?;
        copy_params(&self.policy_vars, &self.ema_vars)?;
        copy_params(&self.target_critic_vars, &self.critic_vars)?;
        Ok(())
    }

    fn save_state(&self) -> anyhow::Result<AgentState> {
        let mut tensors = TensorMap::new();
        export_vars(&self.policy_vars, "online", &mut tensors);
        export_vars(&self.ema_vars, "ema", &mut tensors);
        export_vars(&self.critic_vars, "critic", &mut tensors);
        export_vars(&self.target_critic_vars, "target", &mut tensors);
        self.policy_optimizer
            .export_state("policy_adam", &mut tensors);
        self.critic_optimizer
            .export_state("critic_adam", &mut tensors);
        let scalars = SdacScalars {
            gradient_steps: self.gradient_steps,
            policy_updates: self.policy_updates,
            policy_adam_steps: self.policy_optimizer.steps(),
            critic_adam_steps: self.critic_optimizer.steps(),
            policy_lr: self.policy_optimizer.learning_rate,
            log_alpha: self.log_alpha.clone(),
            noise: RngState::of(self.noise.current_rng()),
        };
        Ok(AgentState {
            tensors,
            scalars: serde_json::to_value(scalars)?,
        })
    }

    fn load_state(&mut self, state: &AgentState) -> anyhow::Result<()> {
        let scalars: SdacScalars = serde_json::from_value(state.scalars.clone())
            .context("the checkpoint's SDAC scalars")?;
        let tensors = &state.tensors;
        import_vars(&self.policy_vars, "online", tensors)?;
        import_vars(&self.ema_vars, "ema", tensors)?;
        import_vars(&self.critic_vars, "critic", tensors)?;
        import_vars(&self.target_critic_vars, "target", tensors)?;
        self.policy_optimizer
            .import_state("policy_adam", tensors, scalars.policy_adam_steps)?;
        self.critic_optimizer
            .import_state("critic_adam", tensors, scalars.critic_adam_steps)?;
        self.policy_optimizer.learning_rate = scalars.policy_lr;
        self.log_alpha = scalars.log_alpha;
        self.noise.set_rng(scalars.noise.to_rng());
        self.gradient_steps = scalars.gradient_steps;
        self.policy_updates = scalars.policy_updates;
        Ok(())
    }
}

/// The scalar part of SDAC's training state.
#[derive(serde::Serialize, serde::Deserialize)]
struct SdacScalars {
    gradient_steps: u64,
    policy_updates: u64,
    policy_adam_steps: u64,
    critic_adam_steps: u64,
    policy_lr: f64,
    log_alpha: ScalarAdam,
    noise: RngState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Sdac {
        let mut config = crate::config::resolve("ci", &[]).unwrap();
        config.sdac.reverse_samples = 6;
        Sdac::new(&config, 3, 2, 7, &Device::Cpu).unwrap()
    }

    /// The short loss and the reference's long form `mean_{b,k,d} w (eps_theta - eps_k)^2` have
    /// the same gradient.
    #[test]
    fn short_loss_has_the_gradient_of_the_long_form() {
        let mut a = agent();
        let mut b = agent();
        let obs = Tensor::new(
            &[[0.1f32, 0.2, -0.3], [0.5, -0.5, 0.0], [1.0, 1.0, 1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let actions =
            Tensor::new(&[[0.3f32, -0.2], [0.9, 0.1], [-0.7, 0.0]], &Device::Cpu).unwrap();
        let (short, _) = a.score_matching_loss(&obs, &actions).unwrap();
        let short_grads = short.backward().unwrap();

        // The long form, rebuilt from the same random draws as the short one.
        let (batch, k, ad) = (3, b.config.reverse_samples, 2);
        let schedule = b.sampler.schedule.clone();
        let steps = b.noise.steps(batch, schedule.steps()).unwrap();
        let t: Vec<f32> = steps.to_vec1().unwrap();
        let col = |f: &dyn Fn(f64) -> f64| {
            let v: Vec<f32> = t
                .iter()
                .map(|&s| f(schedule.alpha_bars[s as usize]) as f32)
                .collect();
            Tensor::from_vec(v, (batch, 1), &Device::Cpu).unwrap()
        };
        let (sa, s1a) = (col(&|x| x.sqrt()), col(&|x| (1.0 - x).sqrt()));
        let eps1 = b.noise.normal((batch, ad), 1.0).unwrap();
        let noisy =
            (actions.broadcast_mul(&sa).unwrap() + eps1.broadcast_mul(&s1a).unwrap()).unwrap();
        let eps_k = b.noise.normal((batch, k, ad), 1.0).unwrap();
        let reverse = noisy
            .unsqueeze(1)
            .unwrap()
            .broadcast_sub(&eps_k.broadcast_mul(&s1a.unsqueeze(2).unwrap()).unwrap())
            .unwrap()
            .broadcast_div(&sa.unsqueeze(2).unwrap())
            .unwrap()
            .clamp(-1f32, 1f32)
            .unwrap()
            .reshape((batch * k, ad))
            .unwrap();
        let wide_obs = obs
            .unsqueeze(1)
            .unwrap()
            .repeat((1, k, 1))
            .unwrap()
            .reshape((batch * k, 3))
            .unwrap();
        let q = b
            .critic
            .min_q(&wide_obs, &reverse)
            .unwrap()
            .reshape((batch, k))
            .unwrap()
            .detach();
        let w = candle_nn::ops::softmax(
            &(q * (b.config.weight_scale / b.alpha())).unwrap(),
            D::Minus1,
        )
        .unwrap();
        let wide_noisy = noisy
            .unsqueeze(1)
            .unwrap()
            .repeat((1, k, 1))
            .unwrap()
            .reshape((batch * k, ad))
            .unwrap();
        let wide_steps = steps
            .unsqueeze(1)
            .unwrap()
            .repeat((1, k))
            .unwrap()
            .flatten_all()
            .unwrap();
        let predicted = b
            .policy
            .forward(&wide_obs, &wide_noisy, &wide_steps)
            .unwrap();
        let long = (predicted - eps_k.reshape((batch * k, ad)).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .broadcast_mul(&w.reshape((batch * k, 1)).unwrap())
            .unwrap()
            .mean_all()
            .unwrap();
        let long_grads = long.backward().unwrap();

        for ((name, va), (_, vb)) in sorted_vars(&a.policy_vars)
            .iter()
            .zip(sorted_vars(&b.policy_vars).iter())
        {
            let ga = short_grads
                .get(va.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let gb = long_grads
                .get(vb.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let scale = gb.iter().fold(1e-8f32, |m, g| m.max(g.abs()));
            for (x, y) in ga.iter().zip(&gb) {
                assert!(
                    (x - y).abs() <= 1e-4 * scale,
                    "{name}: {x} vs {y} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn alpha_follows_the_reference_schedule() {
        // Spec: alpha ~ 3.56 after 12.5k updates (50 alpha steps at 250 each), for any d.
        let config = crate::config::resolve("reference", &[]).unwrap();
        let mut agent = Sdac::new(&config, 3, 6, 0, &Device::Cpu).unwrap();
        for _ in 0..50 {
            let target = agent.config.target_entropy_per_dim * 6.0;
            agent.log_alpha.step(agent.exploration_entropy() - target);
        }
        assert!(
            (agent.alpha() - 3.56).abs() < 0.03,
            "alpha {}",
            agent.alpha()
        );
    }

    #[test]
    fn policy_lr_decays_linearly_between_its_bounds() {
        let config = crate::config::resolve("reference", &[]).unwrap();
        let mut agent = Sdac::new(&config, 3, 2, 0, &Device::Cpu).unwrap();
        for (updates, lr) in [
            (0, 3e-4),
            (25_000, 3e-4),
            (50_000, 1.65e-4),
            (75_000, 3e-5),
            (90_000, 3e-5),
        ] {
            agent.policy_updates = updates;
            assert!(
                (agent.policy_lr() - lr).abs() < 1e-12,
                "{updates}: {}",
                agent.policy_lr()
            );
        }
    }
}
