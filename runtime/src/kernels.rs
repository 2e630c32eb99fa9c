//! Dense layers `y = W x + b` on f32 slices for a few rows at a time, with weights packed once at
//! load. One generic kernel, compiled twice: for the baseline target and, picked at load where
//! the CPU has them, for AVX2 with fused multiply-adds (and F16C); batched layers have a third
//! build for AVX-512F, 4 rows x 64 outputs per call.
//!
//! Weights are stored as f32, or in half precision where every weight of the layer is exactly a
//! half-precision value (an artifact written with rounded weights, `sdac distill --weights
//! f16`): the same values in half the bytes, widened back to f32 exactly as they are loaded.
//! A one-row layer streams its weights from L2, so half the bytes is most of the time saved.
//!
//! Packing: the outputs are cut into panels of [`LANES`] (the last one zero-padded), and the
//! panels into groups (the last group may have fewer, see [`Packing`]). A group stores its
//! weights input by input: for input `j`, the `LANES` weights `W[p * LANES + l][j]` of each of
//! its panels `p` side by side, then input `j + 1`. A micro-kernel keeps `ROWS x PANELS` vectors
//! of accumulators in registers and, for each input, loads `PANELS` adjacent weight vectors and
//! broadcasts one input per row. Each call takes a whole group, so it reads its weights as one
//! sequential stream.

use crate::half::F16;

/// Values per weight vector (one AVX register of f32).
pub(crate) const LANES: usize = 8;

/// How a layer's weights are grouped, chosen at load ([`Packing::for_calls`]) for the rows its
/// calls will have and the instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    /// Groups of 8 panels. At one row a call streams 64 outputs' weights at once (the hardware
    /// prefetcher follows one stream better than eight); in a batch on AVX-512 a call keeps 4
    /// rows x 64 outputs in its 32 registers.
    Groups8,
    /// Groups of 4 panels: the AVX2 3-row calls of a batch reuse a group's 32 KiB from L1
    /// (wider groups read in halves use only half of L1's sets and were measured slower).
    Groups4,
}

impl Packing {
    /// The packing for a layer whose calls have more than one row (`batched`) or one.
    pub(crate) fn for_calls(batched: bool, isa: Isa) -> Self {
        if batched && !isa.avx512 {
            Packing::Groups4
        } else {
            Packing::Groups8
        }
    }

    /// Panels per group, and per micro-kernel call.
    const fn group_panels(self) -> usize {
        match self {
            Packing::Groups8 => SINGLE_ROW_PANELS,
            Packing::Groups4 => BATCH_PANELS,
        }
    }
}

/// The instruction set the kernels run with, decided once (at load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Isa {
    /// Only true where the CPU was found to have AVX2, FMA and F16C.
    avx2_fma: bool,
    /// Only true where it also has AVX-512F: batched layers then run 4 x 64 register blocks.
    avx512: bool,
}

impl Isa {
    /// The best the running CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx2_fma = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        #[cfg(target_arch = "x86_64")]
        let avx512 = avx2_fma && is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2_fma, avx512) = (false, false);
        Self { avx2_fma, avx512 }
    }

    /// The same without AVX-512 (tests run both builds on machines that have it).
    #[cfg(test)]
    pub(crate) fn without_avx512(self) -> Self {
        Self {
            avx512: false,
            ..self
        }
    }

    /// Whether batched layers run the AVX-512 build (for reports).
    pub(crate) fn avx512(self) -> bool {
        self.avx512
    }

    /// Whether the AVX2+FMA(+F16C) build runs (for reports).
    pub(crate) fn avx2_fma(self) -> bool {
        self.avx2_fma
    }
}

/// A dense layer with packed weights and its own bias.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    inputs: usize,
    outputs: usize,
    /// `panels * inputs * LANES` values in groups, see the module documentation.
    packed: Packed,
    packing: Packing,
    bias: Vec<f32>,
}

