//! MCAP recording in rosbag2's layout: profile `ros2`, one `ros2msg` schema per message type
//! (the `.msg` definition with its dependencies), one `cdr` channel per topic, each message the
//! CDR payload DDS carries. Runs on a DDS thread (it allocates and does file I/O), never on a
//! real-time one. Readable by the Python `mcap` package and `ros2 bag` with the MCAP plugin.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use mcap::records::MessageHeader;

use crate::msg::{RosMessage, to_cdr};

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("creating recording {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing recording {path}: {source}")]
    Mcap {
        path: PathBuf,
        source: mcap::McapError,
    },
    #[error("encoding a message for {path}: {source}")]
    Cdr {
        path: PathBuf,
        source: cdr_encoding::Error,
    },
}

/// A channel handle from [`Recorder::channel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    id: u16,
}

/// An MCAP file being written.
pub struct Recorder {
    path: PathBuf,
    writer: mcap::Writer<BufWriter<File>>,
    sequence: u32,
}

impl Recorder {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, RecordError> {
        let file = File::create(path).map_err(|source| RecordError::Create {
            path: path.to_owned(),
            source,
        })?;
        let writer = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!("sdac-ros ", env!("CARGO_PKG_VERSION")))
            .create(BufWriter::new(file))
            .map_err(|source| RecordError::Mcap {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            writer,
            sequence: 0,
        })
    }

    fn mcap_error(&self, source: mcap::McapError) -> RecordError {
        RecordError::Mcap {
            path: self.path.clone(),
            source,
        }
    }

    /// Declares `topic` carrying `M` (its schema is written once per type).
    pub fn channel<M: RosMessage>(&mut self, topic: &str) -> Result<Channel, RecordError> {
        let schema = self
            .writer
            .add_schema(&M::ros_type_name(), "ros2msg", M::DEFINITION.as_bytes())
            .map_err(|e| self.mcap_error(e))?;
        let id = self
            .writer
            .add_channel(schema, topic, "cdr", &BTreeMap::new())
            .map_err(|e| self.mcap_error(e))?;
        Ok(Channel { id })
    }

    /// Appends `message` on `channel`, logged at `log_time_ns` (nanoseconds since the Unix
    /// epoch, as rosbag2 logs).
    pub fn write<M: RosMessage>(
        &mut self,
        channel: Channel,
        log_time_ns: u64,
        message: &M,
    ) -> Result<(), RecordError> {
        let payload = to_cdr(message).map_err(|source| RecordError::Cdr {
            path: self.path.clone(),
            source,
        })?;
        self.sequence = self.sequence.wrapping_add(1);
        let header = MessageHeader {
            channel_id: channel.id,
            sequence: self.sequence,
            log_time: log_time_ns,
            publish_time: log_time_ns,
        };
        self.writer
            .write_to_known_channel(&header, &payload)
            .map_err(|e| self.mcap_error(e))
    }

    /// Writes the summary and closes the file.
    pub fn finish(mut self) -> Result<(), RecordError> {
        self.writer.finish().map_err(|e| self.mcap_error(e))?;
        Ok(())
    }
}
