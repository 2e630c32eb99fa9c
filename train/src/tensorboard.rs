//! TensorBoard event files, written without TensorFlow.
//!
//! An event file is a sequence of TFRecords, each holding one serialized `Event` protobuf.
//! A record is framed as: the data length (u64, little endian), the masked CRC32C of those
//! 8 length bytes (u32 LE), the data, the masked CRC32C of the data (u32 LE). The first
//! event of a file carries `file_version = "brain.Event:2"`; each later one a scalar summary.
//! The few protobuf fields needed are encoded by hand.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `file_version` that TensorBoard expects in the first event of a file.
const FILE_VERSION: &str = "brain.Event:2";

/// Appends scalar events to one new TensorBoard event file.
///
/// Writes are buffered: call [`EventWriter::flush`] to make them visible to a reader (dropping
/// the writer also flushes, but ignores errors).
pub struct EventWriter {
    file_name: String,
    out: BufWriter<File>,
    /// Bytes written so far (buffered ones included): the file's length after a flush.
    len: u64,
}

impl EventWriter {
    /// Creates `dir` if needed and, in it, the new file
    /// `events.out.tfevents.<unix seconds>.<hostname>` (`sdac` when the host name is unknown),
    /// then writes the file-version event.
    ///
    /// Fails with [`io::ErrorKind::AlreadyExists`] rather than overwrite an existing file of
    /// that name (a second writer on the same directory within the same second).
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let wall_time = wall_time_seconds();
        let file_name = format!("events.out.tfevents.{}.{}", wall_time as u64, host_name());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&file_name))?;
        let mut writer = Self {
            file_name,
            out: BufWriter::new(file),
            len: 0,
        };
        writer.write_event(&encode_file_version_event(wall_time))?;
        Ok(writer)
    }

    /// Reopens `dir/file_name` to append after its first `len` bytes, dropping what follows
    /// (events logged after a checkpoint by a run that was then interrupted).
    pub fn reopen(dir: &Path, file_name: &str, len: u64) -> io::Result<Self> {
        let mut file = OpenOptions::new().write(true).open(dir.join(file_name))?;
        if file.metadata()?.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{file_name} is shorter than the {len} bytes the checkpoint recorded"),
            ));
        }
        file.set_len(len)?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            file_name: file_name.to_owned(),
            out: BufWriter::new(file),
            len,
        })
    }

    /// The event file's name in its directory.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The file's length once flushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends the scalar `value` of `tag` at `step`, stamped with the current wall time.
    ///
    /// TensorBoard stores scalars as `f32`, so `value` is rounded to the nearest `f32`.
    /// Fails with [`io::ErrorKind::InvalidInput`] when `step` exceeds `i64::MAX` (the
    /// protobuf field is an `int64`).
    pub fn add_scalar(&mut self, tag: &str, step: u64, value: f64) -> io::Result<()> {
        let step = i64::try_from(step).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("step {step} exceeds i64::MAX"),
            )
        })?;
        let event = encode_scalar_event(wall_time_seconds(), step, tag, value as f32);
        self.write_event(&event)
    }

    /// Writes the buffered events to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn write_event(&mut self, event: &[u8]) -> io::Result<()> {
        write_record(&mut self.out, event)?;
        self.len += RECORD_FRAMING_BYTES + event.len() as u64;
        Ok(())
    }
}

/// Seconds since the Unix epoch (0 if the clock is set before it).
fn wall_time_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// The host name, restricted to characters safe in a file name, or `sdac` if unknown.
fn host_name() -> String {
    let from_kernel = fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if safe.is_empty() {
        "sdac".to_owned()
    } else {
        safe
    }
}

/// Writes `data` as one TFRecord.
/// Bytes a record adds around its data: length, length CRC, data CRC.
const RECORD_FRAMING_BYTES: u64 = 8 + 4 + 4;

fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let length_bytes = (data.len() as u64).to_le_bytes();
    out.write_all(&length_bytes)?;
    out.write_all(&masked_crc32c(&length_bytes).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// The CRC32C with TFRecord's mask: rotated right by 15 bits, plus a constant.
fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli), bit-reflected polynomial `0x82F63B78`.
fn crc32c(data: &[u8]) -> u32 {
    let crc = data.iter().fold(!0u32, |crc, &byte| {
        CRC32C_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    });
    !crc
}

const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
}

// Protobuf wire types.
const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LENGTH_DELIMITED: u8 = 2;
const WIRE_FIXED32: u8 = 5;

// Field numbers of `tensorflow.Event`, `Summary` and `Summary.Value`.
const EVENT_WALL_TIME: u8 = 1;
const EVENT_STEP: u8 = 2;
const EVENT_FILE_VERSION: u8 = 3;
const EVENT_SUMMARY: u8 = 5;
const SUMMARY_VALUE: u8 = 1;
const VALUE_TAG: u8 = 1;
const VALUE_SIMPLE_VALUE: u8 = 2;

/// `Event { wall_time, file_version: "brain.Event:2" }`.
fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Vec::new();
    put_key(&mut event, EVENT_WALL_TIME, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    put_bytes(&mut event, EVENT_FILE_VERSION, FILE_VERSION.as_bytes());
    event
}

/// `Event { wall_time, step, summary: Summary { value: [Value { tag, simple_value }] } }`.
fn encode_scalar_event(wall_time: f64, step: i64, tag: &str, simple_value: f32) -> Vec<u8> {
    let mut value = Vec::new();
    put_bytes(&mut value, VALUE_TAG, tag.as_bytes());
    put_key(&mut value, VALUE_SIMPLE_VALUE, WIRE_FIXED32);
    value.extend_from_slice(&simple_value.to_le_bytes());

    let mut summary = Vec::new();
    put_bytes(&mut summary, SUMMARY_VALUE, &value);

    let mut event = Vec::new();
    put_key(&mut event, EVENT_WALL_TIME, WIRE_FIXED64);
    event.extend_from_slice(&wall_time.to_le_bytes());
    put_key(&mut event, EVENT_STEP, WIRE_VARINT);
    // int64 is encoded as the varint of its two's complement bits.
    put_varint(&mut event, step as u64);
    put_bytes(&mut event, EVENT_SUMMARY, &summary);
    event
}

