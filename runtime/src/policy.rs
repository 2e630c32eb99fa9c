//! [`Policy`]: a loaded artifact that turns observations into actions, allocation-free.

use std::path::Path;

use crate::error::{ActError, LoadError};
use crate::format::{Metadata, SamplerKind};
use crate::kernels::{Isa, Packing};
use crate::load;
use crate::network::{Critic, NoiseNet, prefix_mut};
use crate::rng::NoiseRng;
use crate::schedule::{StepConstants, step_constants};

/// A policy ready to act: validated once at load, every buffer sized there.
///
/// Contract of [`Policy::act`] and [`Policy::act_seeded`]: they allocate nothing, take no lock
/// and do not panic; they refuse (with [`ActError`], writing nothing to `action_env`) inputs of
/// the wrong length, non-finite observations or noise, and a non-finite result. The same
/// artifact, observation and noise give bit-identical actions on the same CPU features.
#[derive(Clone)]
pub struct Policy {
    core: Core,
    /// The noise [`Policy::act_seeded`] draws, `noise_len` values.
    seeded_noise: Vec<f32>,
    rng: NoiseRng,
}

/// Everything but the seeded noise, so that both can be borrowed at once.
#[derive(Clone)]
struct Core {
    metadata: Metadata,
    isa: Isa,
    obs_mean: Vec<f32>,
    obs_std: Vec<f32>,
    action_low: Vec<f32>,
    /// `(high - low) / 2`.
    action_half_range: Vec<f32>,
    init_noise_std: f32,
    candidates: usize,
    steps: Vec<StepConstants>,
    net: NoiseNet,
    /// The twin critics of a best-of-N sampler.
    critics: Option<[Critic; 2]>,
    scratch: Scratch,
}

/// Working memory of one action, sized at load.
#[derive(Clone)]
struct Scratch {
    /// `obs_dim`.
    obs_normalized: Vec<f32>,
    /// Network width_0: the observation's share of the first layer.
    obs_projection: Vec<f32>,
    /// Network width_0: `obs_projection` plus the step's folded constants.
    step_bias: Vec<f32>,
    /// `candidates * act_dim`: the samples.
    x: Vec<f32>,
    /// `candidates * act_dim`: the network's output.
    net_out: Vec<f32>,
    /// `candidates * widest`, twice: layer activations.
    pre: Vec<f32>,
    spare: Vec<f32>,
    /// Critic width_0: the observation's share of a critic's first layer.
    critic_bias: Vec<f32>,
    /// `candidates` each: Q1 and Q2 of every candidate.
    q1: Vec<f32>,
    q2: Vec<f32>,
    /// `act_dim`: the action in environment units before it is handed out.
    action_env: Vec<f32>,
}

