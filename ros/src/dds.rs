//! Small helpers over ros2-client for the node, the sim bridge and the tests: a context on the
//! domain `ROS_DOMAIN_ID` names, a node, typed publishers and subscriptions by ROS 2 topic name.
//! Everything here runs on a DDS thread, never on a real-time one: ros2-client allocates and locks.

use ros2_client::{
    Context, ContextOptions, MessageTypeName, Name, Node, NodeName, NodeOptions, Publisher,
    QosProfile, Subscription,
};

use crate::msg::RosMessage;

/// Why a DDS entity could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DdsError {
    #[error("ROS_DOMAIN_ID={0:?} is not a domain id (0..=232)")]
    BadDomainId(String),
    #[error("{0:?} is not a ROS 2 name: {1}")]
    BadName(String, ros2_client::names::NameError),
    #[error("creating the DDS participant on domain {domain_id}: {source}")]
    Participant {
        domain_id: u16,
        source: ros2_client::CreateError,
    },
    #[error("creating ROS 2 node {name:?}: {source}")]
    Node {
        name: String,
        source: ros2_client::NodeCreateError,
    },
    #[error("creating the endpoint on topic {topic:?}: {source}")]
    Endpoint {
        topic: String,
        source: ros2_client::CreateError,
    },
}

/// The DDS domain from `ROS_DOMAIN_ID`, 0 when unset or empty (as ROS 2 does).
pub fn domain_id_from_env() -> Result<u16, DdsError> {
    match std::env::var("ROS_DOMAIN_ID") {
        Err(_) => Ok(0),
        Ok(text) if text.trim().is_empty() => Ok(0),
        Ok(text) => match text.trim().parse::<u16>() {
            Ok(id) if id <= 232 => Ok(id),
            _ => Err(DdsError::BadDomainId(text)),
        },
    }
}

/// A ROS 2 context (one DDS participant) on `domain_id`.
pub fn context(domain_id: u16) -> Result<Context, DdsError> {
    Context::with_options(ContextOptions::new().domain_id(domain_id))
        .map_err(|source| DdsError::Participant { domain_id, source })
}

/// A node named `name` in the root namespace, without rosout or parameter services (the node's
/// parameters are its command line).
pub fn node(context: &Context, name: &str) -> Result<Node, DdsError> {
    let node_name = NodeName::new("/", name).map_err(|e| DdsError::BadName(name.to_owned(), e))?;
    context
        .new_node(
            node_name,
            NodeOptions::new()
                .enable_rosout(false)
                .start_parameter_services(false),
        )
        .map_err(|source| DdsError::Node {
            name: name.to_owned(),
            source,
        })
}

/// Parses a ROS 2 topic name such as `/sdac/observation` (DDS topic `rt/sdac/observation`).
pub fn topic_name(topic: &str) -> Result<Name, DdsError> {
    Name::parse(topic).map_err(|e| DdsError::BadName(topic.to_owned(), e))
}

fn topic<M: RosMessage>(
    node: &mut Node,
    topic: &str,
    qos: &QosProfile,
) -> Result<ros2_client::dds::rustdds::Topic, DdsError> {
    node.create_topic(
        &topic_name(topic)?,
        MessageTypeName::new(M::PACKAGE, M::NAME),
        qos,
    )
    .map_err(|source| DdsError::Endpoint {
        topic: topic.to_owned(),
        source,
    })
}

/// A publisher of `M` on `topic` with `qos`.
pub fn publisher<M: RosMessage>(
    node: &mut Node,
    topic_name: &str,
    qos: QosProfile,
) -> Result<Publisher<M>, DdsError> {
    let dds_topic = topic::<M>(node, topic_name, &qos)?;
    node.create_publisher(&dds_topic, Some(qos))
        .map_err(|source| DdsError::Endpoint {
            topic: topic_name.to_owned(),
            source,
        })
}

/// A subscription to `M` on `topic` with `qos`.
pub fn subscription<M: RosMessage>(
    node: &mut Node,
    topic_name: &str,
    qos: QosProfile,
) -> Result<Subscription<M>, DdsError> {
    let dds_topic = topic::<M>(node, topic_name, &qos)?;
    node.create_subscription(&dds_topic, Some(qos))
        .map_err(|source| DdsError::Endpoint {
            topic: topic_name.to_owned(),
            source,
        })
}
