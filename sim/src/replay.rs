//! Action replay for parity checks against Gymnasium.
//!
//! Files (all CSV with a header row, numbers as Rust or Python print floats):
//! - init: `qpos_0..qpos_{nq-1},qvel_0..qvel_{nv-1}`, one row: the state right after a reset;
//! - actions: `a_0..a_{d-1}`, one row per step, environment units;
//! - trace (written): `step,reward,terminated,truncated,obs_0..`, one row per step, `step`
//!   counting from 1, flags as 0 or 1. The replay stops after the first step that terminates
//!   or truncates, or when the actions run out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Env, SimError};

/// A parsed CSV table: the header and rows of numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

/// One step of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub step: usize,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
    pub obs: Vec<f64>,
}

fn csv_error(path: &Path, line: usize, message: impl Into<String>) -> SimError {
    SimError::Csv {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Parses CSV text whose header names must be `expected_header` (if given) and whose cells are
/// all numbers. `path` is only used in error messages.
pub fn parse_table(
    path: &Path,
    text: &str,
    expected_header: Option<&[String]>,
) -> Result<Table, SimError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header_line) = lines
        .next()
        .ok_or_else(|| csv_error(path, 1, "file is empty"))?;
    let header: Vec<String> = header_line
        .split(',')
        .map(|h| h.trim().to_owned())
        .collect();
    if let Some(expected) = expected_header
        && header != expected
    {
        return Err(csv_error(
            path,
            1,
            format!(
                "header has {} columns `{}`, expected {} columns `{}`",
                header.len(),
                abbreviate(&header),
                expected.len(),
                abbreviate(expected)
            ),
        ));
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let line_number = index + 1;
        let row = line
            .split(',')
            .enumerate()
            .map(|(column, cell)| {
                cell.trim().parse::<f64>().map_err(|_| {
                    let name = header.get(column).map_or("?", String::as_str);
                    csv_error(
                        path,
                        line_number,
                        format!("column {name}: `{cell}` is not a number"),
                    )
                })
            })
            .collect::<Result<Vec<f64>, _>>()?;
        if row.len() != header.len() {
            return Err(csv_error(
                path,
                line_number,
                format!(
                    "row has {} values, the header has {}",
                    row.len(),
                    header.len()
                ),
            ));
        }
        rows.push(row);
    }
    Ok(Table { header, rows })
}

fn abbreviate(names: &[String]) -> String {
    if names.len() <= 4 {
        names.join(",")
    } else {
        format!("{},{},...,{}", names[0], names[1], names[names.len() - 1])
    }
}

fn read_text(path: &Path) -> Result<String, SimError> {
    std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The expected init header for a task with `nq` positions and `nv` velocities.
pub fn init_header(nq: usize, nv: usize) -> Vec<String> {
    (0..nq)
        .map(|i| format!("qpos_{i}"))
        .chain((0..nv).map(|i| format!("qvel_{i}")))
        .collect()
}

/// The expected actions header for `action_dim` actions.
pub fn actions_header(action_dim: usize) -> Vec<String> {
    (0..action_dim).map(|i| format!("a_{i}")).collect()
}

/// Reads an init file for `env`: returns `(qpos, qvel)`.
pub fn read_init(path: &Path, env: &dyn Env) -> Result<(Vec<f64>, Vec<f64>), SimError> {
    let (nq, nv) = (env.spec().nq, env.spec().nv);
    let table = parse_table(path, &read_text(path)?, Some(&init_header(nq, nv)))?;
    match table.rows.as_slice() {
        [row] => Ok((row[..nq].to_vec(), row[nq..].to_vec())),
        rows => Err(csv_error(
            path,
            2,
            format!("expected exactly one state row, found {}", rows.len()),
        )),
    }
}

/// Reads an actions file for `env`: one row per step.
pub fn read_actions(path: &Path, env: &dyn Env) -> Result<Vec<Vec<f64>>, SimError> {
    let header = actions_header(env.spec().action_dim());
    let table = parse_table(path, &read_text(path)?, Some(&header))?;
    if table.rows.is_empty() {
        return Err(csv_error(path, 2, "no action rows"));
    }
    for (row_index, row) in table.rows.iter().enumerate() {
        if let Some(column) = row.iter().position(|a| !a.is_finite()) {
            let message = format!("a_{column} is {}: actions must be finite", row[column]);
            return Err(csv_error(path, row_index + 2, message));
        }
    }
    Ok(table.rows)
}

/// Replays `actions` from the state `(qpos, qvel)`.
pub fn replay(
    env: &mut dyn Env,
    qpos: &[f64],
    qvel: &[f64],
    actions: &[Vec<f64>],
) -> Result<Vec<TraceRow>, SimError> {
    let mut obs = vec![0.0; env.spec().obs_dim];
    env.reset_to_state(qpos, qvel, &mut obs)?;
    let mut trace = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        let outcome = env.step(action, &mut obs)?;
        trace.push(TraceRow {
            step: i + 1,
            reward: outcome.reward,
            terminated: outcome.terminated,
            truncated: outcome.truncated,
            obs: obs.clone(),
        });
        if outcome.terminated || outcome.truncated {
            break;
        }
    }
    Ok(trace)
}

