//! The bridge's [`Transport`] over ROS 2 (feature `ros`): observations out as
//! `std_msgs/Float64MultiArray` with the sensor-data QoS, commands in as
//! `std_msgs/Float64MultiArray` with the command QoS, both with the stamp convention of
//! [`sdac_ros::stamp_label`] (the observation's label is `obs;stamp=<ns>`, the command that
//! answers it `action;stamp=<ns>`).
//!
//! ros2-client is async: one thread spins the node, another turns the command stream into a
//! channel that [`DdsTransport::next_command`] waits on with a deadline. With a recording, every
//! observation published and every command received is written to MCAP (rosbag2's layout, see
//! [`sdac_ros::record`]) on the bridge's thread.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use sdac_ros::dds::{self, DdsError};
use sdac_ros::record::{Channel, RecordError, Recorder};
use sdac_ros::ros_args::ParamValue;
use sdac_ros::{DiagnosticArray, Float64MultiArray, parse_stamp, qos, stamp_label};

use crate::bridge::{Command, Transport, wall_clock_ns};

/// Commands waiting for the bridge; more are dropped (and counted by the bridge as missing).
const COMMAND_QUEUE: usize = 256;

/// Why the ROS 2 side of the bridge failed.
#[derive(Debug, thiserror::Error)]
pub enum DdsTransportError {
    #[error(transparent)]
    Dds(#[from] DdsError),
    #[error("creating the ROS 2 spinner: {0}")]
    Spinner(String),
    #[error("publishing an observation: {0}")]
    Publish(String),
    #[error("the command subscription stopped")]
    SubscriptionClosed,
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Topics and domain of a [`DdsTransport`].
#[derive(Debug, Clone, PartialEq)]
pub struct DdsTopics {
    pub domain_id: u16,
    /// The node's namespace, absolute (`/` for none).
    pub namespace: String,
    pub node_name: String,
    /// The bridge's settings, offered read-only on the ROS 2 parameter services (none: no
    /// parameter services).
    pub parameters: Option<Vec<(String, ParamValue)>>,
    pub obs_topic: String,
    pub cmd_topic: String,
    /// Where to record observations and commands as MCAP, if anywhere.
    pub record: Option<std::path::PathBuf>,
    /// The controller's `diagnostic_msgs/DiagnosticArray` topic, if it has one: the newest
    /// message is kept for the report.
    pub diag_topic: Option<String>,
}

/// The first status of the newest diagnostics message, as key-value pairs.
type LatestDiagnostics = Arc<Mutex<Option<BTreeMap<String, String>>>>;

/// An MCAP recording with its two channels.
struct Recording {
    recorder: Recorder,
    observations: Channel,
    commands: Channel,
}

/// ROS 2 publisher of observations and subscriber of commands.
pub struct DdsTransport {
    observations: ros2_client::Publisher<Float64MultiArray>,
    /// Command messages with their time of receipt (ns since the UNIX epoch).
    commands: Receiver<(Float64MultiArray, u64)>,
    recording: Option<Recording>,
    diagnostics: LatestDiagnostics,
    /// Kept alive for as long as the publisher.
    _node: ros2_client::Node,
}

impl DdsTransport {
    /// Joins the domain, creates the node, the publisher and the subscription, and starts the
    /// spinner and receiver threads.
    pub fn new(topics: &DdsTopics) -> Result<Self, DdsTransportError> {
        let recording = match &topics.record {
            Some(path) => {
                let mut recorder = Recorder::create(path)?;
                let observations = recorder.channel::<Float64MultiArray>(&topics.obs_topic)?;
                let commands = recorder.channel::<Float64MultiArray>(&topics.cmd_topic)?;
                Some(Recording {
                    recorder,
                    observations,
                    commands,
                })
            }
            None => None,
        };
        let context = dds::context(topics.domain_id)?;
        let mut node = dds::node(
            &context,
            &topics.namespace,
            &topics.node_name,
            topics.parameters.as_deref(),
        )?;
        let observations =
            dds::publisher::<Float64MultiArray>(&mut node, &topics.obs_topic, qos::SENSOR_DATA)?;
        let subscription =
            dds::subscription::<Float64MultiArray>(&mut node, &topics.cmd_topic, qos::COMMAND)?;
        let spinner = node
            .spinner()
            .map_err(|e| DdsTransportError::Spinner(format!("{e:?}")))?;
        std::thread::Builder::new()
            .name("ros2-spinner".into())
            .spawn(move || futures::executor::block_on(spinner.spin()))
            .map_err(|e| DdsTransportError::Spinner(e.to_string()))?;
        let diagnostics = LatestDiagnostics::default();
        if let Some(topic) = &topics.diag_topic {
            let subscription =
                dds::subscription::<DiagnosticArray>(&mut node, topic, qos::DIAGNOSTICS)?;
            let latest = diagnostics.clone();
            std::thread::Builder::new()
                .name("ros2-diagnostics".into())
                .spawn(move || futures::executor::block_on(keep_newest(subscription, latest)))
                .map_err(|e| DdsTransportError::Spinner(e.to_string()))?;
        }
        let (sender, commands) = std::sync::mpsc::sync_channel(COMMAND_QUEUE);
        std::thread::Builder::new()
            .name("ros2-commands".into())
            .spawn(move || futures::executor::block_on(forward_commands(subscription, sender)))
            .map_err(|e| DdsTransportError::Spinner(e.to_string()))?;
        Ok(Self {
            observations,
            commands,
            recording,
            diagnostics,
            _node: node,
        })
    }
}

impl DdsTransport {
    /// The first status of the controller's newest diagnostics message, as key-value pairs
    /// (`None` without `diag_topic` or before the first message).
    pub fn controller_diagnostics(&self) -> Option<BTreeMap<String, String>> {
        self.diagnostics.lock().ok()?.clone()
    }

    /// Closes the recording, if any (its summary is written here).
    pub fn finish(self) -> Result<(), DdsTransportError> {
        if let Some(recording) = self.recording {
            recording.recorder.finish()?;
        }
        Ok(())
    }
}

/// Keeps the first status of the newest diagnostics message in `latest`.
async fn keep_newest(
    subscription: ros2_client::Subscription<DiagnosticArray>,
    latest: LatestDiagnostics,
) {
    let mut stream = Box::pin(subscription.async_stream());
    while let Some(received) = stream.next().await {
        let Ok((message, _info)) = received else {
            continue;
        };
        let Some(status) = message.status.into_iter().next() else {
            continue;
        };
        let values = status.values.into_iter().map(|kv| (kv.key, kv.value));
        if let Ok(mut slot) = latest.lock() {
            *slot = Some(values.collect());
        }
    }
}

/// Reads every command message and sends it to the bridge until the bridge is gone. Messages
/// that fail to deserialise are dropped (ros2-client logs them).
async fn forward_commands(
    subscription: ros2_client::Subscription<Float64MultiArray>,
    sender: SyncSender<(Float64MultiArray, u64)>,
) {
    let mut stream = Box::pin(subscription.async_stream());
    while let Some(received) = stream.next().await {
        let Ok((message, _info)) = received else {
            continue;
        };
        match sender.try_send((message, wall_clock_ns())) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// The command a message carries: the values from the layout's `data_offset` on (none when the
/// offset is past the end, which the bridge refuses as a wrong length) and the stamp in its
/// label.
fn command_from_message(mut message: Float64MultiArray) -> Command {
    let answers_stamp = parse_stamp(message.label());
    let offset = usize::try_from(message.layout.data_offset).unwrap_or(usize::MAX);
    let values = if offset <= message.data.len() {
        message.data.split_off(offset)
    } else {
        Vec::new()
    };
    Command {
        answers_stamp,
        values,
    }
}

impl Transport for DdsTransport {
    type Error = DdsTransportError;

    fn publish_observation(&mut self, stamp: u64, obs_raw: &[f64]) -> Result<(), Self::Error> {
        // ros2-client publishes by value: each observation is a new message.
        let message = Float64MultiArray::vector(&stamp_label("obs", stamp), obs_raw.to_vec());
        if let Some(recording) = &mut self.recording {
            let channel = recording.observations;
            recording
                .recorder
                .write(channel, wall_clock_ns(), &message)?;
        }
        self.observations
            .publish(message)
            .map_err(|e| DdsTransportError::Publish(format!("{e:?}")))
    }

    fn next_command(&mut self, deadline: Instant) -> Result<Option<Command>, Self::Error> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.commands.recv_timeout(timeout) {
            Ok((message, received_ns)) => {
                if let Some(recording) = &mut self.recording {
                    let channel = recording.commands;
                    recording.recorder.write(channel, received_ns, &message)?;
                }
                Ok(Some(command_from_message(message)))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(DdsTransportError::SubscriptionClosed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_their_stamp_and_the_values_after_data_offset() {
        let mut message = Float64MultiArray::vector(&stamp_label("action", 42), vec![9.0, 1.5]);
        message.layout.data_offset = 1;
        assert_eq!(
            command_from_message(message.clone()),
            Command {
                answers_stamp: Some(42),
                values: vec![1.5]
            }
        );
        message.layout.data_offset = 3;
        assert_eq!(command_from_message(message).values, Vec::<f64>::new());
        let plain = Float64MultiArray::vector("", vec![0.5]);
        assert_eq!(command_from_message(plain).answers_stamp, None);
    }
}
