//! The DDPM schedule SDAC uses (see `SDAC_SPEC.md`, "Diffusion process"): T steps,
//! `beta_t = 0.8 * linspace(1e-4, 0.999, T)`, `t = 0` least noisy, epsilon prediction.

use sdac_runtime::format::{alpha_bars, linear_betas};

/// Every per-step constant the forward process, the reverse sampler and the score-matching
/// loss need, in f64 (networks take them as f32).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionSchedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    /// `prod_{i <= t} alpha_i`.
    pub alpha_bars: Vec<f64>,
    /// Posterior `q(x_{t-1} | x_t, x_0)` mean = `coef_x0[t] * x0 + coef_xt[t] * x_t`.
    pub posterior_coef_x0: Vec<f64>,
    pub posterior_coef_xt: Vec<f64>,
    /// Posterior variance `beta_t (1 - abar_{t-1}) / (1 - abar_t)`, 0 at `t = 0`.
    pub posterior_variance: Vec<f64>,
}

impl DiffusionSchedule {
    /// `beta_min` of the reference code's schedule.
    pub const SDAC_BETA_MIN: f64 = 1e-4;
    /// `beta_max` of the reference code's schedule.
    pub const SDAC_BETA_MAX: f64 = 0.999;
    /// The factor the reference code scales its betas by.
    pub const SDAC_BETA_SCALE: f64 = 0.8;

    /// The schedule of the reference code: `steps = 20`, betas scaled by 0.8.
    pub fn sdac(steps: usize) -> Self {
        Self::linear(
            steps,
            Self::SDAC_BETA_MIN,
            Self::SDAC_BETA_MAX,
            Self::SDAC_BETA_SCALE,
        )
    }

    /// `beta_t = scale * (beta_min + t / (steps - 1) * (beta_max - beta_min))`, `t` in
    /// `0..steps` (the fraction is 0 for a single step).
    pub fn linear(steps: usize, beta_min: f64, beta_max: f64, scale: f64) -> Self {
        let betas = linear_betas(steps, beta_min, beta_max, scale);
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alpha_bars = alpha_bars(&betas);
        let previous = |t: usize| if t == 0 { 1.0 } else { alpha_bars[t - 1] };
        let posterior_coef_x0 = (0..steps)
            .map(|t| betas[t] * previous(t).sqrt() / (1.0 - alpha_bars[t]))
            .collect();
        let posterior_coef_xt = (0..steps)
            .map(|t| (1.0 - previous(t)) * alphas[t].sqrt() / (1.0 - alpha_bars[t]))
            .collect();
        let posterior_variance = (0..steps)
            .map(|t| betas[t] * (1.0 - previous(t)) / (1.0 - alpha_bars[t]))
            .collect();
        Self {
            betas,
            alphas,
            alpha_bars,
            posterior_coef_x0,
            posterior_coef_xt,
            posterior_variance,
        }
    }

    pub fn steps(&self) -> usize {
        self.betas.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_bars_match_the_reference_code() {
        // The values SDAC_SPEC.md lists for the reference schedule, to the digits it gives.
        let listed = [
            "1.0", "0.958", "0.877", "0.766", "0.637", "0.503", "0.376", "0.265", "0.176", "0.109",
            "0.063", "0.034", "0.017", "7.6e-3", "3.1e-3", "1.2e-3", "3.8e-4", "1.1e-4", "2.6e-5",
            "5.3e-6",
        ];
        let schedule = DiffusionSchedule::sdac(20);
        for (t, (&got, text)) in schedule.alpha_bars.iter().zip(listed).enumerate() {
            let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
            let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
            let exponent: i32 = exponent.parse().unwrap();
            let half_unit = 0.5 * 10f64.powi(exponent - decimals);
            let want: f64 = text.parse().unwrap();
            assert!(
                (got - want).abs() <= half_unit,
                "abar_{t} = {got}, the spec lists {text}"
            );
        }
    }

    #[test]
    fn posterior_mean_is_exact_for_a_noiseless_start() {
        // With x_t = sqrt(abar_t) x0 exactly, the posterior mean is sqrt(abar_{t-1}) x0.
        let schedule = DiffusionSchedule::sdac(20);
        let x0 = 0.7;
        for t in 1..20 {
            let xt = schedule.alpha_bars[t].sqrt() * x0;
            let mean = schedule.posterior_coef_x0[t] * x0 + schedule.posterior_coef_xt[t] * xt;
            let expected = schedule.alpha_bars[t - 1].sqrt() * x0;
            assert!(
                (mean - expected).abs() < 1e-12,
                "t = {t}: {mean} vs {expected}"
            );
        }
        assert_eq!(schedule.posterior_variance[0], 0.0);
        assert!(schedule.posterior_variance[1..].iter().all(|&v| v > 0.0));
    }
}