impl Dense {
    /// A layer from row-major `weight` (`[outputs, inputs]`) and `bias` (`outputs` values);
    /// `None` if the lengths disagree.
    pub(crate) fn new(
        inputs: usize,
        outputs: usize,
        weight: &[f32],
        bias: Vec<f32>,
        packing: Packing,
    ) -> Option<Self> {
        if weight.len() != inputs.checked_mul(outputs)? || bias.len() != outputs {
            return None;
        }
        let panels = outputs.div_ceil(LANES);
        let mut packed = vec![0.0; panels * inputs * LANES];
        for (o, row) in weight.chunks_exact(inputs.max(1)).enumerate() {
            let (panel, lane) = (o / LANES, o % LANES);
            let group = Group::of(panel, panels, packing);
            let within = panel - group.first_panel;
            for (j, &w) in row.iter().enumerate() {
                packed[group.first_panel * inputs * LANES
                    + (j * group.panels + within) * LANES
                    + lane] = w;
            }
        }
        let packed = match packed.iter().map(|&w| F16::exact(w)).collect() {
            Some(halves) => Packed::F16(halves),
            None => Packed::F32(packed),
        };
        Some(Self {
            inputs,
            outputs,
            packed,
            packing,
            bias,
        })
    }

    /// Whether the weights are stored in half precision.
    pub(crate) fn is_half(&self) -> bool {
        matches!(self.packed, Packed::F16(_))
    }

    /// The columns `first..first + count` of `weight` (`[outputs, inputs]`) as a layer with
    /// `bias`.
    pub(crate) fn from_columns(
        inputs: usize,
        outputs: usize,
        weight: &[f32],
        first: usize,
        count: usize,
        bias: Vec<f32>,
        packing: Packing,
    ) -> Option<Self> {
        if first.checked_add(count)? > inputs || weight.len() != inputs.checked_mul(outputs)? {
            return None;
        }
        let columns: Vec<f32> = weight
            .chunks_exact(inputs.max(1))
            .flat_map(|row| &row[first..first + count])
            .copied()
            .collect();
        Self::new(count, outputs, &columns, bias, packing)
    }

