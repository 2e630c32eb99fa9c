//! Seeded randomness as tensors: every random number the algorithms use comes from here, so a
//! seed fixes a run on any device.

use candle_core::{Device, Result, Shape, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

#[derive(Debug, Clone)]
pub struct NoiseSource {
    rng: ChaCha8Rng,
    device: Device,
}

impl NoiseSource {
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    /// `N(0, std^2)` samples of `shape`, f32.
    pub fn normal(&mut self, shape: impl Into<Shape>, std: f64) -> Result<Tensor> {
        let shape = shape.into();
        let values = self.normal_values(shape.elem_count(), std);
        Tensor::from_vec(values, shape, &self.device)
    }

    /// The same draws as [`NoiseSource::normal`], on the host.
    pub fn normal_values(&mut self, count: usize, std: f64) -> Vec<f32> {
        (0..count)
            .map(|_| (std * self.rng.sample::<f64, _>(StandardNormal)) as f32)
            .collect()
    }

    /// `count` integers uniform in `0..upper`, as f32 (diffusion step indices).
    pub fn steps(&mut self, count: usize, upper: usize) -> Result<Tensor> {
        let values: Vec<f32> = (0..count)
            .map(|_| self.rng.random_range(0..upper) as f32)
            .collect();
        Tensor::from_vec(values, count, &self.device)
    }

    /// The RNG's current position (to save it).
    pub fn current_rng(&self) -> &ChaCha8Rng {
        &self.rng
    }

    /// Continues from `rng` (a checkpoint's saved stream).
    pub fn set_rng(&mut self, rng: ChaCha8Rng) {
        self.rng = rng;
    }

    /// The underlying RNG (for host-side draws such as random actions).
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}
