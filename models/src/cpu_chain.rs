//! The noise network's passes along one reverse chain, on the CPU as plain `f32` loops around
//! `gemm`: biases are written into the output before the product accumulates onto them and
//! Mish runs in place, so a step allocates nothing and makes one pass per layer. What the steps
//! share (the states' part of the first layer, each step's time features) is computed once, with
//! candle, when the chain starts. Inference only: nothing here is differentiated.

use candle_core::{DType, Device, Result, Tensor};

use crate::noise_net::{NoiseNet, TIME_EMBEDDING_DIM};
use sdac_runtime::mish::{MishPart, mish_in_place};

/// Rows that go through all layers together: their activations (two buffers of
/// `ROW_BLOCK x width`) stay in the core's L2 cache between one layer's product and the next
/// layer's, instead of a whole chunk's making a round trip through memory at every layer.
const ROW_BLOCK: usize = 256;

/// A dense layer as row-major `[outputs, inputs]` weights and a bias.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn of(linear: &candle_nn::Linear) -> Result<Self> {
        let (outputs, inputs) = linear.weight().dims2()?;
        let bias = match linear.bias() {
            Some(bias) => bias.to_dtype(DType::F32)?.to_vec1()?,
            None => vec![0.0; outputs],
        };
        Ok(Self {
            weight: linear
                .weight()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?,
            bias,
            inputs,
            outputs,
        })
    }
}

/// One reverse chain over `rows` states; see [`CpuChain::predict_noise`].
pub(crate) struct CpuChain {
    rows: usize,
    act_dim: usize,
    /// `obs W_s^T`, `[rows, width_0]`.
    obs_part: Vec<f32>,
    /// `time_features(t) W_t^T + b_0` for every step `t`, `[steps, width_0]`.
    time_part: Vec<f32>,
    /// The first layer's action columns, `[width_0, act_dim]`.
    action_weight: Vec<f32>,
    width_0: usize,
    /// Hidden layers after the first, then the output layer.
    layers: Vec<Dense>,
    /// Rows per chunk: each compute thread takes whole chunks, so no product is split.
    chunk_rows: usize,
    /// Two activation buffers of at most [`ROW_BLOCK`] rows per chunk.
    scratch: Vec<[Vec<f32>; 2]>,
}

impl CpuChain {
    pub(crate) fn new(net: &NoiseNet, obs: &Tensor, steps: usize) -> Result<Self> {
        let (rows, obs_dim) = obs.dims2()?;
        let (hidden, output) = net.mlp().layers();
        let Some(first) = hidden.first() else {
            candle_core::bail!("the CPU chain needs a noise network with a hidden layer")
        };
        let first_weight = first.weight().to_dtype(DType::F32)?;
        let (width_0, inputs) = first_weight.dims2()?;
        let act_dim = inputs - obs_dim - TIME_EMBEDDING_DIM;
        let obs_part = obs
            .to_dtype(DType::F32)?
            .matmul(&first_weight.narrow(1, 0, obs_dim)?.t()?)?;
        let step_indices: Vec<f32> = (0..steps).map(|t| t as f32).collect();
        let step_indices = Tensor::from_vec(step_indices, steps, obs.device())?;
        let mut time_part = net.time_features(&step_indices)?.matmul(
            &first_weight
                .narrow(1, obs_dim + act_dim, TIME_EMBEDDING_DIM)?
                .t()?,
        )?;
        if let Some(bias) = first.bias() {
            time_part = time_part.broadcast_add(bias)?;
        }
        let action_weight = first_weight.narrow(1, obs_dim, act_dim)?.contiguous()?;
        let mut layers = hidden[1..]
            .iter()
            .map(Dense::of)
            .collect::<Result<Vec<_>>>()?;
        layers.push(Dense::of(output)?);
        let widest = layers
            .iter()
            .map(|l| l.outputs)
            .max()
            .unwrap_or(0)
            .max(width_0);
        let host =
            |t: Tensor| -> Result<Vec<f32>> { t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1() };
        let threads = rayon::current_num_threads().max(1);
        let chunk_rows = rows.div_ceil(threads).max(1);
        let scratch = (0..rows.div_ceil(chunk_rows))
            .map(|_| {
                let block_rows = chunk_rows.min(ROW_BLOCK);
                [
                    vec![0.0; block_rows * widest],
                    vec![0.0; block_rows * widest],
                ]
            })
            .collect();
        Ok(Self {
            rows,
            act_dim,
            obs_part: host(obs_part)?,
            time_part: host(time_part)?,
            action_weight: host(action_weight)?,
            width_0,
            layers,
            chunk_rows,
            scratch,
        })
    }

