//! The robot side over ROS 2. Present: the standard message types the node speaks, as serde
//! structs with the field order of the ROS 2 IDL, and the check every observation passes before
//! it reaches the policy. The node itself (DDS, control thread, watchdog) is not written yet.

pub mod msg;

pub use msg::{ObservationError, observation_from_message};
