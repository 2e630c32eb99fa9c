//! The distilled student's sampler: deterministic DDIM over `K` of the teacher's `T` schedule
//! steps, its network (a [`NoiseNet`], the teacher's architecture) predicting the clean action
//! `x0` instead of the noise.
//!
//! From `x = init_noise_std * z` (one standard-normal vector per state), for the `k`-th visited
//! step `t_k`: `x0 = clip(f(s, x, t_k), -1, 1)`; at the last step `x = x0`, otherwise
//! `eps = (x - sqrt(abar_{t_k}) x0) / sqrt(1 - abar_{t_k})` and
//! `x = sqrt(abar_{t_{k+1}}) x0 + sqrt(1 - abar_{t_{k+1}}) eps`. The action is `clip(x, -1, 1)`.
//! Every operation is a candle tensor operation, so a loss on the result backpropagates through
//! all `K` steps (distillation trains the student that way).

use candle_core::{Result, Tensor};

use crate::noise_net::NoiseNet;
use crate::schedule::DiffusionSchedule;

/// The steps a `student_steps`-step student visits on a `schedule_steps`-step schedule:
/// `t_k = (T - 1) - k floor(T / K)` for `k` in `0..K` (T = 20: K = 2 gives `[19, 9]`, K = 4
/// gives `[19, 14, 9, 4]`). `None` unless `1 <= K <= T`.
pub fn student_timesteps(schedule_steps: usize, student_steps: usize) -> Option<Vec<usize>> {
    if student_steps == 0 || student_steps > schedule_steps {
        return None;
    }
    let stride = schedule_steps / student_steps;
    Some(
        (0..student_steps)
            .map(|k| schedule_steps - 1 - k * stride)
            .collect(),
    )
}

/// A DDIM sampler over fixed steps of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct DdimSampler {
    /// The visited steps, strictly decreasing.
    timesteps: Vec<usize>,
    /// `sqrt(abar_t)` for each visited step.
    sqrt_alpha_bar: Vec<f64>,
    /// `sqrt(1 - abar_t)` for each visited step.
    sqrt_one_minus_alpha_bar: Vec<f64>,
    init_noise_std: f64,
}

impl DdimSampler {
    /// A sampler visiting `timesteps` (each `< schedule.steps()`, strictly decreasing; the caller
    /// checks) of `schedule`, starting from `init_noise_std` times the caller's noise.
    pub fn new(schedule: &DiffusionSchedule, timesteps: &[usize], init_noise_std: f64) -> Self {
        let alpha_bar = |t: usize| schedule.alpha_bars[t];
        Self {
            sqrt_alpha_bar: timesteps.iter().map(|&t| alpha_bar(t).sqrt()).collect(),
            sqrt_one_minus_alpha_bar: timesteps
                .iter()
                .map(|&t| (1.0 - alpha_bar(t)).sqrt())
                .collect(),
            timesteps: timesteps.to_vec(),
            init_noise_std,
        }
    }

    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The network's last prediction of `x0`, before its clip, for normalised observations
    /// `obs_normalized` (`[B, obs_dim]`) and standard-normal `noise` (`[B, act_dim]`). The
    /// action is this clipped to [-1, 1] (see [`DdimSampler::sample`]); distillation regresses
    /// it unclipped so that saturated targets still pass a gradient.
    pub fn last_prediction(
        &self,
        net: &NoiseNet,
        obs_normalized: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        let chain = net.chain(obs_normalized)?;
        let mut x = (noise * self.init_noise_std)?;
        let last = self.timesteps.len().saturating_sub(1);
        for (k, &t) in self.timesteps.iter().enumerate() {
            let prediction = net.forward_in_chain(&chain, &x, t)?;
            if k == last {
                return Ok(prediction);
            }
            let x0 = prediction.clamp(-1f32, 1f32)?;
            let eps = ((&x - (&x0 * self.sqrt_alpha_bar[k])?)? / self.sqrt_one_minus_alpha_bar[k])?;
            x = ((x0 * self.sqrt_alpha_bar[k + 1])?
                + (eps * self.sqrt_one_minus_alpha_bar[k + 1])?)?;
        }
        candle_core::bail!("a DDIM sampler needs at least one step")
    }

    /// The student's action in [-1, 1] for each row; see [`DdimSampler::last_prediction`].
    pub fn sample(
        &self,
        net: &NoiseNet,
        obs_normalized: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        self.last_prediction(net, obs_normalized, noise)?
            .clamp(-1f32, 1f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_steps_follow_the_contract() {
        assert_eq!(student_timesteps(20, 1), Some(vec![19]));
        assert_eq!(student_timesteps(20, 2), Some(vec![19, 9]));
        assert_eq!(student_timesteps(20, 4), Some(vec![19, 14, 9, 4]));
        assert_eq!(student_timesteps(20, 3), Some(vec![19, 13, 7]));
        assert_eq!(student_timesteps(3, 3), Some(vec![2, 1, 0]));
        assert_eq!(student_timesteps(20, 0), None);
        assert_eq!(student_timesteps(4, 5), None);
    }
}
