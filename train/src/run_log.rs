//! Everything a run logs, written as it happens: `metrics.csv` (`step,tag,value` rows), a
//! TensorBoard event file under `tensorboard/`, and `learning_curve.png`, redrawn at each flush
//! from the returns kept here. A checkpoint records how long the logs were
//! ([`LogPosition`]); resuming cuts them back to that length, so the logs of a resumed run are
//! those of a run that was never interrupted.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::curve::{Series, write_learning_curve};
use crate::tensorboard::EventWriter;

const METRICS_FILE: &str = "metrics.csv";
const EVENTS_DIR: &str = "tensorboard";

/// How far the logs had got, as a checkpoint stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogPosition {
    pub metrics_bytes: u64,
    pub event_file: String,
    pub event_bytes: u64,
}

pub struct RunLog {
    csv: BufWriter<File>,
    csv_bytes: u64,
    events: EventWriter,
    events_dir: PathBuf,
    curve_path: PathBuf,
    curve_title: String,
    training_returns: Vec<(f64, f64)>,
    eval_returns: Vec<(f64, f64)>,
}

impl RunLog {
    pub fn create(run_dir: &Path, curve_title: String) -> anyhow::Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let events_dir = run_dir.join(EVENTS_DIR);
        let events = EventWriter::create(&events_dir)
            .with_context(|| format!("creating an event file in {}", events_dir.display()))?;
        let mut log = Self::new(run_dir, file, 0, events, curve_title);
        log.write_csv_line("step,tag,value")?;
        Ok(log)
    }

    /// Continues the logs of `run_dir` from `position`, dropping anything written after it.
    pub fn reopen(
        run_dir: &Path,
        curve_title: String,
        position: &LogPosition,
    ) -> anyhow::Result<Self> {
        let path = run_dir.join(METRICS_FILE);
        let mut text =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let kept = usize::try_from(position.metrics_bytes)
            .ok()
            .filter(|&kept| kept <= text.len())
            .with_context(|| {
                format!(
                    "{} has {} bytes, fewer than the {} the checkpoint recorded",
                    path.display(),
                    text.len(),
                    position.metrics_bytes
                )
            })?;
        text.truncate(kept);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.set_len(position.metrics_bytes)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
        let events_dir = run_dir.join(EVENTS_DIR);
        let events = EventWriter::reopen(&events_dir, &position.event_file, position.event_bytes)
            .with_context(|| format!("reopening {}", position.event_file))?;
        let mut log = Self::new(run_dir, file, position.metrics_bytes, events, curve_title);
        for line in String::from_utf8_lossy(&text).lines().skip(1) {
            let mut cells = line.split(',');
            if let (Some(step), Some(tag), Some(value)) = (cells.next(), cells.next(), cells.next())
                && let (Ok(step), Ok(value)) = (step.parse::<u64>(), value.parse::<f64>())
            {
                log.remember(step, tag, value);
            }
        }
        Ok(log)
    }

    fn new(
        run_dir: &Path,
        csv: File,
        csv_bytes: u64,
        events: EventWriter,
        curve_title: String,
    ) -> Self {
        Self {
            csv: BufWriter::new(csv),
            csv_bytes,
            events,
            events_dir: run_dir.join(EVENTS_DIR),
            curve_path: run_dir.join("learning_curve.png"),
            curve_title,
            training_returns: Vec::new(),
            eval_returns: Vec::new(),
        }
    }

    fn write_csv_line(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.csv, "{line}")?;
        self.csv_bytes += line.len() as u64 + 1;
        Ok(())
    }

    fn remember(&mut self, step: u64, tag: &str, value: f64) {
        match tag {
            "charts/episodic_return" => self.training_returns.push((step as f64, value)),
            "eval/episodic_return" => self.eval_returns.push((step as f64, value)),
            _ => {}
        }
    }

    pub fn log(&mut self, step: u64, tag: &str, value: f64) -> anyhow::Result<()> {
        self.write_csv_line(&format!("{step},{tag},{value}"))?;
        self.events.add_scalar(tag, step, value)?;
        self.remember(step, tag, value);
        Ok(())
    }

    /// Flushes the logs and redraws the learning curve.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.csv.flush()?;
        self.events
            .flush()
            .with_context(|| format!("writing to {}", self.events_dir.display()))?;
        let series = [
            Series {
                label: "training episodes".into(),
                points: self.training_returns.clone(),
            },
            Series {
                label: "evaluation (mean)".into(),
                points: self.eval_returns.clone(),
            },
        ];
        write_learning_curve(&self.curve_path, &self.curve_title, &series)?;
        Ok(())
    }

    /// Flushes, then says how long the logs are.
    pub fn position(&mut self) -> anyhow::Result<LogPosition> {
        self.flush()?;
        Ok(LogPosition {
            metrics_bytes: self.csv_bytes,
            event_file: self.events.file_name().to_owned(),
            event_bytes: self.events.len(),
        })
    }
}
