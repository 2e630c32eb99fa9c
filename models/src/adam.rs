//! Adam (as `optax.adam`: bias-corrected moments, `eps` outside the square root), with its
//! moments kept where a checkpoint can read and restore them.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Debug)]
pub struct Adam {
    vars: Vec<(String, Var)>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    steps: u64,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Adam {
    /// Adam over `vars` (named, in a stable order) with the usual betas (0.9, 0.999), eps 1e-8.
    pub fn new(vars: Vec<(String, Var)>, learning_rate: f64) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            first_moments: vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?,
            second_moments: vars.iter().map(|(_, v)| zeros(v)).collect::<Result<_>>()?,
            vars,
            steps: 0,
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step with the gradients in `grads` (variables without a gradient are left alone).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let m_scale = 1.0 / (1.0 - self.beta1.powi(t));
        let v_scale = 1.0 / (1.0 - self.beta2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.first_moments[i] * self.beta1)? + (grad * (1.0 - self.beta1))?)?;
            let v =
                ((&self.second_moments[i] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let update = ((&m * m_scale)? / ((&v * v_scale)?.sqrt()? + self.eps)?)?;
            var.set(&(var.as_tensor() - (update * self.learning_rate)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }

    /// Computes the gradients of `loss` and takes a step.
    /// Adds the moments to `tensors` as `{prefix}.m.{name}` and `{prefix}.v.{name}`; the step
    /// count is [`Adam::steps`].
    pub fn export_state(&self, prefix: &str, tensors: &mut crate::TensorMap) {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            tensors.insert(format!("{prefix}.m.{name}"), self.first_moments[i].clone());
            tensors.insert(format!("{prefix}.v.{name}"), self.second_moments[i].clone());
        }
    }

    /// Restores what [`Adam::export_state`] wrote, and the step count.
    pub fn import_state(
        &mut self,
        prefix: &str,
        tensors: &crate::TensorMap,
        steps: u64,
    ) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (kind, moments) in [
                ("m", &mut self.first_moments),
                ("v", &mut self.second_moments),
            ] {
                let key = format!("{prefix}.{kind}.{name}");
                let saved = tensors
                    .get(&key)
                    .ok_or_else(|| candle_core::Error::CannotFindTensor { path: key.clone() })?;
                if saved.shape() != var.shape() {
                    candle_core::bail!(
                        "{key}: saved shape {:?}, expected {:?}",
                        saved.shape(),
                        var.shape()
                    );
                }
                moments[i] = saved.to_device(var.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }

    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }
}

/// Adam on one scalar (the temperature's log), same update as [`Adam`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalarAdam {
    pub value: f64,
    first_moment: f64,
    second_moment: f64,
    steps: u64,
    pub learning_rate: f64,
}

impl ScalarAdam {
    pub fn new(value: f64, learning_rate: f64) -> Self {
        Self {
            value,
            first_moment: 0.0,
            second_moment: 0.0,
            steps: 0,
            learning_rate,
        }
    }

    /// One step down the gradient `grad` of the loss with respect to the value.
    pub fn step(&mut self, grad: f64) {
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        self.steps += 1;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        self.first_moment = beta1 * self.first_moment + (1.0 - beta1) * grad;
        self.second_moment = beta2 * self.second_moment + (1.0 - beta2) * grad * grad;
        let m_hat = self.first_moment / (1.0 - beta1.powi(t));
        let v_hat = self.second_moment / (1.0 - beta2.powi(t));
        self.value -= self.learning_rate * m_hat / (v_hat.sqrt() + eps);
    }
}