    pub(crate) fn inputs(&self) -> usize {
        self.inputs
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    /// `y[r] = W x[r] + bias` for `rows` rows (`x`: `rows * inputs`, `y`: `rows * outputs`, row
    /// major), with the layer's own bias.
    pub(crate) fn forward(&self, isa: Isa, x: &[f32], y: &mut [f32], rows: usize) {
        self.forward_with_bias(isa, x, y, rows, &self.bias);
    }

    /// The same with another `bias` (`outputs` values). Slices shorter than the sizes say are a
    /// bug of the caller (buffers are sized at load): the rows that fit are computed.
    pub(crate) fn forward_with_bias(
        &self,
        isa: Isa,
        x: &[f32],
        y: &mut [f32],
        rows: usize,
        bias: &[f32],
    ) {
        let io = Io { x, y, rows, bias };
        match &self.packed {
            Packed::F32(weights) => self.forward_stored(isa, weights, io),
            Packed::F16(weights) => self.forward_stored(isa, weights, io),
        }
    }

    /// The forward pass on the build `isa` selects, with the weights as stored.
    fn forward_stored<W: Weight>(&self, isa: Isa, weights: &[W], io: Io) {
        #[cfg(target_arch = "x86_64")]
        if isa.avx512 {
            // SAFETY: `isa.avx512` is only true where the CPU has AVX-512F, AVX2, FMA and F16C.
            unsafe { forward_avx512(self, weights, io) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if isa.avx2_fma {
            // SAFETY: `isa.avx2_fma` is only true where the CPU has AVX2, FMA and F16C.
            unsafe { forward_avx2_fma(self, weights, io) };
            return;
        }
        let _ = isa;
        forward_generic::<false, false, W>(self, weights, io);
    }
}

/// A layer's packed weights, in one of the two storage types.
#[derive(Debug, Clone)]
enum Packed {
    F32(Vec<f32>),
    F16(Vec<F16>),
}

/// A stored weight.
trait Weight: Copy {
    fn to_f32(self) -> f32;

    /// `LANES` weights from `ptr` as f32.
    ///
    /// # Safety
    /// `ptr` must point to `LANES` readable values, and the CPU must have AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load_lanes(ptr: *const Self) -> std::arch::x86_64::__m256;

    /// `2 * LANES` weights from `ptr` as f32.
    ///
    /// # Safety
    /// `ptr` must point to `2 * LANES` readable values, and the CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load_double_lanes(ptr: *const Self) -> std::arch::x86_64::__m512;
}

impl Weight for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_lanes(ptr: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(ptr) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_double_lanes(ptr: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller's contract.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(ptr) }
    }
}

impl Weight for F16 {
    fn to_f32(self) -> f32 {
        F16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_lanes(ptr: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::{_mm_loadu_si128, _mm256_cvtph_ps};
        // SAFETY: the caller's contract; `F16` is a transparent u16, 8 of them are 128 bits.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(ptr.cast())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load_double_lanes(ptr: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::{_mm256_loadu_si256, _mm512_cvtph_ps};
        // SAFETY: the caller's contract; 16 `F16` are 256 bits.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(ptr.cast())) }
    }
}

/// The activations of one call: `rows` rows of `x` in, of `y` out, and the bias.
struct Io<'a> {
    x: &'a [f32],
    y: &'a mut [f32],
    rows: usize,
    bias: &'a [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn forward_avx2_fma<W: Weight>(layer: &Dense, weights: &[W], io: Io) {
    forward_generic::<true, false, W>(layer, weights, io);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
fn forward_avx512<W: Weight>(layer: &Dense, weights: &[W], io: Io) {
    forward_generic::<true, true, W>(layer, weights, io);
}

/// Rows per micro-kernel call in batched layers, and panels per call in each case (AVX-512:
/// `WIDE_ROWS` rows of a whole 8-panel group).
const WIDE_ROWS: usize = 4;
const BATCH_ROWS: usize = 3;
const BATCH_PANELS: usize = 4;
const SINGLE_ROW_PANELS: usize = 8;
const _: () = assert!(
    BATCH_ROWS == 3 && BATCH_PANELS == 4 && SINGLE_ROW_PANELS == 8,
    "`dispatch` covers 3 x 4 and 1 x 8"
);

/// A packing group: its first panel and its number of panels.
#[derive(Clone, Copy)]
struct Group {
    first_panel: usize,
    panels: usize,
}

impl Group {
    /// The group that holds `panel` (`< panels`) of a layer with `panels` panels.
    fn of(panel: usize, panels: usize, packing: Packing) -> Self {
        let group_panels = packing.group_panels();
        let first_panel = panel / group_panels * group_panels;
        Self {
            first_panel,
            panels: group_panels.min(panels - first_panel),
        }
    }
}

#[inline(always)]
fn forward_generic<const FMA: bool, const WIDE: bool, W: Weight>(
    layer: &Dense,
    weights: &[W],
    io: Io,
) {
    let Io { x, y, rows, bias } = io;
    let (inputs, outputs) = (layer.inputs, layer.outputs);
    let rows = rows
        .min(x.len() / inputs.max(1))
        .min(y.len() / outputs.max(1));
    if bias.len() != outputs || inputs == 0 {
        return;
    }
    let panels = outputs.div_ceil(LANES);
    let panels_per_call = if rows == 1 {
        SINGLE_ROW_PANELS
    } else {
        BATCH_PANELS
    };
    for first_panel in (0..panels).step_by(layer.packing.group_panels()) {
        let group = Group::of(first_panel, panels, layer.packing);
        let group_start = group.first_panel * inputs * LANES;
        let Some(group_weights) =
            weights.get(group_start..group_start + group.panels * inputs * LANES)
        else {
            return;
        };
        #[cfg(target_arch = "x86_64")]
        if WIDE && rows > 1 && group.panels == SINGLE_ROW_PANELS {
            let mut row = 0;
            while row < rows {
                let row_count = WIDE_ROWS.min(rows - row);
                let job = Job {
                    weights: group_weights,
                    stride: group.panels * LANES,
                    inputs,
                    outputs,
                    first_output: group.first_panel * LANES,
                    bias,
                    x: &x[row * inputs..(row + row_count) * inputs],
                    y: &mut y[row * outputs..(row + row_count) * outputs],
                };
                // SAFETY: `WIDE` is only true inside `forward_avx512`, which runs only where the
                // CPU has AVX-512F.
                unsafe {
                    match row_count {
                        1 => avx512::micro::<W, 1>(job),
                        2 => avx512::micro::<W, 2>(job),
                        3 => avx512::micro::<W, 3>(job),
                        _ => avx512::micro::<W, 4>(job),
                    }
                };
                row += row_count;
            }
            continue;
        }
        let mut within = 0;
        while within < group.panels {
            let count = panels_per_call.min(group.panels - within);
            let mut row = 0;
            while row < rows {
                let row_count = BATCH_ROWS.min(rows - row);
                let job = Job {
                    weights: &group_weights[within * LANES..],
                    stride: group.panels * LANES,
                    inputs,
                    outputs,
                    first_output: (group.first_panel + within) * LANES,
                    bias,
                    x: &x[row * inputs..(row + row_count) * inputs],
                    y: &mut y[row * outputs..(row + row_count) * outputs],
                };
                dispatch::<FMA, W>(job, row_count, count);
                row += row_count;
            }
            within += count;
        }
    }
}

/// One micro-kernel call: some panels (`weights`) against some rows (`x`, `y`).
struct Job<'a, W> {
    /// From the call's first weight vector at input 0 to the end of its group: panel `p`'s
    /// vector at input `j` starts at `j * stride + p * LANES`.
    weights: &'a [W],
    /// Values from one input to the next in `weights`.
    stride: usize,
    inputs: usize,
    outputs: usize,
    first_output: usize,
    bias: &'a [f32],
    x: &'a [f32],
    y: &'a mut [f32],
}

/// Calls the micro-kernel for `rows` (1 ..= `BATCH_ROWS`) and `panels` (1 ..= 8 for one row,
/// 1 ..= `BATCH_PANELS` for more).
#[inline(always)]
fn dispatch<const FMA: bool, W: Weight>(job: Job<W>, rows: usize, panels: usize) {
    match (rows, panels) {
        (1, 1) => one_row::<FMA, W, 1, 4>(job),
        (1, 2) => one_row::<FMA, W, 2, 4>(job),
        (1, 3) => one_row::<FMA, W, 3, 4>(job),
        (1, 4) => one_row::<FMA, W, 4, 2>(job),
        (1, 5) => one_row::<FMA, W, 5, 2>(job),
        (1, 6) => one_row::<FMA, W, 6, 2>(job),
        (1, 7) => one_row::<FMA, W, 7, 2>(job),
        (1, _) => micro::<FMA, W, 1, 8>(job),
        (2, 1) => micro::<FMA, W, 2, 1>(job),
        (2, 2) => micro::<FMA, W, 2, 2>(job),
        (2, 3) => micro::<FMA, W, 2, 3>(job),
        (2, _) => micro::<FMA, W, 2, 4>(job),
        (_, 1) => micro::<FMA, W, 3, 1>(job),
        (_, 2) => micro::<FMA, W, 3, 2>(job),
        (_, 3) => micro::<FMA, W, 3, 3>(job),
        (_, _) => micro::<FMA, W, 3, 4>(job),
    }
}

/// One micro-kernel call with `R` rows and `P` panels, on the build `FMA` selects.
#[inline(always)]
fn micro<const FMA: bool, W: Weight, const R: usize, const P: usize>(job: Job<W>) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: `FMA` is only true inside `forward_avx2_fma`, which runs only where the CPU
        // has AVX2, FMA and F16C.
        unsafe { avx2::micro::<W, R, P>(job) };
        return;
    }
    portable_micro::<W, R, P>(job);
}

/// One row and `P` panels (fewer than 8) on the build `FMA` selects. The AVX2 build sums the
/// inputs in `S` interleaved partial sums, so that `S * P` chains of fused multiply-adds keep
/// the FMA units busy instead of waiting on one another (one output panel, as a policy's last
/// layer has, would otherwise wait the full latency on every input).
#[inline(always)]
fn one_row<const FMA: bool, W: Weight, const P: usize, const S: usize>(job: Job<W>) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: as in `micro`.
        unsafe { avx2::one_row::<W, P, S>(job) };
        return;
    }
    portable_micro::<W, 1, P>(job);
}