fn put_key(out: &mut Vec<u8>, field: u8, wire_type: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_key(out, field, WIRE_LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    #[allow(clippy::manual_rotate)]
    fn masked_crc_of_an_empty_record_length() {
        // The mask as TensorFlow's crc32c.h defines it, spelled out.
        let crc = crc32c(&0u64.to_le_bytes());
        let expected = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), expected);
    }

    /// Splits a file into its records, checking both CRCs of each.
    fn read_records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (length_bytes, after) = rest.split_at(8);
            let (length_crc, after) = after.split_at(4);
            assert_eq!(
                masked_crc32c(length_bytes),
                u32::from_le_bytes(length_crc.try_into().unwrap())
            );
            let length = u64::from_le_bytes(length_bytes.try_into().unwrap()) as usize;
            let (data, after) = after.split_at(length);
            let (data_crc, after) = after.split_at(4);
            assert_eq!(
                masked_crc32c(data),
                u32::from_le_bytes(data_crc.try_into().unwrap())
            );
            records.push(data.to_vec());
            rest = after;
        }
        records
    }

    /// A decoded protobuf field: number and payload.
    #[derive(Debug, PartialEq)]
    enum Field {
        Varint(u8, u64),
        Fixed64(u8, [u8; 8]),
        Bytes(u8, Vec<u8>),
        Fixed32(u8, [u8; 4]),
    }

    fn read_varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let (&byte, rest) = bytes.split_first().unwrap();
            *bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    fn read_fields(mut bytes: &[u8]) -> Vec<Field> {
        let mut fields = Vec::new();
        while !bytes.is_empty() {
            let key = read_varint(&mut bytes);
            let field = (key >> 3) as u8;
            match (key & 7) as u8 {
                WIRE_VARINT => fields.push(Field::Varint(field, read_varint(&mut bytes))),
                WIRE_FIXED64 => {
                    let (value, rest) = bytes.split_at(8);
                    fields.push(Field::Fixed64(field, value.try_into().unwrap()));
                    bytes = rest;
                }
                WIRE_LENGTH_DELIMITED => {
                    let length = read_varint(&mut bytes) as usize;
                    let (value, rest) = bytes.split_at(length);
                    fields.push(Field::Bytes(field, value.to_vec()));
                    bytes = rest;
                }
                WIRE_FIXED32 => {
                    let (value, rest) = bytes.split_at(4);
                    fields.push(Field::Fixed32(field, value.try_into().unwrap()));
                    bytes = rest;
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        fields
    }

    fn wall_time_of(field: &Field) -> f64 {
        match field {
            Field::Fixed64(EVENT_WALL_TIME, bytes) => f64::from_le_bytes(*bytes),
            other => panic!("expected wall_time, got {other:?}"),
        }
    }

    #[test]
    fn written_events_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer.add_scalar("eval/return", 1000, 12.5).unwrap();
        writer.add_scalar("loss/critic", 2000, -0.25).unwrap();
        writer.add_scalar("big_step", 1 << 40, 3.0).unwrap();
        writer.flush().unwrap();

        let files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let file_name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(file_name.starts_with("events.out.tfevents."), "{file_name}");

        let records = read_records(&fs::read(&files[0]).unwrap());
        assert_eq!(records.len(), 4);

        let header = read_fields(&records[0]);
        assert_eq!(header.len(), 2);
        assert!(wall_time_of(&header[0]) > 1.6e9);
        assert_eq!(
            header[1],
            Field::Bytes(EVENT_FILE_VERSION, FILE_VERSION.as_bytes().to_vec())
        );

        let expected = [
            ("eval/return", 1000, 12.5f32),
            ("loss/critic", 2000, -0.25),
            ("big_step", 1 << 40, 3.0),
        ];
        for (record, (tag, step, value)) in records[1..].iter().zip(expected) {
            let event = read_fields(record);
            assert_eq!(event.len(), 3);
            assert!(wall_time_of(&event[0]) > 1.6e9);
            assert_eq!(event[1], Field::Varint(EVENT_STEP, step));
            let Field::Bytes(EVENT_SUMMARY, summary) = &event[2] else {
                panic!("{event:?}")
            };
            let summary = read_fields(summary);
            assert_eq!(summary.len(), 1);
            let Field::Bytes(SUMMARY_VALUE, summary_value) = &summary[0] else {
                panic!("{summary:?}")
            };
            let summary_value = read_fields(summary_value);
            assert_eq!(
                summary_value,
                [
                    Field::Bytes(VALUE_TAG, tag.as_bytes().to_vec()),
                    Field::Fixed32(VALUE_SIMPLE_VALUE, value.to_le_bytes())
                ]
            );
        }
    }

    #[test]
    fn step_beyond_int64_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        let error = writer.add_scalar("x", u64::MAX, 1.0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        let mut out = Vec::new();
        put_varint(&mut out, 0);
        assert_eq!(out, [0]);
    }

    #[test]
    fn reopening_drops_what_followed_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer.add_scalar("kept", 1, 1.0).unwrap();
        writer.flush().unwrap();
        let (name, kept_len) = (writer.file_name().to_owned(), writer.len());
        writer.add_scalar("dropped", 2, 2.0).unwrap();
        writer.flush().unwrap();
        drop(writer);

        let mut writer = EventWriter::reopen(dir.path(), &name, kept_len).unwrap();
        writer.add_scalar("appended", 3, 3.0).unwrap();
        writer.flush().unwrap();
        let bytes = fs::read(dir.path().join(&name)).unwrap();
        assert_eq!(bytes.len() as u64, writer.len());
        let records = read_records(&bytes);
        assert_eq!(records.len(), 3, "version, kept, appended");
        assert!(EventWriter::reopen(dir.path(), &name, writer.len() + 1).is_err());
    }
}