impl Policy {
    /// Reads and validates the artifact at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Validates an artifact's bytes and builds the policy (see [`LoadError`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, LoadError> {
        let artifact = load::parse(bytes)?;
        let steps = step_constants(&artifact.metadata.sampler)
            .map_err(|step| LoadError::NonFiniteStepConstant { step })?;
        // The student's chain and a single candidate run one row per call, the teacher's
        // candidates (and the critics scoring them) a batch.
        let isa = Isa::detect();
        let batched = match artifact.metadata.sampler.kind {
            SamplerKind::DdpmBestOfN => artifact.metadata.sampler.candidates > 1,
            SamplerKind::DdimSample => false,
        };
        let packing = Packing::for_calls(batched, isa);
        let net = NoiseNet::new(&artifact, packing)?;
        let critics = match artifact.metadata.sampler.kind {
            SamplerKind::DdpmBestOfN => Some([
                Critic::new(&artifact, "q1", packing)?,
                Critic::new(&artifact, "q2", packing)?,
            ]),
            SamplerKind::DdimSample => None,
        };
        let metadata = artifact.metadata;
        let f32s = |values: &[f64]| values.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let normalization = &metadata.obs_normalization;
        let action_half_range = metadata
            .action_low
            .iter()
            .zip(&metadata.action_high)
            .map(|(low, high)| ((high - low) / 2.0) as f32)
            .collect();
        let candidates = metadata.sampler.candidates;
        let (obs_dim, act_dim) = (metadata.obs_dim, metadata.act_dim);
        let widest = metadata.network.hidden.iter().copied().max().unwrap_or(0);
        let widest = widest.max(net.tail.widest());
        let rows = |n: usize| vec![0.0f32; candidates * n];
        let scratch = Scratch {
            obs_normalized: vec![0.0; obs_dim],
            obs_projection: vec![0.0; net.width()],
            step_bias: vec![0.0; net.width()],
            x: rows(act_dim),
            net_out: rows(act_dim),
            pre: rows(widest),
            spare: rows(widest),
            critic_bias: vec![0.0; widest],
            q1: rows(1),
            q2: rows(1),
            action_env: vec![0.0; act_dim],
        };
        let core = Core {
            isa,
            obs_mean: f32s(&normalization.mean),
            obs_std: f32s(&normalization.std),
            action_low: f32s(&metadata.action_low),
            action_half_range,
            init_noise_std: metadata.sampler.init_noise_std as f32,
            candidates,
            steps,
            net,
            critics,
            scratch,
            metadata,
        };
        Ok(Policy {
            seeded_noise: vec![0.0; core.noise_len()],
            core,
            rng: NoiseRng::new(0),
        })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.core.metadata
    }

    pub fn obs_dim(&self) -> usize {
        self.core.metadata.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.core.metadata.act_dim
    }

    /// Noise values one action consumes: `n_noise * act_dim`.
    pub fn noise_len(&self) -> usize {
        self.core.noise_len()
    }

    /// Whether batched layers (the teacher's candidates) run the AVX-512 build (decided at load
    /// from the CPU).
    pub fn uses_avx512(&self) -> bool {
        self.core.isa.avx512()
    }

    /// Whether the kernels run the AVX2+FMA build (it also needs F16C; decided at load from the
    /// CPU).
    pub fn uses_avx2_fma(&self) -> bool {
        self.core.isa.avx2_fma()
    }

    /// Whether the sampler network's hidden and output layers run on half-precision weights:
    /// an artifact whose weights are all exactly half-precision values (`sdac distill --weights
    /// f16`) is stored that way, losslessly, at half the bytes.
    pub fn uses_half_weights(&self) -> bool {
        self.core.net.tail.is_half()
    }

    /// `obs_raw`: `obs_dim` values; `noise`: `noise_len` standard normals in the layout of
    /// `runtime/FORMAT.md`; `action_env`: receives `act_dim` values in environment units.
    pub fn act(
        &mut self,
        obs_raw: &[f32],
        noise: &[f32],
        action_env: &mut [f32],
    ) -> Result<(), ActError> {
        self.core.check_io(obs_raw, action_env)?;
        check_finite("noise", noise, self.core.noise_len())?;
        self.core.run(obs_raw, noise, action_env)
    }

    /// The same, drawing the noise from the policy's own [`NoiseRng`] (seeded by
    /// [`Policy::reseed`], seed 0 after load). A refused call draws nothing.
    pub fn act_seeded(&mut self, obs_raw: &[f32], action_env: &mut [f32]) -> Result<(), ActError> {
        self.core.check_io(obs_raw, action_env)?;
        self.rng.fill_standard_normal(&mut self.seeded_noise);
        self.core.run(obs_raw, &self.seeded_noise, action_env)
    }

    /// Restarts the noise stream of [`Policy::act_seeded`] from `seed`.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = NoiseRng::new(seed);
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.core.metadata;
        f.debug_struct("Policy")
            .field("sampler", &m.sampler.kind)
            .field("obs_dim", &m.obs_dim)
            .field("act_dim", &m.act_dim)
            .field("hidden", &m.network.hidden)
            .field("avx2_fma", &self.core.isa.avx2_fma())
            .finish_non_exhaustive()
    }
}

