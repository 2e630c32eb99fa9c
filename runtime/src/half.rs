//! IEEE 754 half precision (binary16) as stored weights: exact conversion to f32, and the test
//! of whether an f32 is exactly a half-precision value. No rounding happens here: a layer is
//! stored in half precision only when that loses nothing.

/// 2^-24, the smallest subnormal half.
const SUBNORMAL_UNIT: f32 = 1.0 / 16_777_216.0;
/// 2^-14, the smallest normal half.
const MIN_NORMAL: f32 = 1.0 / 16_384.0;

/// A half-precision bit pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct F16(pub(crate) u16);

impl F16 {
    /// The value as f32 (every half-precision value is one exactly).
    pub(crate) fn to_f32(self) -> f32 {
        let bits = u32::from(self.0);
        let sign = (bits & 0x8000) << 16;
        let exponent = (bits >> 10) & 0x1f;
        let mantissa = bits & 0x3ff;
        let magnitude = match exponent {
            // Zero and subnormals: mantissa * 2^-24, exact in f32.
            0 => {
                let value = mantissa as f32 * SUBNORMAL_UNIT;
                return if sign == 0 { value } else { -value };
            }
            0x1f => 0x7f80_0000 | (mantissa << 13),
            _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
        };
        f32::from_bits(sign | magnitude)
    }

    /// `value` as a half-precision pattern, if it is exactly one (finite values only).
    pub(crate) fn exact(value: f32) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        let bits = value.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let magnitude = value.abs();
        let candidate = if magnitude < MIN_NORMAL {
            // Zero or a subnormal half: a whole multiple of 2^-24 below 2^-14.
            let units = magnitude / SUBNORMAL_UNIT;
            if units.fract() != 0.0 {
                return None;
            }
            sign | units as u16
        } else {
            let exponent = ((bits >> 23) & 0xff) as i32 - 127;
            if exponent > 15 || bits & 0x1fff != 0 {
                return None;
            }
            sign | (((exponent + 15) as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
        };
        let half = Self(candidate);
        (half.to_f32().to_bits() == bits).then_some(half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every half-precision pattern against the `half` crate, and back through `exact`.
    #[test]
    fn every_pattern_converts_exactly_and_round_trips() {
        for bits in 0..=u16::MAX {
            let ours = F16(bits).to_f32();
            let reference = half::f16::from_bits(bits).to_f32();
            if reference.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
                assert_eq!(F16::exact(ours), None);
                continue;
            }
            assert_eq!(ours.to_bits(), reference.to_bits(), "{bits:#06x}");
            if reference.is_finite() {
                assert_eq!(F16::exact(ours), Some(F16(bits)), "{bits:#06x}");
            } else {
                assert_eq!(F16::exact(ours), None);
            }
        }
    }

    #[test]
    fn values_between_half_precision_values_are_not_exact() {
        for value in [
            1.0 + 2f32.powi(-11),
            0.1,
            65520.0,
            1e-8,
            2f32.powi(-25),
            -3.000_244_1,
        ] {
            assert_eq!(F16::exact(value), None, "{value}");
        }
        for value in [
            0.0,
            -0.0,
            1.0,
            -2.5,
            65504.0,
            2f32.powi(-24),
            -(2f32.powi(-14)),
        ] {
            let half = F16::exact(value).expect("a half-precision value");
            assert_eq!(half.to_f32().to_bits(), value.to_bits(), "{value}");
        }
    }
}
