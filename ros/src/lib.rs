//! The robot side over ROS 2: the standard message types the node speaks (serde structs with
//! the field order of the ROS 2 IDL), the QoS profiles of its topics, small DDS helpers, and the
//! policy node `sdac-node`.

pub mod bench;
pub mod clock;
pub mod control;
pub mod dds;
pub mod msg;
pub mod node;
pub mod peer;
pub mod policy;
pub mod qos;
pub mod record;
pub mod ros_args;
pub mod timer;

pub use msg::{
    CDR_LE_HEADER, CdrError, DiagnosticArray, DiagnosticStatus, Float64MultiArray, Header,
    JointState, KeyValue, MultiArrayDimension, MultiArrayLayout, ObservationError, RosMessage,
    Time, from_cdr, observation_from_joint_state, observation_from_message, parse_stamp,
    stamp_label, to_cdr,
};