/// `Ok` if `values` has `expected` values, all finite.
pub(crate) fn check_finite(
    what: &'static str,
    values: &[f32],
    expected: usize,
) -> Result<(), ActError> {
    if values.len() != expected {
        return Err(ActError::WrongLength {
            what,
            expected,
            found: values.len(),
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(ActError::NonFinite {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

impl Core {
    fn noise_len(&self) -> usize {
        self.metadata.n_noise * self.metadata.act_dim
    }

    fn check_io(&self, obs_raw: &[f32], action_env: &[f32]) -> Result<(), ActError> {
        check_finite("observation", obs_raw, self.metadata.obs_dim)?;
        if action_env.len() != self.metadata.act_dim {
            return Err(ActError::WrongLength {
                what: "action output",
                expected: self.metadata.act_dim,
                found: action_env.len(),
            });
        }
        Ok(())
    }

    /// The sampler on checked inputs.
    fn run(
        &mut self,
        obs_raw: &[f32],
        noise: &[f32],
        action_env: &mut [f32],
    ) -> Result<(), ActError> {
        let s = &mut self.scratch;
        for (((n, &o), &mean), &std) in s
            .obs_normalized
            .iter_mut()
            .zip(obs_raw)
            .zip(&self.obs_mean)
            .zip(&self.obs_std)
        {
            *n = (o - mean) / std;
        }
        let isa = self.isa;
        self.net
            .obs_part
            .forward(isa, &s.obs_normalized, &mut s.obs_projection, 1);
        let chosen = if self.critics.is_some() {
            self.ddpm(noise);
            self.best_candidate()?
        } else {
            self.ddim(noise);
            0
        };
        let s = &mut self.scratch;
        let act_dim = self.metadata.act_dim;
        let x = s.x.get(chosen * act_dim..).unwrap_or(&[]);
        for (((out, &x), &low), &half_range) in s
            .action_env
            .iter_mut()
            .zip(x)
            .zip(&self.action_low)
            .zip(&self.action_half_range)
        {
            *out = low + (x.clamp(-1.0, 1.0) + 1.0) * half_range;
        }
        if s.action_env.iter().any(|v| !v.is_finite()) {
            return Err(ActError::NonFiniteResult { what: "action" });
        }
        action_env.copy_from_slice(&s.action_env);
        Ok(())
    }

    /// `net_out = f(obs_normalized, x, timesteps[step])` for the first `rows` samples.
    fn predict(&mut self, step: usize, rows: usize) {
        let (net, s, isa) = (&self.net, &mut self.scratch, self.isa);
        let width = net.width();
        let folded = net.step_bias.get(step * width..).unwrap_or(&[]);
        for ((b, &p), &f) in s.step_bias.iter_mut().zip(&s.obs_projection).zip(folded) {
            *b = p + f;
        }
        net.x_part
            .forward_with_bias(isa, &s.x, &mut s.pre, rows, &s.step_bias);
        net.tail
            .forward(isa, rows, &mut s.pre, &mut s.spare, &mut s.net_out);
    }

    /// The student: deterministic DDIM from one noise vector; leaves the sample in `x`.
    fn ddim(&mut self, noise: &[f32]) {
        let act_dim = self.metadata.act_dim;
        for (x, &z) in prefix_mut(&mut self.scratch.x, act_dim)
            .iter_mut()
            .zip(noise)
        {
            *x = self.init_noise_std * z;
        }
        for k in 0..self.steps.len() {
            self.predict(k, 1);
            let Some(step) = self.steps.get(k).copied() else {
                break;
            };
            let last = k + 1 == self.steps.len();
            let s = &mut self.scratch;
            for (x, &f) in s.x.iter_mut().zip(&s.net_out).take(act_dim) {
                let x0 = f.clamp(-1.0, 1.0);
                *x = if last {
                    x0
                } else {
                    let eps_hat = (*x - step.sqrt_abar * x0) * step.inv_sqrt_one_minus_abar;
                    step.next_sqrt_abar * x0 + step.next_sqrt_one_minus_abar * eps_hat
                };
            }
        }
    }

    /// The teacher's `candidates` DDPM chains; leaves the samples in `x`.
    fn ddpm(&mut self, noise: &[f32]) {
        let rows = self.candidates;
        let block = rows * self.metadata.act_dim;
        let mut blocks = noise.chunks_exact(block.max(1));
        let start = blocks.next().unwrap_or(&[]);
        for (x, &z) in self.scratch.x.iter_mut().zip(start) {
            *x = self.init_noise_std * z;
        }
        for k in 0..self.steps.len() {
            self.predict(k, rows);
            let Some(step) = self.steps.get(k).copied() else {
                break;
            };
            let fresh = if step.draws_noise {
                blocks.next()
            } else {
                None
            };
            let s = &mut self.scratch;
            for (i, (x, &eps)) in s.x.iter_mut().zip(&s.net_out).enumerate() {
                let x0 = (*x * step.x_scale - eps * step.eps_scale).clamp(-1.0, 1.0);
                let mut next = step.coef_x0 * x0 + step.coef_xt * *x;
                if let Some(z) = fresh.and_then(|fresh| fresh.get(i)) {
                    next += step.sigma * z;
                }
                *x = next;
            }
        }
    }

    /// The first candidate in `x` with the highest `min(Q1, Q2)` (0 for a student).
    fn best_candidate(&mut self) -> Result<usize, ActError> {
        let Core {
            critics: Some(critics),
            scratch: s,
            isa,
            candidates: rows,
            ..
        } = self
        else {
            return Ok(0);
        };
        let (isa, rows) = (*isa, *rows);
        for (critic, q) in critics.iter().zip([&mut s.q1, &mut s.q2]) {
            critic
                .obs_part
                .forward(isa, &s.obs_normalized, &mut s.critic_bias, 1);
            let width = critic.obs_part.outputs();
            critic.action_part.forward_with_bias(
                isa,
                &s.x,
                &mut s.pre,
                rows,
                s.critic_bias.get(..width).unwrap_or(&[]),
            );
            critic.tail.forward(isa, rows, &mut s.pre, &mut s.spare, q);
        }
        let mut best = (0, f32::NEG_INFINITY);
        for (c, (&q1, &q2)) in s.q1.iter().zip(&s.q2).enumerate() {
            let score = q1.min(q2);
            if !score.is_finite() {
                return Err(ActError::NonFiniteResult {
                    what: "critic score",
                });
            }
            if score > best.1 {
                best = (c, score);
            }
        }
        Ok(best.0)
    }
}