/// The bias values of panels `0..P` of `job` (0 in the padding lanes).
#[inline(always)]
fn panel_bias<W, const P: usize>(job: &Job<W>) -> [[f32; LANES]; P] {
    let mut bias = [[0.0f32; LANES]; P];
    for (p, lanes) in bias.iter_mut().enumerate() {
        for (l, b) in lanes.iter_mut().enumerate() {
            *b = job
                .bias
                .get(job.first_output + p * LANES + l)
                .copied()
                .unwrap_or(0.0);
        }
    }
    bias
}

/// Whether `job.weights` holds `P` panels at all `job.inputs` inputs and `job.x` holds `R` rows.
#[inline(always)]
fn job_fits<W, const R: usize, const P: usize>(job: &Job<W>) -> bool {
    job.inputs >= 1
        && (job.inputs - 1) * job.stride + P * LANES <= job.weights.len()
        && job.x.len() >= R * job.inputs
}

/// Writes the accumulators of `R` rows and `P` panels to `job.y` (only the real outputs).
#[inline(always)]
fn store<W, const R: usize, const P: usize>(job: Job<W>, acc: &[[[f32; LANES]; P]; R]) {
    for (r, row_acc) in acc.iter().enumerate() {
        let Some(y_row) = job.y.get_mut(r * job.outputs..(r + 1) * job.outputs) else {
            return;
        };
        for (p, panel_acc) in row_acc.iter().enumerate() {
            let start = job.first_output + p * LANES;
            let end = (start + LANES).min(job.outputs);
            if start < end {
                y_row[start..end].copy_from_slice(&panel_acc[..end - start]);
            }
        }
    }
}

