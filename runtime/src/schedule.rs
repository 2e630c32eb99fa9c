//! The f32 constants of each visited sampler step, computed once in f64 from the schedule
//! (see `runtime/FORMAT.md` for the arithmetic they implement).

use crate::format::Sampler;

/// What visited step `k` (diffusion step `t = timesteps[k]`) multiplies by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepConstants {
    /// DDPM: `x0 = clip(x * x_scale - eps * eps_scale)`, `x_scale = sqrt(1 / abar_t)`,
    /// `eps_scale = sqrt(1 / abar_t - 1)`.
    pub(crate) x_scale: f32,
    pub(crate) eps_scale: f32,
    /// DDPM posterior mean `coef_x0 x0 + coef_xt x` and standard deviation `sigma`.
    pub(crate) coef_x0: f32,
    pub(crate) coef_xt: f32,
    pub(crate) sigma: f32,
    /// DDPM: whether the step adds fresh noise (`t > 0`).
    pub(crate) draws_noise: bool,
    /// DDIM: `eps_hat = (x - sqrt_abar x0) * inv_sqrt_one_minus_abar`, then
    /// `x = next_sqrt_abar x0 + next_sqrt_one_minus_abar eps_hat` (unused at the last step).
    pub(crate) sqrt_abar: f32,
    pub(crate) inv_sqrt_one_minus_abar: f32,
    pub(crate) next_sqrt_abar: f32,
    pub(crate) next_sqrt_one_minus_abar: f32,
}

impl StepConstants {
    fn all_finite(&self) -> bool {
        [
            self.x_scale,
            self.eps_scale,
            self.coef_x0,
            self.coef_xt,
            self.sigma,
            self.sqrt_abar,
            self.inv_sqrt_one_minus_abar,
            self.next_sqrt_abar,
            self.next_sqrt_one_minus_abar,
        ]
        .iter()
        .all(|v| v.is_finite())
    }
}

/// The constants of every visited step of `sampler` (validated metadata), or the index of the
/// first step whose constants are not finite in f32.
pub(crate) fn step_constants(sampler: &Sampler) -> Result<Vec<StepConstants>, usize> {
    let betas = sampler.betas();
    let alpha_bars = sampler.alpha_bars();
    let at = |values: &[f64], t: usize| values.get(t).copied().unwrap_or(f64::NAN);
    let visited = &sampler.timesteps;
    visited
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let (beta, abar) = (at(&betas, t), at(&alpha_bars, t));
            let abar_prev = if t == 0 { 1.0 } else { at(&alpha_bars, t - 1) };
            let variance = beta * (1.0 - abar_prev) / (1.0 - abar);
            let next_abar = visited.get(k + 1).map_or(1.0, |&n| at(&alpha_bars, n));
            let constants = StepConstants {
                x_scale: (1.0 / abar).sqrt() as f32,
                eps_scale: (1.0 / abar - 1.0).sqrt() as f32,
                coef_x0: (beta * abar_prev.sqrt() / (1.0 - abar)) as f32,
                coef_xt: ((1.0 - abar_prev) * (1.0 - beta).sqrt() / (1.0 - abar)) as f32,
                sigma: variance.max(1e-20).sqrt() as f32,
                draws_noise: t > 0,
                sqrt_abar: abar.sqrt() as f32,
                inv_sqrt_one_minus_abar: (1.0 / (1.0 - abar).sqrt()) as f32,
                next_sqrt_abar: next_abar.sqrt() as f32,
                next_sqrt_one_minus_abar: (1.0 - next_abar).sqrt() as f32,
            };
            if constants.all_finite() {
                Ok(constants)
            } else {
                Err(k)
            }
        })
        .collect()
}
