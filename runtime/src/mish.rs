//! Mish and its derivative on f32 slices, in place: one exponential per element, branch-free so
//! that the loops vectorise. Compiled twice, for the baseline x86-64 target and (picked at run
//! time where the CPU has them) for AVX2 with fused multiply-adds.

use crate::kernels::Isa;

/// Above this, `mish(x) = x` and its derivative is 1 to f32 precision.
const MISH_LINEAR_FROM: f32 = 20.0;
/// Below this, `e^x` underflows f32's normal range.
const EXP_FLOOR: f32 = -87.0;

/// Which function [`mish_in_place`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MishPart {
    /// `x tanh(softplus(x))`.
    Value,
    /// `d mish / dx`.
    Derivative,
}

/// Replaces every value `x` by `part(x)`.
pub fn mish_in_place(values: &mut [f32], part: MishPart) {
    mish_in_place_with_isa(values, part, Isa::detect());
}

/// The same with the instruction set decided once by the caller.
pub(crate) fn mish_in_place_with_isa(values: &mut [f32], part: MishPart, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx2_fma() {
        // SAFETY: `Isa` only reports AVX2+FMA where the CPU has them.
        unsafe { mish_in_place_avx2_fma(values, part) };
        return;
    }
    let _ = isa;
    mish_in_place_with::<false>(values, part);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mish_in_place_avx2_fma(values: &mut [f32], part: MishPart) {
    match part {
        MishPart::Value => {
            let mut lanes = values.chunks_exact_mut(8);
            for chunk in &mut lanes {
                mish_value_8(chunk);
            }
            mish_in_place_with::<true>(lanes.into_remainder(), part);
        }
        MishPart::Derivative => mish_in_place_with::<true>(values, part),
    }
}

/// Mish of 8 values in place: [`mish_value`]'s arithmetic (the same exponential, operation for
/// operation) in AVX2 registers, with the one division `p / (p + 2)` replaced by the hardware
/// reciprocal estimate refined by a Newton step (within 3 ulp of the quotient): the divider
/// limited the compiler's vectorisation of the plain loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mish_value_8(chunk: &mut [f32]) {
    use std::arch::x86_64::*;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUNDER: f32 = 12_582_912.0;
    debug_assert_eq!(chunk.len(), 8);
    // SAFETY: the load and the store touch exactly the 8 f32 of `chunk`; AVX2 and FMA are
    // enabled on this function.
    unsafe {
        let x = _mm256_loadu_ps(chunk.as_ptr());
        let clamped = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(EXP_FLOOR)),
            _mm256_set1_ps(MISH_LINEAR_FROM),
        );
        // e^clamped as in `exp_in_range`.
        let rounder = _mm256_set1_ps(ROUNDER);
        let k = _mm256_sub_ps(
            _mm256_fmadd_ps(clamped, _mm256_set1_ps(std::f32::consts::LOG2_E), rounder),
            rounder,
        );
        let r = _mm256_fnmadd_ps(
            k,
            _mm256_set1_ps(LN2_LO),
            _mm256_fnmadd_ps(k, _mm256_set1_ps(LN2_HI), clamped),
        );
        let mut poly = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(c));
        }
        let one = _mm256_set1_ps(1.0);
        let e_r = _mm256_fmadd_ps(_mm256_mul_ps(poly, r), r, _mm256_add_ps(r, one));
        let biased = _mm256_add_ps(k, _mm256_set1_ps(ROUNDER + 127.0));
        let two_to_k = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(biased)));
        let n = _mm256_mul_ps(e_r, two_to_k);
        // tanh(softplus(x)) = p / (p + 2), p = n (n + 2).
        let two = _mm256_set1_ps(2.0);
        let p = _mm256_fmadd_ps(n, n, _mm256_add_ps(n, n));
        let denominator = _mm256_add_ps(p, two);
        let estimate = _mm256_rcp_ps(denominator);
        let reciprocal = _mm256_mul_ps(estimate, _mm256_fnmadd_ps(denominator, estimate, two));
        _mm256_storeu_ps(
            chunk.as_mut_ptr(),
            _mm256_mul_ps(x, _mm256_mul_ps(p, reciprocal)),
        );
    }
}

