//! Small helpers over ros2-client for the node, the sim bridge and the tests: a context on the
//! domain `ROS_DOMAIN_ID` names, a node, typed publishers and subscriptions by ROS 2 topic name.
//! Everything here runs on a DDS thread, never on a real-time one: ros2-client allocates and locks.

use ros2_client::{
    Context, ContextOptions, MessageTypeName, Name, Node, NodeName, NodeOptions, ParameterValue,
    Publisher, QosProfile, Subscription,
};

use crate::msg::RosMessage;
use crate::ros_args::ParamValue;

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

/// A node named `name` in `namespace`, without rosout. With `parameters`, the node offers the
/// ROS 2 parameter services (`ros2 param list|get`) for them, read-only: a set request
/// that changes a value is refused (the node reads its parameters once, at start). Without, it
/// offers no parameter services.
pub fn node(
    context: &Context,
    namespace: &str,
    name: &str,
    parameters: Option<&[(String, ParamValue)]>,
) -> Result<Node, DdsError> {
    let node_name = NodeName::new(namespace, name)
        .map_err(|e| DdsError::BadName(format!("{namespace} {name}"), e))?;
    let mut options = NodeOptions::new()
        .enable_rosout(false)
        .start_parameter_services(parameters.is_some());
    if let Some(parameters) = parameters {
        let values: Vec<(String, ParameterValue)> = parameters
            .iter()
            .map(|(name, value)| (name.clone(), parameter_value(value)))
            .collect();
        for (name, value) in &values {
            options = options.declare_parameter(name, value.clone());
        }
        options = options.parameter_validator(Box::new(move |name, value| {
            match values.iter().find(|(declared, _)| declared == name) {
                Some((_, started)) if started == value => Ok(()),
                Some(_) => Err(format!(
                    "{name} is read at start only: restart the node with the new value \
                     (--ros-args -p {name}:=<value>)"
                )),
                None => Err(format!("{name} is not a parameter of this node")),
            }
        }));
    }
    context
        .new_node(node_name, options)
        .map_err(|source| DdsError::Node {
            name: name.to_owned(),
            source,
        })
}

fn parameter_value(value: &ParamValue) -> ParameterValue {
    match value {
        ParamValue::Bool(b) => ParameterValue::Boolean(*b),
        ParamValue::Integer(i) => ParameterValue::Integer(*i),
        ParamValue::Double(d) => ParameterValue::Double(*d),
        ParamValue::String(s) => ParameterValue::String(s.clone()),
        ParamValue::Other(_) => ParameterValue::NotSet,
    }
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
