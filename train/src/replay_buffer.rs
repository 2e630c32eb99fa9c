//! Transitions in flat, preallocated ring arrays (one row per transition), sampled uniformly.

use rand::Rng;

/// A batch of transitions, row-major, ready to become tensors.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub obs: Vec<f32>,
    /// Actions in normalised units (what the policy produced, exploration noise included).
    pub actions: Vec<f32>,
    pub rewards: Vec<f32>,
    pub next_obs: Vec<f32>,
    /// 1 where the episode terminated (no bootstrap), 0 otherwise (truncation bootstraps).
    pub terminated: Vec<f32>,
    pub len: usize,
}

#[derive(Debug, Clone)]
pub struct ReplayBuffer {
    obs_dim: usize,
    act_dim: usize,
    capacity: usize,
    obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    next_obs: Vec<f32>,
    terminated: Vec<f32>,
    /// Next row to write.
    cursor: usize,
    len: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, obs_dim: usize, act_dim: usize) -> Self {
        Self {
            obs_dim,
            act_dim,
            capacity,
            obs: vec![0.0; capacity * obs_dim],
            actions: vec![0.0; capacity * act_dim],
            rewards: vec![0.0; capacity],
            next_obs: vec![0.0; capacity * obs_dim],
            terminated: vec![0.0; capacity],
            cursor: 0,
            len: 0,
        }
    }

    /// Stores one transition, overwriting the oldest when full.
    pub fn push(
        &mut self,
        obs: &[f64],
        action: &[f32],
        reward: f64,
        next_obs: &[f64],
        terminated: bool,
    ) {
        let (i, od, ad) = (self.cursor, self.obs_dim, self.act_dim);
        for (dst, src) in self.obs[i * od..(i + 1) * od].iter_mut().zip(obs) {
            *dst = *src as f32;
        }
        for (dst, src) in self.next_obs[i * od..(i + 1) * od].iter_mut().zip(next_obs) {
            *dst = *src as f32;
        }
        self.actions[i * ad..(i + 1) * ad].copy_from_slice(action);
        self.rewards[i] = reward as f32;
        self.terminated[i] = if terminated { 1.0 } else { 0.0 };
        self.cursor = (self.cursor + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// `size` transitions drawn uniformly with replacement into `batch` (its buffers are reused).
    pub fn sample_into(&self, size: usize, rng: &mut impl Rng, batch: &mut Batch) {
        let (od, ad) = (self.obs_dim, self.act_dim);
        batch.obs.clear();
        batch.actions.clear();
        batch.rewards.clear();
        batch.next_obs.clear();
        batch.terminated.clear();
        for _ in 0..size {
            let i = rng.random_range(0..self.len);
            batch.obs.extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            batch
                .actions
                .extend_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            batch.rewards.push(self.rewards[i]);
            batch
                .next_obs
                .extend_from_slice(&self.next_obs[i * od..(i + 1) * od]);
            batch.terminated.push(self.terminated[i]);
        }
        batch.len = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ring_overwrites_the_oldest_and_samples_what_it_holds() {
        let mut buffer = ReplayBuffer::new(3, 1, 1);
        for k in 0..5 {
            let k = k as f64;
            buffer.push(&[k], &[k as f32], k, &[k + 0.5], k == 4.0);
        }
        assert_eq!(buffer.len, 3);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut batch = Batch::default();
        buffer.sample_into(200, &mut rng, &mut batch);
        assert!(
            batch.obs.iter().all(|&o| (2.0..=4.0).contains(&o)),
            "{:?}",
            batch.obs
        );
        for i in 0..batch.len {
            assert_eq!(batch.actions[i], batch.obs[i]);
            assert_eq!(batch.next_obs[i], batch.obs[i] + 0.5);
            assert_eq!(
                batch.terminated[i],
                if batch.obs[i] == 4.0 { 1.0 } else { 0.0 }
            );
        }
        for k in [2.0, 3.0, 4.0] {
            assert!(batch.obs.contains(&k), "uniform sampling reaches {k}");
        }
    }
}