/// The portable build: plain arrays the compiler vectorises for the baseline target.
#[inline(always)]
fn portable_micro<W: Weight, const R: usize, const P: usize>(job: Job<W>) {
    if !job_fits::<W, R, P>(&job) {
        return;
    }
    let (inputs, stride) = (job.inputs, job.stride);
    let bias = panel_bias::<W, P>(&job);
    let mut acc = [bias; R];
    let x: [&[f32]; R] = std::array::from_fn(|r| &job.x[r * inputs..(r + 1) * inputs]);
    for (j, at_input) in job.weights.chunks(stride).take(inputs).enumerate() {
        let (w, _) = at_input.as_chunks::<LANES>();
        for (row_acc, x_row) in acc.iter_mut().zip(&x) {
            let xv = x_row[j];
            for (panel_acc, wv) in row_acc.iter_mut().zip(w) {
                for l in 0..LANES {
                    panel_acc[l] += wv[l].to_f32() * xv;
                }
            }
        }
    }
    store(job, &acc);
}

/// The AVX2+FMA build with explicit intrinsics, so that the `R x P` accumulators stay in
/// registers (the compiler spilled the array version's on every input).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    use super::{Job, LANES, Weight, job_fits, panel_bias, store};

    // Index loops on purpose: with iterators the compiler kept the accumulators in memory.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn micro<W: Weight, const R: usize, const P: usize>(job: Job<W>) {
        if !job_fits::<W, R, P>(&job) {
            return;
        }
        let (inputs, stride) = (job.inputs, job.stride);
        let bias = panel_bias::<W, P>(&job);
        let weights = job.weights.as_ptr();
        let x = job.x.as_ptr();
        // SAFETY (all loads below): checked above, the weights hold `LANES` values from
        // `j * stride + p * LANES` and `x` holds `R * inputs` values; `p < P`, `r < R`,
        // `j < inputs`.
        let mut acc = [[unsafe { _mm256_loadu_ps(bias[0].as_ptr()) }; P]; R];
        for r in 0..R {
            for p in 0..P {
                acc[r][p] = unsafe { _mm256_loadu_ps(bias[p].as_ptr()) };
            }
        }
        for j in 0..inputs {
            let mut w = [acc[0][0]; P];
            for p in 0..P {
                w[p] = unsafe { W::load_lanes(weights.add(j * stride + p * LANES)) };
            }
            for r in 0..R {
                let xv = _mm256_set1_ps(unsafe { *x.add(r * inputs + j) });
                for p in 0..P {
                    acc[r][p] = _mm256_fmadd_ps(w[p], xv, acc[r][p]);
                }
            }
        }
        let mut out = [[[0.0f32; LANES]; P]; R];
        for (out_row, acc_row) in out.iter_mut().zip(&acc) {
            for (o, a) in out_row.iter_mut().zip(acc_row) {
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
            }
        }
        store(job, &out);
    }

    /// See `super::one_row`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn one_row<W: Weight, const P: usize, const S: usize>(job: Job<W>) {
        if !job_fits::<W, 1, P>(&job) {
            return;
        }
        let (inputs, stride) = (job.inputs, job.stride);
        let bias = panel_bias::<W, P>(&job);
        let weights = job.weights.as_ptr();
        let x = job.x.as_ptr();
        // SAFETY (all loads below): as in `micro` with `R = 1`.
        let zero = _mm256_setzero_ps();
        let mut acc = [[zero; P]; S];
        for p in 0..P {
            acc[0][p] = unsafe { _mm256_loadu_ps(bias[p].as_ptr()) };
        }
        let whole = inputs / S * S;
        let mut j = 0;
        while j < whole {
            for s in 0..S {
                let xv = _mm256_set1_ps(unsafe { *x.add(j + s) });
                for p in 0..P {
                    let w = unsafe { W::load_lanes(weights.add((j + s) * stride + p * LANES)) };
                    acc[s][p] = _mm256_fmadd_ps(w, xv, acc[s][p]);
                }
            }
            j += S;
        }
        for j in whole..inputs {
            let xv = _mm256_set1_ps(unsafe { *x.add(j) });
            for p in 0..P {
                let w = unsafe { W::load_lanes(weights.add(j * stride + p * LANES)) };
                acc[0][p] = _mm256_fmadd_ps(w, xv, acc[0][p]);
            }
        }
        let mut out = [[[0.0f32; LANES]; P]; 1];
        for p in 0..P {
            let mut sum = acc[0][p];
            for s in 1..S {
                sum = _mm256_add_ps(sum, acc[s][p]);
            }
            unsafe { _mm256_storeu_ps(out[0][p].as_mut_ptr(), sum) };
        }
        store(job, &out);
    }
}

