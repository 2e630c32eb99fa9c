//! The runtime's [`sdac_runtime::Policy`] behind the controller's [`ActionPolicy`].

use std::path::Path;

use sdac_runtime::{LoadError, Policy};

use crate::control::{ActionPolicy, PolicyRefused};

/// A loaded policy that draws its sampler noise from its own seeded generator.
pub struct RuntimePolicy {
    policy: Policy,
    action_low: Vec<f64>,
    action_high: Vec<f64>,
}

impl RuntimePolicy {
    /// Loads and validates the artifact at `path`; the noise generator starts from `seed`.
    pub fn load(path: &Path, seed: u64) -> Result<Self, LoadError> {
        Ok(Self::new(Policy::load(path)?, seed))
    }

    pub fn new(mut policy: Policy, seed: u64) -> Self {
        policy.reseed(seed);
        let metadata = policy.metadata();
        let (action_low, action_high) = (metadata.action_low.clone(), metadata.action_high.clone());
        Self {
            policy,
            action_low,
            action_high,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl ActionPolicy for RuntimePolicy {
    fn obs_dim(&self) -> usize {
        self.policy.obs_dim()
    }

    fn act_dim(&self) -> usize {
        self.policy.act_dim()
    }

    fn action_low(&self) -> &[f64] {
        &self.action_low
    }

    fn action_high(&self) -> &[f64] {
        &self.action_high
    }

    fn act(&mut self, obs_raw: &[f32], action_env: &mut [f32]) -> Result<(), PolicyRefused> {
        self.policy
            .act_seeded(obs_raw, action_env)
            .map_err(|_| PolicyRefused)
    }
}