#[inline(always)]
fn mish_in_place_with<const FMA: bool>(values: &mut [f32], part: MishPart) {
    match part {
        MishPart::Value => {
            for v in values.iter_mut() {
                *v = mish_value::<FMA>(*v);
            }
        }
        MishPart::Derivative => {
            for v in values.iter_mut() {
                *v = mish_derivative::<FMA>(*v);
            }
        }
    }
}

/// `a b + c`, fused where the target has FMA (a library call otherwise, so only then).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` for `x` in `[EXP_FLOOR, MISH_LINEAR_FROM]`, within 2 ulp: `x = k ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r` (the Cephes `expf` coefficients) and `2^k`
/// written into the exponent bits.
#[inline(always)]
fn exp_in_range<const FMA: bool>(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in f32 arithmetic.
    const ROUNDER: f32 = 12_582_912.0;
    let k = madd::<FMA>(x, LOG2_E, ROUNDER) - ROUNDER;
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5);
    let e_r = madd::<FMA>(p * r, r, r + 1.0);
    // `k + 127` sits in the low mantissa bits of `k + 127 + ROUNDER`; shifted into the exponent
    // field it is `2^k` (no float-to-int conversion, which would not vectorise).
    let two_to_k = f32::from_bits((k + (ROUNDER + 127.0)).to_bits() << 23);
    e_r * two_to_k
}

/// `tanh(softplus(x))` and `sigmoid(x)` from one exponential: with `n = e^x`,
/// `tanh(ln(1 + n)) = n (n + 2) / (n (n + 2) + 2)` and `sigmoid = n / (1 + n)`. Beyond
/// `MISH_LINEAR_FROM` both are 1 to f32 precision; the clamp keeps `n (n + 2)` finite.
#[inline(always)]
fn mish_parts<const FMA: bool>(x: f32) -> (f32, f32) {
    let n = exp_in_range::<FMA>(x.clamp(EXP_FLOOR, MISH_LINEAR_FROM));
    let p = madd::<FMA>(n, n, 2.0 * n);
    (p / (p + 2.0), n / (1.0 + n))
}

#[inline(always)]
fn mish_value<const FMA: bool>(x: f32) -> f32 {
    x * mish_parts::<FMA>(x).0
}

/// `tanh(sp) + x sech^2(sp) sigmoid(x)`, `sp = softplus(x)`.
#[inline(always)]
fn mish_derivative<const FMA: bool>(x: f32) -> f32 {
    let (t, s) = mish_parts::<FMA>(x);
    madd::<FMA>(x * s, madd::<FMA>(-t, t, 1.0), t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_mish(x: f64) -> f64 {
        x * (x.exp().ln_1p()).tanh()
    }

    #[test]
    fn exp_in_range_is_within_two_ulp_of_exp() {
        let mut x = EXP_FLOOR;
        while x <= MISH_LINEAR_FROM {
            for (approx, which) in [
                (exp_in_range::<false>(x), "plain"),
                (exp_in_range::<true>(x), "fma"),
            ] {
                let exact = f64::from(x).exp();
                let relative = (f64::from(approx) - exact).abs() / exact;
                assert!(relative <= 2.5e-7, "{which} x={x}: {approx} vs {exact}");
            }
            x += 0.001;
        }
    }

    #[test]
    fn both_builds_match_the_exact_function() {
        let inputs: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.01).collect();
        let mut dispatched = inputs.clone();
        mish_in_place(&mut dispatched, MishPart::Value);
        let mut plain = inputs.clone();
        mish_in_place_with::<false>(&mut plain, MishPart::Value);
        for ((x, a), b) in inputs.iter().zip(&dispatched).zip(&plain) {
            let exact = exact_mish(f64::from(*x));
            for value in [a, b] {
                assert!(
                    (f64::from(*value) - exact).abs() <= 2e-6 * exact.abs().max(1.0),
                    "x={x}: {value} vs {exact}"
                );
            }
        }
    }
}
