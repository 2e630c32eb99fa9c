//! The QoS profiles the node and its peers use. A peer must offer at least what the other side
//! requests: a reliable writer matches a best-effort reader, not the other way round.

use std::time::Duration;

use ros2_client::QosProfile;
use ros2_client::qos::{Durability, History, WhenFull};

/// Observations (and joint states): ROS 2's sensor-data profile, best effort, volatile, keep
/// last 5. A late sample is worth less than the next one, so nothing is retransmitted.
pub const SENSOR_DATA: QosProfile = QosProfile::subscription_default()
    .reliability_best_effort()
    .durability(Durability::Volatile)
    .history(History::KeepLast { depth: 5 });

/// Commands: reliable, volatile, keep last 10. A full send window never blocks the DDS thread
/// for long: after 1 ms the sample is dropped (counted by the node) rather than delaying the next.
pub const COMMAND: QosProfile = QosProfile::subscription_default()
    .reliability_reliable(WhenFull::Wait(Duration::from_millis(1)))
    .durability(Durability::Volatile)
    .history(History::KeepLast { depth: 10 });

/// Diagnostics: reliable, volatile, keep last 10 (ROS 2's default profile, as `/diagnostics`
/// aggregators expect).
pub const DIAGNOSTICS: QosProfile = QosProfile::subscription_default()
    .reliability_reliable(WhenFull::Wait(Duration::from_millis(10)))
    .durability(Durability::Volatile)
    .history(History::KeepLast { depth: 10 });

#[cfg(test)]
mod tests {
    use super::*;
    use ros2_client::qos::Reliability;

    #[test]
    fn observations_are_best_effort_and_commands_reliable() {
        assert_eq!(SENSOR_DATA.reliability, Reliability::BestEffort);
        assert!(matches!(COMMAND.reliability, Reliability::Reliable { .. }));
        assert!(matches!(
            DIAGNOSTICS.reliability,
            Reliability::Reliable { .. }
        ));
        assert!(matches!(SENSOR_DATA.history, History::KeepLast { .. }));
    }
}