    /// Writes `eps_theta(s, x, t)` for every row into `eps` (`[rows, act_dim]`), from the noisy
    /// actions `x` (`[rows, act_dim]`) at step `t`.
    pub(crate) fn predict_noise(&mut self, x: &[f32], t: usize, eps: &mut [f32]) -> Result<()> {
        let (rows, ad, w0) = (self.rows, self.act_dim, self.width_0);
        let steps = self.time_part.len() / w0.max(1);
        if x.len() != rows * ad || eps.len() != rows * ad || t >= steps {
            candle_core::bail!(
                "CPU chain of {rows} x {ad} over {steps} steps got x {}, eps {}, step {t}",
                x.len(),
                eps.len()
            );
        }
        let net = ChainNet {
            act_dim: ad,
            width_0: w0,
            time_row: &self.time_part[t * w0..(t + 1) * w0],
            action_weight: &self.action_weight,
            layers: &self.layers,
        };
        let (chunk_rows, single_chunk) = (self.chunk_rows, self.scratch.len() == 1);
        let chunks = self
            .scratch
            .iter_mut()
            .zip(self.obs_part.chunks(chunk_rows * w0))
            .zip(
                x.chunks(chunk_rows * ad)
                    .zip(eps.chunks_mut(chunk_rows * ad)),
            );
        if single_chunk {
            for ((scratch, obs_part), (x, eps)) in chunks {
                net.predict(scratch, obs_part, x, eps);
            }
        } else {
            rayon::scope(|scope| {
                for ((scratch, obs_part), (x, eps)) in chunks {
                    let net = &net;
                    scope.spawn(move |_| net.predict(scratch, obs_part, x, eps));
                }
            });
        }
        Ok(())
    }
}

/// What every chunk of rows reads at one step.
struct ChainNet<'a> {
    act_dim: usize,
    width_0: usize,
    time_row: &'a [f32],
    action_weight: &'a [f32],
    layers: &'a [Dense],
}

impl ChainNet<'_> {
    /// The network on one chunk of rows: `obs_part` `[r, width_0]`, `x` and `eps` `[r, act_dim]`,
    /// [`ROW_BLOCK`] rows at a time through all layers.
    fn predict(&self, scratch: &mut [Vec<f32>; 2], obs_part: &[f32], x: &[f32], eps: &mut [f32]) {
        let (ad, w0) = (self.act_dim, self.width_0);
        let blocks = obs_part
            .chunks(ROW_BLOCK * w0)
            .zip(x.chunks(ROW_BLOCK * ad).zip(eps.chunks_mut(ROW_BLOCK * ad)));
        for (obs_part, (x, eps)) in blocks {
            self.predict_block(scratch, obs_part, x, eps);
        }
    }

    /// The network on at most [`ROW_BLOCK`] rows.
    fn predict_block(
        &self,
        scratch: &mut [Vec<f32>; 2],
        obs_part: &[f32],
        x: &[f32],
        eps: &mut [f32],
    ) {
        let (ad, w0) = (self.act_dim, self.width_0);
        let rows = x.len() / ad;
        let [current, next] = scratch;
        let first = &mut current[..rows * w0];
        for (row, obs_row) in first.chunks_exact_mut(w0).zip(obs_part.chunks_exact(w0)) {
            for ((h, o), c) in row.iter_mut().zip(obs_row).zip(self.time_row) {
                *h = o + c;
            }
        }
        accumulate_product(first, x, self.action_weight, rows, ad, w0);
        mish_in_place(first, MishPart::Value);

        let (mut input, mut output) = (current, next);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let out = if i == last {
                &mut eps[..]
            } else {
                &mut output[..rows * layer.outputs]
            };
            for row in out.chunks_exact_mut(layer.outputs) {
                row.copy_from_slice(&layer.bias);
            }
            let inputs = &input[..rows * layer.inputs];
            accumulate_product(
                out,
                inputs,
                &layer.weight,
                rows,
                layer.inputs,
                layer.outputs,
            );
            if i != last {
                mish_in_place(out, MishPart::Value);
                std::mem::swap(&mut input, &mut output);
            }
        }
    }
}

/// `dst [m, n] += lhs [m, k] weight^T`, with `weight` row-major `[n, k]`; all contiguous, sizes
/// checked by the caller.
fn accumulate_product(dst: &mut [f32], lhs: &[f32], weight: &[f32], m: usize, k: usize, n: usize) {
    debug_assert!(dst.len() == m * n && lhs.len() == m * k && weight.len() == n * k);
    // SAFETY: `dst` holds m x n values with row stride n, `lhs` m x k with row stride k, and
    // `weight` n x k read as its transpose (k x n: row stride 1, column stride k); the caller
    // sized them so (checked above in debug builds, and by `predict_noise`'s layer shapes).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            weight.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
