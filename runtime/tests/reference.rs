//! `Policy::act` against a plain f64 implementation of both samplers, written here from the
//! arithmetic in `runtime/FORMAT.md` without any of the runtime's folding or packing. Weights are
//! synthetic (seeded random, see `common`): the test checks the arithmetic, not a trained policy.

mod common;

use common::{Artifact, Shape, normals, synthetic};
use sdac_runtime::Policy;
use sdac_runtime::format::SamplerKind;

/// A dense layer in f64: `[outputs, inputs]` weight and bias.
struct Linear {
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl Linear {
    fn of(artifact: &Artifact, name: &str) -> Self {
        let f64s = |n: &str| {
            artifact
                .tensor(n)
                .values()
                .iter()
                .map(|&v| f64::from(v))
                .collect()
        };
        Self {
            weight: f64s(&format!("{name}.weight")),
            bias: f64s(&format!("{name}.bias")),
        }
    }

    fn apply(&self, x: &[f64]) -> Vec<f64> {
        self.weight
            .chunks(x.len())
            .zip(&self.bias)
            .map(|(row, b)| b + row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
            .collect()
    }
}

fn mish(x: f64) -> f64 {
    x * (1.0 + x.exp()).ln().tanh()
}

/// An MLP with Mish after every hidden layer.
struct Mlp {
    hidden: Vec<Linear>,
    output: Linear,
}

impl Mlp {
    fn of(artifact: &Artifact, prefix: &str) -> Self {
        let layers = artifact.metadata.network.hidden.len();
        Self {
            hidden: (0..layers)
                .map(|i| Linear::of(artifact, &format!("{prefix}.hidden.{i}")))
                .collect(),
            output: Linear::of(artifact, &format!("{prefix}.output")),
        }
    }

    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        for layer in &self.hidden {
            h = layer.apply(&h).into_iter().map(mish).collect();
        }
        self.output.apply(&h)
    }
}

/// Both samplers, straight from the format's prose.
struct Reference {
    artifact: Artifact,
    time_in: Linear,
    time_out: Linear,
    net: Mlp,
    critics: Vec<Mlp>,
}

impl Reference {
    fn new(artifact: Artifact) -> Self {
        let critics = if artifact.metadata.sampler.kind == SamplerKind::DdpmBestOfN {
            vec![
                Mlp::of(&artifact, "critic.q1"),
                Mlp::of(&artifact, "critic.q2"),
            ]
        } else {
            Vec::new()
        };
        Self {
            time_in: Linear::of(&artifact, "policy.time_in"),
            time_out: Linear::of(&artifact, "policy.time_out"),
            net: Mlp::of(&artifact, "policy.mlp"),
            critics,
            artifact,
        }
    }

    fn f(&self, obs_n: &[f64], x: &[f64], t: usize) -> Vec<f64> {
        let phases: Vec<f64> = (0..8)
            .map(|j| t as f64 * 10000f64.powf(-(j as f64) / 8.0))
            .collect();
        let embedding: Vec<f64> = phases
            .iter()
            .map(|p| p.sin() / 4.0)
            .chain(phases.iter().map(|p| p.cos() / 4.0))
            .collect();
        let hidden: Vec<f64> = self
            .time_in
            .apply(&embedding)
            .into_iter()
            .map(mish)
            .collect();
        let time = self.time_out.apply(&hidden);
        let input: Vec<f64> = obs_n.iter().chain(x).chain(&time).copied().collect();
        self.net.apply(&input)
    }

