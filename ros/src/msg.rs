//! ROS 2 message types, field for field as their `.msg` definitions (CDR serialises fields in
//! declaration order, so the order here is part of the wire format).

use serde::{Deserialize, Serialize};

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

/// `std_msgs/msg/Header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `std_msgs/msg/MultiArrayDimension`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiArrayDimension {
    pub label: String,
    pub size: u32,
    pub stride: u32,
}

/// `std_msgs/msg/MultiArrayLayout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiArrayLayout {
    pub dim: Vec<MultiArrayDimension>,
    pub data_offset: u32,
}

/// `std_msgs/msg/Float64MultiArray`: observations in, commands out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Float64MultiArray {
    pub layout: MultiArrayLayout,
    pub data: Vec<f64>,
}

impl Float64MultiArray {
    /// A one-dimensional array labelled `label`, the layout a vector message carries.
    pub fn vector(label: &str, data: Vec<f64>) -> Self {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        Self {
            layout: MultiArrayLayout {
                dim: vec![MultiArrayDimension {
                    label: label.to_owned(),
                    size: len,
                    stride: len,
                }],
                data_offset: 0,
            },
            data,
        }
    }
}

/// Why an observation message cannot reach the policy.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ObservationError {
    #[error(
        "observation has {got} values after the layout's data_offset, the policy takes {expected}"
    )]
    WrongLength { expected: usize, got: usize },
    #[error("observation layout's data_offset {offset} is past the end of {len} values")]
    BadOffset { offset: u32, len: usize },
    #[error("observation[{index}] is {value}: observations must be finite")]
    NonFinite { index: usize, value: f64 },
}

/// Copies the observation in `message` (from its `data_offset` on) into `obs` as f32, or says
/// why it cannot: wrong length, bad offset, or a value that is not finite (or overflows f32).
/// Writes nothing on error. Allocates nothing.
pub fn observation_from_message(
    message: &Float64MultiArray,
    obs: &mut [f32],
) -> Result<(), ObservationError> {
    let offset = message.layout.data_offset;
    let values = usize::try_from(offset)
        .ok()
        .and_then(|o| message.data.get(o..))
        .ok_or(ObservationError::BadOffset {
            offset,
            len: message.data.len(),
        })?;
    if values.len() != obs.len() {
        return Err(ObservationError::WrongLength {
            expected: obs.len(),
            got: values.len(),
        });
    }
    if let Some(index) = values.iter().position(|v| !(*v as f32).is_finite()) {
        return Err(ObservationError::NonFinite {
            index,
            value: values[index],
        });
    }
    for (o, v) in obs.iter_mut().zip(values) {
        *o = *v as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_observation_is_copied() {
        let mut obs = [0.0f32; 3];
        observation_from_message(
            &Float64MultiArray::vector("obs", vec![1.0, -2.5, 3.0]),
            &mut obs,
        )
        .unwrap();
        assert_eq!(obs, [1.0, -2.5, 3.0]);
    }

    #[test]
    fn bad_observations_are_refused_and_write_nothing() {
        let mut obs = [7.0f32; 2];
        let wrong_length = Float64MultiArray::vector("obs", vec![1.0, 2.0, 3.0]);
        assert_eq!(
            observation_from_message(&wrong_length, &mut obs),
            Err(ObservationError::WrongLength {
                expected: 2,
                got: 3
            })
        );
        for bad in [f64::NAN, f64::INFINITY, 1e300] {
            let message = Float64MultiArray::vector("obs", vec![0.0, bad]);
            let err = observation_from_message(&message, &mut obs).unwrap_err();
            assert!(
                matches!(err, ObservationError::NonFinite { index: 1, .. }),
                "{bad}: {err}"
            );
        }
        let mut past_end = Float64MultiArray::vector("obs", vec![1.0, 2.0]);
        past_end.layout.data_offset = 5;
        assert!(matches!(
            observation_from_message(&past_end, &mut obs),
            Err(ObservationError::BadOffset { offset: 5, len: 2 })
        ));
        assert_eq!(obs, [7.0, 7.0]);
    }

    #[test]
    fn data_offset_skips_leading_values() {
        let mut message = Float64MultiArray::vector("obs", vec![9.0, 1.0, 2.0]);
        message.layout.data_offset = 1;
        let mut obs = [0.0f32; 2];
        observation_from_message(&message, &mut obs).unwrap();
        assert_eq!(obs, [1.0, 2.0]);
    }
}