/// The trace as CSV text (floats printed so they read back exactly).
pub fn trace_to_csv(trace: &[TraceRow], obs_dim: usize) -> String {
    let mut text = String::from("step,reward,terminated,truncated");
    for i in 0..obs_dim {
        let _ = write!(text, ",obs_{i}");
    }
    text.push('\n');
    for row in trace {
        let _ = write!(
            text,
            "{},{:?},{},{}",
            row.step,
            row.reward,
            u8::from(row.terminated),
            u8::from(row.truncated)
        );
        for v in &row.obs {
            let _ = write!(text, ",{v:?}");
        }
        text.push('\n');
    }
    text
}

/// Writes the trace to `path`.
pub fn write_trace(path: &Path, trace: &[TraceRow], obs_dim: usize) -> Result<(), SimError> {
    std::fs::write(path, trace_to_csv(trace, obs_dim)).map_err(|source| SimError::Io {
        path: PathBuf::from(path),
        source,
    })
}

/// Reads a trace file back (for comparisons).
pub fn read_trace(path: &Path) -> Result<Vec<TraceRow>, SimError> {
    let table = parse_table(path, &read_text(path)?, None)?;
    if table.header.len() < 4 || table.header[..4] != ["step", "reward", "terminated", "truncated"]
    {
        return Err(csv_error(
            path,
            1,
            "header must start with step,reward,terminated,truncated",
        ));
    }
    Ok(table
        .rows
        .into_iter()
        .map(|row| TraceRow {
            step: row[0] as usize,
            reward: row[1],
            terminated: row[2] != 0.0,
            truncated: row[3] != 0.0,
            obs: row[4..].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_cells_name_line_and_column() {
        let err = parse_table(Path::new("a.csv"), "a_0,a_1\n1.0,2.0\n3.0,x\n", None).unwrap_err();
        assert_eq!(err.to_string(), "a.csv:3: column a_1: `x` is not a number");
    }

    #[test]
    fn ragged_rows_are_rejected() {
        let err = parse_table(Path::new("a.csv"), "a_0,a_1\n1.0\n", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.csv:2: row has 1 values, the header has 2"
        );
    }

    #[test]
    fn wrong_header_says_what_was_expected() {
        let expected = actions_header(3);
        let err = parse_table(Path::new("a.csv"), "a_0,a_1\n1,2\n", Some(&expected)).unwrap_err();
        assert!(
            err.to_string().contains("expected 3 columns `a_0,a_1,a_2`"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        let err = parse_table(Path::new("a.csv"), "\n\n", None).unwrap_err();
        assert!(err.to_string().contains("file is empty"));
    }

    #[test]
    fn trace_round_trips_exactly() {
        let trace = vec![TraceRow {
            step: 1,
            reward: 0.1 + 0.2,
            terminated: true,
            truncated: false,
            obs: vec![1.0 / 3.0, -2e-300, 7.0],
        }];
        let text = trace_to_csv(&trace, 3);
        let table = parse_table(Path::new("t.csv"), &text, None).unwrap();
        assert_eq!(
            table.rows[0],
            vec![1.0, 0.1 + 0.2, 1.0, 0.0, 1.0 / 3.0, -2e-300, 7.0]
        );
    }
}
