//! `sdac compare`: the evaluation returns of several run directories side by side. Runs of the
//! same task and algorithm are the seeds of one group; each group gets its best and final
//! evaluation return as mean ± standard deviation over its seeds (a markdown table on standard
//! output), and each task a PNG with one curve per group: the mean evaluation return over the
//! group's seeds at the evaluation steps all of them reached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::curve::{Series, write_learning_curve};
use crate::run::{algo_name, read_run};

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Run directories written by `sdac train` (repeatable; runs of one task and algorithm are
    /// grouped as seeds).
    #[arg(long = "run", required = true, num_args = 1..)]
    runs: Vec<PathBuf>,
    /// Directory for one learning-curve PNG per task (`<task>.png`); no pictures without it.
    #[arg(long)]
    curves: Option<PathBuf>,
}

/// One run's evaluations: `(environment step, mean evaluation return)` in logged order.
struct RunEvaluations {
    seed: u64,
    points: Vec<(u64, f64)>,
}

/// The `eval/episodic_return` rows of a run's `metrics.csv`.
fn evaluations(dir: &Path) -> anyhow::Result<Vec<(u64, f64)>> {
    let path = dir.join("metrics.csv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut points = Vec::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        let mut cells = line.split(',');
        let (Some(step), Some(tag), Some(value)) = (cells.next(), cells.next(), cells.next())
        else {
            bail!("{} line {}: not step,tag,value", path.display(), index + 1);
        };
        if tag != "eval/episodic_return" {
            continue;
        }
        let parsed = step.parse::<u64>().ok().zip(value.parse::<f64>().ok());
        let Some((step, value)) = parsed else {
            bail!(
                "{} line {}: {line:?} is not a number pair",
                path.display(),
                index + 1
            );
        };
        points.push((step, value));
    }
    if points.is_empty() {
        bail!("{} has no evaluation yet", path.display());
    }
    Ok(points)
}

/// Mean and sample standard deviation (`n - 1`; 0 for one value).
fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, variance.sqrt())
}

/// The mean over runs at the evaluation steps every run reached.
fn mean_curve(runs: &[RunEvaluations]) -> Vec<(f64, f64)> {
    let Some(shortest) = runs.iter().min_by_key(|run| run.points.len()) else {
        return Vec::new();
    };
    shortest
        .points
        .iter()
        .filter_map(|&(step, _)| {
            let at_step: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.points.iter().find(|(s, _)| *s == step).map(|p| p.1))
                .collect();
            (at_step.len() == runs.len()).then(|| (step as f64, mean_and_std(&at_step).0))
        })
        .collect()
}

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    // (task, algorithm) -> seeds, in a stable order.
    let mut groups: BTreeMap<(String, String), Vec<RunEvaluations>> = BTreeMap::new();
    for dir in &args.runs {
        let (info, _config) = read_run(dir).with_context(|| format!("run {}", dir.display()))?;
        let points = evaluations(dir)?;
        let runs = groups
            .entry((info.env.clone(), algo_name(info.algo).to_owned()))
            .or_default();
        if runs.iter().any(|run| run.seed == info.seed) {
            bail!(
                "{} repeats seed {} of {} on {}",
                dir.display(),
                info.seed,
                algo_name(info.algo),
                info.env
            );
        }
        runs.push(RunEvaluations {
            seed: info.seed,
            points,
        });
    }

    println!(
        "| task | algorithm | seeds | env steps (last evaluation) | best evaluation return | final evaluation return |"
    );
    println!("|---|---|---|---|---|---|");
    for ((env, algo), runs) in &groups {
        let best: Vec<f64> = runs
            .iter()
            .map(|run| {
                run.points
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        let last: Vec<(u64, f64)> = runs
            .iter()
            .filter_map(|run| run.points.last().copied())
            .collect();
        let final_values: Vec<f64> = last.iter().map(|p| p.1).collect();
        let steps: Vec<String> = last.iter().map(|p| p.0.to_string()).collect();
        let mut seeds: Vec<u64> = runs.iter().map(|run| run.seed).collect();
        seeds.sort_unstable();
        let (best_mean, best_std) = mean_and_std(&best);
        let (final_mean, final_std) = mean_and_std(&final_values);
        println!(
            "| {env} | {algo} | {} ({seeds:?}) | {} | {best_mean:.1} ± {best_std:.1} | {final_mean:.1} ± {final_std:.1} |",
            runs.len(),
            steps.join(", "),
        );
    }

    if let Some(curves) = &args.curves {
        std::fs::create_dir_all(curves)
            .with_context(|| format!("creating {}", curves.display()))?;
        let mut tasks: BTreeMap<&str, Vec<Series>> = BTreeMap::new();
        for ((env, algo), runs) in &groups {
            tasks.entry(env).or_default().push(Series {
                label: format!("{algo} (mean of {} seeds)", runs.len()),
                points: mean_curve(runs),
            });
        }
        for (env, series) in tasks {
            let path = curves.join(format!("{env}.png"));
            write_learning_curve(&path, &format!("{env}: evaluation return"), &series)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_deviation_is_the_sample_one() {
        let (mean, std) = mean_and_std(&[1.0, 2.0, 3.0]);
        assert_eq!(mean, 2.0);
        assert!((std - 1.0).abs() < 1e-12);
        assert_eq!(mean_and_std(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn the_mean_curve_keeps_the_steps_every_run_reached() {
        let runs = [
            RunEvaluations {
                seed: 0,
                points: vec![(10, 1.0), (20, 3.0), (30, 5.0)],
            },
            RunEvaluations {
                seed: 1,
                points: vec![(10, 3.0), (20, 5.0)],
            },
        ];
        assert_eq!(mean_curve(&runs), vec![(10.0, 2.0), (20.0, 4.0)]);
    }
}
