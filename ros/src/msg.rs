//! ROS 2 message types, field for field as their `.msg` definitions (CDR serialises fields in
//! declaration order, so the order here is part of the wire format), the type names DDS sees,
//! the `ros2msg` definitions an MCAP recording carries, and the observation checks.

use serde::{Deserialize, Serialize};

/// A ROS 2 message type this crate speaks: its package and name (`std_msgs`, `Float64MultiArray`
/// become the DDS type `std_msgs::msg::dds_::Float64MultiArray_`) and its `.msg` definition with
/// every dependency, in the `ros2msg` form rosbag2 writes into MCAP schemas.
pub trait RosMessage: Serialize + for<'de> Deserialize<'de> + 'static {
    const PACKAGE: &'static str;
    const NAME: &'static str;
    /// The full definition: the message's own fields, then each dependency after a separator
    /// line of 80 `=` and a `MSG: package/Name` line.
    const DEFINITION: &'static str;

    /// `package/msg/Name`, the name ROS 2 tools (and MCAP schemas) use.
    fn ros_type_name() -> String {
        format!("{}/msg/{}", Self::PACKAGE, Self::NAME)
    }
}

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

impl Time {
    /// The time `ns` nanoseconds after the clock's epoch (saturating at `i32::MAX` seconds).
    pub fn from_nanos(ns: u64) -> Self {
        Self {
            sec: i32::try_from(ns / 1_000_000_000).unwrap_or(i32::MAX),
            nanosec: (ns % 1_000_000_000) as u32,
        }
    }

    /// Nanoseconds since the clock's epoch; `None` before it (negative seconds).
    pub fn as_nanos(&self) -> Option<u64> {
        let sec = u64::try_from(self.sec).ok()?;
        Some(sec * 1_000_000_000 + u64::from(self.nanosec))
    }

    /// Now on the system (wall) clock, the clock ROS 2 stamps use.
    pub fn now() -> Self {
        Self::from_nanos(crate::clock::wall_clock_ns())
    }
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

    /// The label of the first dimension, where the node's stamp convention lives (see
    /// [`stamp_label`]); `""` without dimensions.
    pub fn label(&self) -> &str {
        self.layout.dim.first().map_or("", |d| d.label.as_str())
    }
}

/// Separator between a vector's name and its stamp in a dimension label: `obs;stamp=123`.
const STAMP_TAG: &str = ";stamp=";

/// The label `name;stamp=<stamp>`: how an observation carries an opaque stamp (any clock, any
/// unit) that the node copies into the command computed from it (`action;stamp=<stamp>`), so a
/// publisher can measure observation-to-command latency on its own clock. Plain `name` labels
/// carry no stamp.
pub fn stamp_label(name: &str, stamp: u64) -> String {
    format!("{name}{STAMP_TAG}{stamp}")
}

/// The stamp in a label written by [`stamp_label`], or `None`.
pub fn parse_stamp(label: &str) -> Option<u64> {
    label.rsplit_once(STAMP_TAG)?.1.parse().ok()
}

/// `sensor_msgs/msg/JointState`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JointState {
    pub header: Header,
    pub name: Vec<String>,
    pub position: Vec<f64>,
    pub velocity: Vec<f64>,
    pub effort: Vec<f64>,
}

/// `diagnostic_msgs/msg/KeyValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// `diagnostic_msgs/msg/DiagnosticStatus`; `level` is one of the `LEVEL_*` constants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    pub level: u8,
    pub name: String,
    pub message: String,
    pub hardware_id: String,
    pub values: Vec<KeyValue>,
}

impl DiagnosticStatus {
    pub const LEVEL_OK: u8 = 0;
    pub const LEVEL_WARN: u8 = 1;
    pub const LEVEL_ERROR: u8 = 2;
    pub const LEVEL_STALE: u8 = 3;

    /// The value stored under `key`, if any.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    }
}

/// `diagnostic_msgs/msg/DiagnosticArray`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    pub header: Header,
    pub status: Vec<DiagnosticStatus>,
}

macro_rules! ros_message {
    ($ty:ty, $package:literal, $name:literal, $definition:expr) => {
        impl RosMessage for $ty {
            const PACKAGE: &'static str = $package;
            const NAME: &'static str = $name;
            const DEFINITION: &'static str = $definition;
        }
    };
}

macro_rules! definition {
    ($own:literal $(, $dep:literal => $dep_def:literal)*) => {
        concat!($own $(, "================================================================================\n", "MSG: ", $dep, "\n", $dep_def)*)
    };
}

const TIME_MSG: &str = "int32 sec\nuint32 nanosec\n";

ros_message!(Time, "builtin_interfaces", "Time", TIME_MSG);
ros_message!(
    Header,
    "std_msgs",
    "Header",
    definition!("builtin_interfaces/Time stamp\nstring frame_id\n",
        "builtin_interfaces/Time" => "int32 sec\nuint32 nanosec\n")
);
ros_message!(
    Float64MultiArray,
    "std_msgs",
    "Float64MultiArray",
    definition!("MultiArrayLayout layout\nfloat64[] data\n",
        "std_msgs/MultiArrayLayout" => "MultiArrayDimension[] dim\nuint32 data_offset\n",
        "std_msgs/MultiArrayDimension" => "string label\nuint32 size\nuint32 stride\n")
);
ros_message!(
    JointState,
    "sensor_msgs",
    "JointState",
    definition!("std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n",
        "std_msgs/Header" => "builtin_interfaces/Time stamp\nstring frame_id\n",
        "builtin_interfaces/Time" => "int32 sec\nuint32 nanosec\n")
);
ros_message!(
    DiagnosticArray,
    "diagnostic_msgs",
    "DiagnosticArray",
    definition!("std_msgs/Header header\nDiagnosticStatus[] status\n",
        "std_msgs/Header" => "builtin_interfaces/Time stamp\nstring frame_id\n",
        "builtin_interfaces/Time" => "int32 sec\nuint32 nanosec\n",
        "diagnostic_msgs/DiagnosticStatus" => "byte OK=0\nbyte WARN=1\nbyte ERROR=2\nbyte STALE=3\nbyte level\nstring name\nstring message\nstring hardware_id\nKeyValue[] values\n",
        "diagnostic_msgs/KeyValue" => "string key\nstring value\n")
);