    fn act(&self, obs_raw: &[f32], noise: &[f32]) -> Vec<f64> {
        let m = &self.artifact.metadata;
        let s = &m.sampler;
        let obs_n: Vec<f64> = obs_raw
            .iter()
            .zip(&m.obs_normalization.mean)
            .zip(&m.obs_normalization.std)
            .map(|((&o, mean), std)| (f64::from(o) - mean) / std)
            .collect();
        let big_t = s.schedule_steps;
        let betas: Vec<f64> = (0..big_t)
            .map(|t| {
                let fraction = if big_t > 1 {
                    t as f64 / (big_t - 1) as f64
                } else {
                    0.0
                };
                s.beta_scale * (s.beta_min + fraction * (s.beta_max - s.beta_min))
            })
            .collect();
        let mut abar = Vec::new();
        let mut product = 1.0;
        for beta in &betas {
            product *= 1.0 - beta;
            abar.push(product);
        }
        let ad = m.act_dim;
        let row = |r: usize| -> Vec<f64> {
            noise[r * ad..(r + 1) * ad]
                .iter()
                .map(|&z| f64::from(z) * s.init_noise_std)
                .collect()
        };
        let clip = |v: f64| v.clamp(-1.0, 1.0);
        let a: Vec<f64> = match s.kind {
            SamplerKind::DdimSample => {
                let mut x = row(0);
                for (k, &t) in s.timesteps.iter().enumerate() {
                    let x0: Vec<f64> = self.f(&obs_n, &x, t).into_iter().map(clip).collect();
                    x = match s.timesteps.get(k + 1) {
                        None => x0,
                        Some(&next) => x
                            .iter()
                            .zip(&x0)
                            .map(|(xi, x0i)| {
                                let eps = (xi - abar[t].sqrt() * x0i) / (1.0 - abar[t]).sqrt();
                                abar[next].sqrt() * x0i + (1.0 - abar[next]).sqrt() * eps
                            })
                            .collect(),
                    };
                }
                x
            }
            SamplerKind::DdpmBestOfN => {
                let n = s.candidates;
                let mut xs: Vec<Vec<f64>> = (0..n).map(row).collect();
                for (k, &t) in s.timesteps.iter().enumerate() {
                    let prev = if t == 0 { 1.0 } else { abar[t - 1] };
                    let coef_x0 = betas[t] * prev.sqrt() / (1.0 - abar[t]);
                    let coef_xt = (1.0 - prev) * (1.0 - betas[t]).sqrt() / (1.0 - abar[t]);
                    let var = betas[t] * (1.0 - prev) / (1.0 - abar[t]);
                    let sigma = var.max(1e-20).sqrt();
                    for (c, x) in xs.iter_mut().enumerate() {
                        let eps = self.f(&obs_n, x, t);
                        for i in 0..ad {
                            let x0 =
                                clip(x[i] / abar[t].sqrt() - (1.0 / abar[t] - 1.0).sqrt() * eps[i]);
                            x[i] = coef_x0 * x0 + coef_xt * x[i];
                            if t > 0 {
                                x[i] += sigma * f64::from(noise[(n * (k + 1) + c) * ad + i]);
                            }
                        }
                    }
                }
                let scores: Vec<f64> = xs
                    .iter()
                    .map(|x| {
                        let input: Vec<f64> = obs_n.iter().chain(x).copied().collect();
                        let q: Vec<f64> = self.critics.iter().map(|q| q.apply(&input)[0]).collect();
                        q[0].min(q[1])
                    })
                    .collect();
                let mut best = 0;
                for c in 1..n {
                    if scores[c] > scores[best] {
                        best = c;
                    }
                }
                xs.swap_remove(best).into_iter().map(clip).collect()
            }
        };
        a.iter()
            .zip(m.action_low.iter().zip(&m.action_high))
            .map(|(a, (low, high))| low + (a + 1.0) / 2.0 * (high - low))
            .collect()
    }
}

/// The largest |runtime - reference| over `cases` random observations and noise draws. Also
/// checks the comparison is not vacuous: most action values lie strictly inside the bounds
/// (not clipped) and the actions differ between cases.
fn max_difference(shape: &Shape, seed: u64, cases: u64) -> f64 {
    let artifact = synthetic(shape, seed);
    let mut policy = Policy::from_bytes(&artifact.bytes()).expect("loads");
    let reference = Reference::new(artifact);
    let mut worst = 0.0f64;
    let (mut inside, mut total) = (0, 0);
    let mut distinct = std::collections::BTreeSet::new();
    for case in 0..cases {
        let obs: Vec<f32> = normals(policy.obs_dim(), 1000 + case)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let noise = normals(policy.noise_len(), 2000 + case);
        let mut action = vec![0.0f32; policy.act_dim()];
        policy.act(&obs, &noise, &mut action).expect("acts");
        let expected = reference.act(&obs, &noise);
        let m = reference.artifact.metadata.clone();
        for (i, (got, want)) in action.iter().zip(&expected).enumerate() {
            worst = worst.max((f64::from(*got) - want).abs());
            let (low, high) = (m.action_low[i] as f32, m.action_high[i] as f32);
            inside += usize::from(*got > low && *got < high);
            total += 1;
            distinct.insert(got.to_bits());
        }
    }
    println!("{shape:?}: max difference {worst:e}, {inside}/{total} unclipped");
    assert!(
        2 * inside > total,
        "{inside} of {total} action values unclipped"
    );
    assert!(
        distinct.len() as u64 > cases,
        "actions barely vary: {}",
        distinct.len()
    );
    worst
}

#[test]
fn students_match_the_f64_reference() {
    for steps in [1, 2, 4] {
        let worst = max_difference(&Shape::student(steps), 7 + steps as u64, 50);
        assert!(worst <= 1e-5, "K={steps}: max difference {worst}");
    }
}

#[test]
fn teacher_matches_the_f64_reference() {
    let worst = max_difference(&Shape::teacher(), 3, 50);
    assert!(worst <= 1e-5, "max difference {worst}");
}

#[test]
fn wide_odd_layers_match_the_f64_reference() {
    // Widths that are not multiples of the kernel's 8-lane panels, more candidates than one
    // row block, and a single hidden layer.
    let mut teacher = Shape::teacher();
    teacher.hidden = vec![37];
    teacher.candidates = 7;
    teacher.obs_dim = 11;
    let worst = max_difference(&teacher, 5, 20);
    assert!(worst <= 1e-5, "teacher: max difference {worst}");
    let mut student = Shape::student(2);
    student.hidden = vec![70, 9, 257];
    student.act_dim = 9;
    let worst = max_difference(&student, 6, 20);
    assert!(worst <= 1e-5, "student: max difference {worst}");
}
