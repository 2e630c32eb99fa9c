//! Parameters: a `VarMap` filled through `VarBuilder` (so builder prefixes are the tensor names
//! in saved files), initialised from a seeded RNG so the same seed gives the same network.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// A `VarBuilder` backend that creates missing variables in `vars` from a seeded RNG, in the
/// order the network asks for them.
struct SeededInit {
    vars: VarMap,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl SeededInit {
    fn values(&self, init: Init, count: usize) -> Result<Vec<f32>> {
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter RNG poisoned".into()))?;
        Ok(match init {
            Init::Const(value) => vec![value as f32; count],
            Init::Randn { mean, stdev } => (0..count)
                .map(|_| (mean + stdev * rng.sample::<f64, _>(StandardNormal)) as f32)
                .collect(),
            Init::Uniform { lo, up } => (0..count)
                .map(|_| rng.random_range(lo..up) as f32)
                .collect(),
            Init::Kaiming { .. } => {
                return Err(candle_core::Error::Msg(
                    "Kaiming init is not used by this project's networks".into(),
                ));
            }
        })
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededInit {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut vars = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter map poisoned".into()))?;
        if let Some(var) = vars.get(name) {
            if var.shape() != &shape {
                candle_core::bail!("shape mismatch on {name}: {shape:?} <> {:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let values = self.values(init, shape.elem_count())?;
        let tensor = Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        vars.insert(name.to_owned(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        let vars = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("parameter map poisoned".into()))?;
        vars.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            })
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .map(|v| v.contains_key(name))
            .unwrap_or(false)
    }
}

/// A `VarBuilder` (f32, on `device`) whose new variables land in `vars`, drawn from `seed`.
pub fn seeded_var_builder(vars: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
    let backend = SeededInit {
        vars: vars.clone(),
        rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

/// Every variable of `vars`, sorted by name (a stable order for optimisers and copies).
pub fn sorted_vars(vars: &VarMap) -> Vec<(String, Var)> {
    let mut named: Vec<(String, Var)> = vars
        .data()
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// `target <- (1 - tau) target + tau source`, variable by variable (Polyak averaging). Both maps
/// must hold the same names and shapes.
pub fn polyak_update(target: &VarMap, source: &VarMap, tau: f64) -> Result<()> {
    let sources = sorted_vars(source);
    let targets = sorted_vars(target);
    if sources.len() != targets.len() {
        candle_core::bail!(
            "polyak: {} source and {} target variables",
            sources.len(),
            targets.len()
        );
    }
    for ((name_s, s), (name_t, t)) in sources.iter().zip(&targets) {
        if name_s != name_t {
            candle_core::bail!("polyak: source {name_s} paired with target {name_t}");
        }
        let mixed = ((t.as_tensor() * (1.0 - tau))? + (s.as_tensor() * tau)?)?;
        t.set(&mixed)?;
    }
    Ok(())
}

/// Copies every variable of `source` into `target` (same names and shapes).
pub fn copy_params(target: &VarMap, source: &VarMap) -> Result<()> {
    polyak_update(target, source, 1.0)
}

/// Named tensors of a checkpoint, keyed `{prefix}.{name}`.
pub type TensorMap = std::collections::HashMap<String, Tensor>;

/// Adds every variable of `vars` to `tensors` under `{prefix}.{name}`.
pub fn export_vars(vars: &VarMap, prefix: &str, tensors: &mut TensorMap) {
    for (name, var) in sorted_vars(vars) {
        tensors.insert(format!("{prefix}.{name}"), var.as_tensor().clone());
    }
}

/// Sets every variable of `vars` from `tensors[{prefix}.{name}]`; a missing tensor or another
/// shape is an error naming it.
pub fn import_vars(vars: &VarMap, prefix: &str, tensors: &TensorMap) -> Result<()> {
    for (name, var) in sorted_vars(vars) {
        let key = format!("{prefix}.{name}");
        let saved = tensors
            .get(&key)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: key.clone() })?;
        if saved.shape() != var.shape() {
            candle_core::bail!(
                "{key}: saved shape {:?}, the network has {:?}",
                saved.shape(),
                var.shape()
            );
        }
        var.set(&saved.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