/// The AVX-512 build for batches: `R` rows (up to 4) of a whole 8-panel group, held as
/// `R x 4` registers of 16 lanes (Zen 4 and the Intel server cores have 32 such registers).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_storeu_ps};

    use super::{Job, LANES, SINGLE_ROW_PANELS, Weight, job_fits, panel_bias, store};

    /// Registers of `2 * LANES` values per row.
    const WIDE: usize = SINGLE_ROW_PANELS / 2;

    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) fn micro<W: Weight, const R: usize>(job: Job<W>) {
        if !job_fits::<W, R, SINGLE_ROW_PANELS>(&job) {
            return;
        }
        let (inputs, stride) = (job.inputs, job.stride);
        let bias = panel_bias::<W, SINGLE_ROW_PANELS>(&job);
        let bias = bias.as_flattened();
        let weights = job.weights.as_ptr();
        let x = job.x.as_ptr();
        // SAFETY (all loads below): checked above, the weights hold `SINGLE_ROW_PANELS * LANES`
        // values from `j * stride` and `x` holds `R * inputs` values; `w < WIDE`, `r < R`,
        // `j < inputs`; `bias` holds `SINGLE_ROW_PANELS * LANES` values.
        let bias_vectors: [_; WIDE] =
            std::array::from_fn(|w| unsafe { _mm512_loadu_ps(bias.as_ptr().add(w * 2 * LANES)) });
        let mut acc = [bias_vectors; R];
        for j in 0..inputs {
            let at_input = unsafe { weights.add(j * stride) };
            let w: [_; WIDE] = std::array::from_fn(|w| unsafe {
                W::load_double_lanes(at_input.add(w * 2 * LANES))
            });
            for r in 0..R {
                let xv = _mm512_set1_ps(unsafe { *x.add(r * inputs + j) });
                for v in 0..WIDE {
                    acc[r][v] = _mm512_fmadd_ps(w[v], xv, acc[r][v]);
                }
            }
        }
        let mut out = [[[0.0f32; LANES]; SINGLE_ROW_PANELS]; R];
        for (out_row, acc_row) in out.iter_mut().zip(&acc) {
            let flat = out_row.as_flattened_mut();
            for (v, a) in acc_row.iter().enumerate() {
                unsafe { _mm512_storeu_ps(flat.as_mut_ptr().add(v * 2 * LANES), *a) };
            }
        }
        store(job, &out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoiseRng;

    fn uniform(n: usize, rng: &mut NoiseRng) -> Vec<f32> {
        (0..n).map(|_| (2.0 * rng.uniform() - 1.0) as f32).collect()
    }

    /// Every build the CPU has (portable, AVX2, AVX-512) against a plain f64 `W x + b`, for
    /// shapes that cover every row and panel count `dispatch` has (1 row x 1..=9 panels; 1, 2
    /// and 3 rows x 1..=4 panels; 1 to 4 rows of whole 8-panel groups), both packings, and
    /// weights stored as f32 and (where every weight is a half-precision value: multiples of
    /// 2^-10 in [-1, 1]) as f16.
    #[test]
    fn both_builds_match_a_plain_dense_layer() {
        let mut rng = NoiseRng::new(1);
        let builds = [
            Isa {
                avx2_fma: false,
                avx512: false,
            },
            Isa::detect().without_avx512(),
            Isa::detect(),
        ];
        let mut shapes = vec![(1, 1, 1)];
        for panels in 1..=9 {
            shapes.push((13, 8 * panels - 3, 1));
        }
        for rows in [2, 4, 5, 7] {
            // 8 and 9 panels: a whole 8-panel group, which AVX-512 runs 4 rows at a time.
            for panels in (1..=5).chain(8..=9) {
                shapes.push((30, 8 * panels - 1, rows));
            }
        }
        for ((inputs, outputs, rows), half) in
            shapes.into_iter().flat_map(|s| [(s, false), (s, true)])
        {
            let mut weight = uniform(inputs * outputs, &mut rng);
            if half {
                weight
                    .iter_mut()
                    .for_each(|w| *w = (*w * 1024.0).round() / 1024.0);
            }
            let bias = uniform(outputs, &mut rng);
            let x = uniform(rows * inputs, &mut rng);
            for packing in [Packing::Groups8, Packing::Groups4] {
                let layer = Dense::new(inputs, outputs, &weight, bias.clone(), packing)
                    .expect("sizes agree");
                // Random f32 weights are not all half-precision values: that layer stays f32.
                assert_eq!(layer.is_half(), half);
                for isa in builds {
                    let mut y = vec![f32::NAN; rows * outputs];
                    layer.forward(isa, &x, &mut y, rows);
                    for r in 0..rows {
                        for o in 0..outputs {
                            let expected = f64::from(bias[o])
                                + (0..inputs)
                                    .map(|j| {
                                        f64::from(weight[o * inputs + j])
                                            * f64::from(x[r * inputs + j])
                                    })
                                    .sum::<f64>();
                            let got = f64::from(y[r * outputs + o]);
                            assert!(
                                (got - expected).abs() < 1e-5,
                                "{isa:?} {packing:?} {inputs}x{outputs} row {r}: {got} vs {expected}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_sizes_are_refused_and_short_buffers_do_not_panic() {
        let packing = Packing::Groups8;
        assert!(Dense::new(3, 2, &[0.0; 5], vec![0.0; 2], packing).is_none());
        assert!(Dense::new(3, 2, &[0.0; 6], vec![0.0; 3], packing).is_none());
        assert!(Dense::from_columns(3, 2, &[0.0; 6], 2, 2, vec![0.0; 2], packing).is_none());
        let layer = Dense::new(3, 2, &[1.0; 6], vec![0.5; 2], packing).expect("sizes agree");
        let mut y = [0.0; 3];
        layer.forward(Isa::detect(), &[1.0; 4], &mut y, 5);
        assert_eq!(y, [3.5, 3.5, 0.0]);
    }
}