/// The CDR little-endian encapsulation header (`CDR_LE`) DDS puts before every payload, and
/// rosbag2 keeps in MCAP message records.
pub const CDR_LE_HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// `message` as a DDS/rosbag2 payload: [`CDR_LE_HEADER`] then the CDR little-endian body.
pub fn to_cdr<M: Serialize>(message: &M) -> Result<Vec<u8>, cdr_encoding::Error> {
    let body = cdr_encoding::to_vec::<M, byteorder::LittleEndian>(message)?;
    let mut payload = Vec::with_capacity(CDR_LE_HEADER.len() + body.len());
    payload.extend_from_slice(&CDR_LE_HEADER);
    payload.extend_from_slice(&body);
    Ok(payload)
}

/// Why a payload is not a CDR message of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    #[error("payload of {0} bytes has no CDR_LE encapsulation header")]
    NotCdrLe(usize),
    #[error("CDR body: {0}")]
    Body(#[from] cdr_encoding::Error),
}

/// The inverse of [`to_cdr`] (little-endian payloads only).
pub fn from_cdr<M: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<M, CdrError> {
    let body = payload
        .strip_prefix(&CDR_LE_HEADER[..2])
        .and_then(|rest| rest.get(2..))
        .ok_or(CdrError::NotCdrLe(payload.len()))?;
    let (message, _) = cdr_encoding::from_bytes::<M, byteorder::LittleEndian>(body)?;
    Ok(message)
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

/// Copies the observation a `sensor_msgs/JointState` carries into `obs`:
/// `obs = concat(position, velocity)`, each in message order (the `name`, `effort` and header
/// are not used). Refuses, writing nothing, when `position.len() + velocity.len() !=
/// obs.len()` or a value is not finite as f32. Allocates nothing.
pub fn observation_from_joint_state(
    message: &JointState,
    obs: &mut [f32],
) -> Result<(), ObservationError> {
    let got = message.position.len() + message.velocity.len();
    if got != obs.len() {
        return Err(ObservationError::WrongLength {
            expected: obs.len(),
            got,
        });
    }
    let values = || message.position.iter().chain(&message.velocity);
    if let Some((index, value)) = values()
        .enumerate()
        .find(|(_, v)| !(**v as f32).is_finite())
    {
        return Err(ObservationError::NonFinite {
            index,
            value: *value,
        });
    }
    for (o, v) in obs.iter_mut().zip(values()) {
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

    #[test]
    fn joint_state_maps_to_position_then_velocity() {
        let message = JointState {
            name: vec!["a".into(), "b".into()],
            position: vec![1.0, 2.0],
            velocity: vec![3.0, 4.0],
            ..JointState::default()
        };
        let mut obs = [0.0f32; 4];
        observation_from_joint_state(&message, &mut obs).unwrap();
        assert_eq!(obs, [1.0, 2.0, 3.0, 4.0]);
        let mut short = [9.0f32; 3];
        assert_eq!(
            observation_from_joint_state(&message, &mut short),
            Err(ObservationError::WrongLength {
                expected: 3,
                got: 4
            })
        );
        let nan = JointState {
            velocity: vec![3.0, f64::NAN],
            ..message
        };
        assert!(matches!(
            observation_from_joint_state(&nan, &mut obs),
            Err(ObservationError::NonFinite { index: 3, .. })
        ));
    }

    #[test]
    fn stamps_round_trip_through_labels() {
        assert_eq!(parse_stamp(&stamp_label("obs", 1234567)), Some(1234567));
        assert_eq!(parse_stamp("obs"), None);
        assert_eq!(parse_stamp("obs;stamp=x"), None);
    }

    #[test]
    fn definitions_name_every_dependency() {
        assert_eq!(
            Float64MultiArray::ros_type_name(),
            "std_msgs/msg/Float64MultiArray"
        );
        assert!(DiagnosticArray::DEFINITION.contains("MSG: diagnostic_msgs/KeyValue\n"));
        assert!(JointState::DEFINITION.starts_with("std_msgs/Header header\n"));
    }

    #[test]
    fn float64_multi_array_has_the_ros2_wire_layout() {
        let message = Float64MultiArray::vector("obs", vec![1.5]);
        let payload = to_cdr(&message).unwrap();
        let mut expected = vec![0u8, 1, 0, 0];
        for word in [1u32, 4] {
            expected.extend_from_slice(&word.to_le_bytes()); // dims, label length with NUL
        }
        expected.extend_from_slice(b"obs\0");
        for word in [1u32, 1, 0, 1, 0] {
            expected.extend_from_slice(&word.to_le_bytes()); // size, stride, offset, len, pad
        }
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(payload, expected);
        assert_eq!(from_cdr::<Float64MultiArray>(&payload).unwrap(), message);
        assert!(matches!(
            from_cdr::<Float64MultiArray>(&payload[..2]),
            Err(CdrError::NotCdrLe(2))
        ));
    }
}
