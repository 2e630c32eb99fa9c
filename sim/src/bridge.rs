//! The simulator side of sim-in-the-loop: one task stepped against commands that arrive over a
//! [`Transport`] (ROS 2 in `sdac-sim-bridge`, an in-process stand-in in tests).
//!
//! Each observation carries a stamp: the wall-clock time of its first publication in
//! nanoseconds since the UNIX epoch, made strictly increasing so that it also names the
//! observation. A controller answers an observation by echoing its stamp with the command, so
//! the bridge knows which observation a command belongs to and measures observation-to-command
//! latency on its own monotonic clock (other processes on the host can compare the stamp with
//! their wall clock).
//!
//! - **Lockstep** ([`Pacing::Lockstep`]): publish an observation, wait for the command that
//!   answers its stamp (re-publishing the observation every `resend_interval`, since observations
//!   travel best effort), then step. A command that does not come within `command_timeout`
//!   counts as a timeout and the previous action is held for that step.
//! - **Real time** ([`Pacing::RealTime`]): step at a fixed rate with the newest good command,
//!   publish the new observation, sleep until the next period; late steps count as overruns.
//!
//! A command of the wrong length or with a non-finite value is counted and never reaches
//! MuJoCo: the previous good action of the episode (zero at its start) is applied instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Env, SimError};

/// Why a command was not applied.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum BadCommand {
    #[error("command has {got} values, the task takes {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error("command[{index}] is {value}: commands must be finite")]
    NonFinite { index: usize, value: f64 },
}

/// Copies `command` into `action` when it has `action.len()` finite values; writes nothing
/// otherwise.
pub fn accept_command(command: &[f64], action: &mut [f64]) -> Result<(), BadCommand> {
    if command.len() != action.len() {
        return Err(BadCommand::WrongLength {
            expected: action.len(),
            got: command.len(),
        });
    }
    if let Some(index) = command.iter().position(|v| !v.is_finite()) {
        return Err(BadCommand::NonFinite {
            index,
            value: command[index],
        });
    }
    action.copy_from_slice(command);
    Ok(())
}

/// A command as the transport received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The stamp of the observation this command answers, when it names one.
    pub answers_stamp: Option<u64>,
    /// The action in environment units, as sent (not yet checked).
    pub values: Vec<f64>,
}

/// How observations leave and commands arrive.
pub trait Transport {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Publishes the observation stamped `stamp` (raw, environment units).
    fn publish_observation(&mut self, stamp: u64, obs_raw: &[f64]) -> Result<(), Self::Error>;

    /// The next command received, waiting at most until `deadline`; `None` when none came.
    fn next_command(&mut self, deadline: Instant) -> Result<Option<Command>, Self::Error>;
}

/// When the bridge steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Step once the command answering the last observation arrived (or timed out).
    Lockstep { command_timeout: Duration },
    /// Step every `period` with the newest good command.
    RealTime { period: Duration },
}

/// What the bridge runs.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub episodes: u32,
    /// Episode `i` resets the task with seed `seed + i`.
    pub seed: u64,
    pub pacing: Pacing,
    /// How long the first observation waits for its answer (re-sent meanwhile) before the run
    /// fails with [`BridgeError::NoController`]: the time a controller may take to start and
    /// discover the bridge.
    pub startup_timeout: Duration,
    /// How often an unanswered observation is published again (observations travel best
    /// effort): while waiting for the first answer, and in lockstep.
    pub resend_interval: Duration,
    /// Stop after this many steps in all, even mid-episode (that episode is not reported).
    pub max_steps: Option<u64>,
}

/// One finished episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeReport {
    pub episode: u32,
    pub seed: u64,
    /// Sum of the task's rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
    pub steps: u32,
    pub terminated: bool,
    pub truncated: bool,
}

/// Nearest-rank percentiles of observation-to-command latency, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl LatencyStats {
    /// Sorts `samples_us` in place and reads the percentiles off it (all zero when empty).
    pub fn from_samples(samples_us: &mut [f64]) -> Self {
        samples_us.sort_by(f64::total_cmp);
        let count = samples_us.len();
        if count == 0 {
            return Self::default();
        }
        let rank = |q: f64| samples_us[((q * count as f64).ceil() as usize).clamp(1, count) - 1];
        Self {
            count,
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: samples_us[count - 1],
        }
    }
}

/// Everything a bridge run measured; written as JSON by `--report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeReport {
    pub env: String,
    /// `lockstep` or `realtime`.
    pub pacing: String,
    /// Step rate in real-time pacing; `null` in lockstep.
    pub rate_hz: Option<f64>,
    pub episodes: Vec<EpisodeReport>,
    pub steps: u64,
    pub observations_published: u64,
    /// Commands that answered a published observation (the first answer to each).
    pub commands_received: u64,
    /// Commands refused (wrong length or non-finite): the previous action was applied instead.
    pub bad_commands: u64,
    /// Commands that answer no observation the bridge waits for: answers to older ones, second
    /// answers, and commands without a stamp (a controller's repeated or safe commands between
    /// observations).
    pub unmatched_commands: u64,
    /// Lockstep: steps taken without an answer after the command timeout.
    pub command_timeouts: u64,
    /// Real time: steps that started later than one period after the previous one.
    pub step_overruns: u64,
    /// Observation published -> command answering it received (the first observation of the
    /// run, answered once the controller discovered the bridge, is left out).
    pub command_latency: LatencyStats,
    /// What the controller last reported about itself (its diagnostics' key-value pairs, e.g.
    /// `deadline_misses_total`), when the transport listens to it.
    pub controller_diagnostics: Option<std::collections::BTreeMap<String, String>>,
    /// The run was stopped before its end (e.g. by SIGINT): the episode under way was abandoned
    /// and is not in `episodes`.
    #[serde(default)]
    pub interrupted: bool,
}

/// Observations whose publication time is kept to match late answers in real time.
const PUBLISHED_HISTORY: usize = 64;

/// Errors of a bridge run: the task's or the transport's.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("transport: {0}")]
    Transport(#[source] E),
    #[error("no controller answered the first observation within {0:?}")]
    NoController(Duration),
}

/// Runs `config.episodes` episodes of `env` against commands from `transport`. `on_episode`
/// sees each episode as it ends (the binary prints it). Once `stop` is set (a signal handler's
/// flag) the run ends within about a step or a resend interval: the episode under way is
/// abandoned and the report holds the episodes finished so far, marked `interrupted`.
pub fn run_bridge<T: Transport>(
    env: &mut dyn Env,
    transport: &mut T,
    config: &BridgeConfig,
    stop: &AtomicBool,
    mut on_episode: impl FnMut(&EpisodeReport),
) -> Result<BridgeReport, BridgeError<T::Error>> {
    let spec = env.spec().clone();
    let mut state = RunState {
        obs_raw: vec![0.0; spec.obs_dim],
        action: vec![0.0; spec.action_dim()],
        stamp: 0,
        published: 0,
        published_at: [None; PUBLISHED_HISTORY],
        latencies_us: Vec::new(),
        report: BridgeReport {
            env: spec.name.to_owned(),
            pacing: match config.pacing {
                Pacing::Lockstep { .. } => "lockstep",
                Pacing::RealTime { .. } => "realtime",
            }
            .to_owned(),
            rate_hz: match config.pacing {
                Pacing::Lockstep { .. } => None,
                Pacing::RealTime { period } => Some(1.0 / period.as_secs_f64()),
            },
            episodes: Vec::new(),
            steps: 0,
            observations_published: 0,
            commands_received: 0,
            bad_commands: 0,
            unmatched_commands: 0,
            command_timeouts: 0,
            step_overruns: 0,
            command_latency: LatencyStats::default(),
            controller_diagnostics: None,
            interrupted: false,
        },
    };
    'episodes: for episode in 0..config.episodes {
        let seed = config.seed.wrapping_add(u64::from(episode));
        env.reset(Some(seed), &mut state.obs_raw)?;
        state.action.fill(0.0);
        let mut episode_report = EpisodeReport {
            episode,
            seed,
            episode_return: 0.0,
            steps: 0,
            terminated: false,
            truncated: false,
        };
        let mut next_step_at = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                state.report.interrupted = true;
                break 'episodes;
            }
            match config.pacing {
                _ if state.published == 0 => {
                    if !state.await_answer(transport, config.startup_timeout, config, stop)? {
                        if stop.load(Ordering::Relaxed) {
                            state.report.interrupted = true;
                            break 'episodes;
                        }
                        return Err(BridgeError::NoController(config.startup_timeout));
                    }
                    // The first answer waited for discovery: not a latency of the loop.
                    state.latencies_us.clear();
                    next_step_at = Instant::now();
                }
                Pacing::Lockstep { command_timeout } => {
                    if !state.await_answer(transport, command_timeout, config, stop)? {
                        if stop.load(Ordering::Relaxed) {
                            state.report.interrupted = true;
                            break 'episodes;
                        }
                        state.report.command_timeouts += 1;
                    }
                }
                Pacing::RealTime { period } => {
                    state.publish(transport)?;
                    next_step_at += period;
                    let now = Instant::now();
                    if now > next_step_at {
                        state.report.step_overruns += 1;
                        next_step_at = now;
                    }
                    state.drain_until(transport, next_step_at)?;
                }
            }
            if config
                .max_steps
                .is_some_and(|max| state.report.steps >= max)
            {
                break 'episodes;
            }
            let outcome = env.step(&state.action, &mut state.obs_raw)?;
            episode_report.episode_return += outcome.reward;
            episode_report.steps += 1;
            state.report.steps += 1;
            if outcome.terminated || outcome.truncated {
                episode_report.terminated = outcome.terminated;
                episode_report.truncated = outcome.truncated;
                break;
            }
        }
        on_episode(&episode_report);
        state.report.episodes.push(episode_report);
    }
    state.report.command_latency = LatencyStats::from_samples(&mut state.latencies_us);
    Ok(state.report)
}

/// One recent publication.
#[derive(Debug, Clone, Copy)]
struct Published {
    stamp: u64,
    at: Instant,
    /// A command answered it already: later answers count as unmatched.
    answered: bool,
}

struct RunState {
    obs_raw: Vec<f64>,
    /// The action applied at the next step: the last good command of the episode.
    action: Vec<f64>,
    /// Stamp of the last published observation.
    stamp: u64,
    /// Observations published so far (not counting re-sends).
    published: u64,
    /// Recent publications, indexed by `published % PUBLISHED_HISTORY`.
    published_at: [Option<Published>; PUBLISHED_HISTORY],
    latencies_us: Vec<f64>,
    report: BridgeReport,
}

impl RunState {
    /// Publishes the current observation under a new stamp.
    fn publish<T: Transport>(&mut self, transport: &mut T) -> Result<(), BridgeError<T::Error>> {
        self.stamp = wall_clock_ns().max(self.stamp + 1);
        self.resend(transport)?;
        self.published += 1;
        self.published_at[(self.published % PUBLISHED_HISTORY as u64) as usize] = Some(Published {
            stamp: self.stamp,
            at: Instant::now(),
            answered: false,
        });
        Ok(())
    }

    /// Marks the recent observation stamped `stamp` answered and says when it was first
    /// published; `None` when it is not a recent one or was answered before.
    fn claim(&mut self, stamp: u64) -> Option<Instant> {
        let entry = self
            .published_at
            .iter_mut()
            .flatten()
            .find(|p| p.stamp == stamp && !p.answered)?;
        entry.answered = true;
        Some(entry.at)
    }

    /// Publishes the current observation again under its stamp.
    fn resend<T: Transport>(&mut self, transport: &mut T) -> Result<(), BridgeError<T::Error>> {
        transport
            .publish_observation(self.stamp, &self.obs_raw)
            .map_err(BridgeError::Transport)?;
        self.report.observations_published += 1;
        Ok(())
    }

    /// Publishes, then takes commands until one answers this observation (applied when good;
    /// `true`) or `timeout` passes or `stop` is set (the previous action is held; `false`).
    fn await_answer<T: Transport>(
        &mut self,
        transport: &mut T,
        timeout: Duration,
        config: &BridgeConfig,
        stop: &AtomicBool,
    ) -> Result<bool, BridgeError<T::Error>> {
        self.publish(transport)?;
        let give_up_at = Instant::now() + timeout;
        let mut resend_at = Instant::now() + config.resend_interval;
        loop {
            let now = Instant::now();
            if now >= give_up_at || stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if now >= resend_at {
                self.resend(transport)?;
                resend_at = now + config.resend_interval;
            }
            let wait_until = give_up_at.min(resend_at);
            let Some(command) = transport
                .next_command(wait_until)
                .map_err(BridgeError::Transport)?
            else {
                continue;
            };
            if command.answers_stamp == Some(self.stamp)
                && let Some(published) = self.claim(self.stamp)
            {
                self.take(&command, published);
                return Ok(true);
            }
            self.report.unmatched_commands += 1;
        }
    }

    /// Real time: takes every command that arrives until `deadline`; each good one that answers
    /// a recent observation becomes the action.
    fn drain_until<T: Transport>(
        &mut self,
        transport: &mut T,
        deadline: Instant,
    ) -> Result<(), BridgeError<T::Error>> {
        while let Some(command) = transport
            .next_command(deadline)
            .map_err(BridgeError::Transport)?
        {
            match command.answers_stamp.and_then(|stamp| self.claim(stamp)) {
                Some(published) => self.take(&command, published),
                None => self.report.unmatched_commands += 1,
            }
        }
        Ok(())
    }

    /// Records the latency of the first command that answers the observation published at
    /// `published` and applies it when it is good.
    fn take(&mut self, command: &Command, published: Instant) {
        self.latencies_us
            .push(published.elapsed().as_secs_f64() * 1e6);
        self.report.commands_received += 1;
        if accept_command(&command.values, &mut self.action).is_err() {
            self.report.bad_commands += 1;
        }
    }
}

/// Nanoseconds since the UNIX epoch on the system clock (0 if the clock is before it).
pub(crate) fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::{Assets, make_env};

    #[test]
    fn only_finite_commands_of_the_right_length_are_accepted() {
        let mut action = [0.5, 0.5];
        assert_eq!(
            accept_command(&[1.0], &mut action),
            Err(BadCommand::WrongLength {
                expected: 2,
                got: 1
            })
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                accept_command(&[0.0, bad], &mut action),
                Err(BadCommand::NonFinite { index: 1, .. })
            ));
        }
        assert_eq!(action, [0.5, 0.5]);
        accept_command(&[-1.0, 2.0], &mut action).unwrap();
        assert_eq!(action, [-1.0, 2.0]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let stats = LatencyStats::from_samples(&mut samples);
        assert_eq!(stats.count, 100);
        assert_eq!(
            (stats.p50_us, stats.p99_us, stats.max_us),
            (50.0, 99.0, 100.0)
        );
        assert_eq!(LatencyStats::from_samples(&mut []), LatencyStats::default());
    }

    /// Answers each observation at once with `controller(n, stamp, obs)` (`n`: 1 for the first
    /// observation, re-sends keep their number), or not at all.
    struct Loopback<F> {
        controller: F,
        pending: VecDeque<Command>,
        stamps: Vec<u64>,
    }

    impl<F> Loopback<F> {
        fn new(controller: F) -> Self {
            Self {
                controller,
                pending: VecDeque::new(),
                stamps: Vec::new(),
            }
        }
    }

    impl<F: FnMut(usize, u64, &[f64]) -> Option<Command>> Transport for Loopback<F> {
        type Error = std::io::Error;

        fn publish_observation(&mut self, stamp: u64, obs_raw: &[f64]) -> Result<(), Self::Error> {
            if self.stamps.last() != Some(&stamp) {
                self.stamps.push(stamp);
            }
            let n = self.stamps.len();
            self.pending.extend((self.controller)(n, stamp, obs_raw));
            Ok(())
        }

        fn next_command(&mut self, deadline: Instant) -> Result<Option<Command>, Self::Error> {
            let command = self.pending.pop_front();
            if command.is_none() {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            }
            Ok(command)
        }
    }

    fn lockstep(timeout_ms: u64) -> BridgeConfig {
        BridgeConfig {
            episodes: 2,
            seed: 5,
            pacing: Pacing::Lockstep {
                command_timeout: Duration::from_millis(timeout_ms),
            },
            startup_timeout: Duration::from_millis(timeout_ms),
            resend_interval: Duration::from_millis(timeout_ms),
            max_steps: None,
        }
    }

    fn direct_return(env: &mut dyn Env, seed: u64, gain: f64) -> (f64, u32) {
        let mut obs = vec![0.0; env.spec().obs_dim];
        env.reset(Some(seed), &mut obs).unwrap();
        let (mut total, mut steps) = (0.0, 0);
        loop {
            let action = [(gain * obs[1]).clamp(-3.0, 3.0)];
            let outcome = env.step(&action, &mut obs).unwrap();
            total += outcome.reward;
            steps += 1;
            if outcome.terminated || outcome.truncated {
                return (total, steps);
            }
        }
    }

    #[test]
    fn lockstep_returns_equal_stepping_the_task_directly() {
        let assets = Assets::discover().unwrap();
        let mut env = make_env("InvertedPendulum-v5", &assets).unwrap();
        let gain = 2.0;
        let mut transport = Loopback::new(|_, stamp, obs: &[f64]| {
            Some(Command {
                answers_stamp: Some(stamp),
                values: vec![(gain * obs[1]).clamp(-3.0, 3.0)],
            })
        });
        let mut seen = Vec::new();
        let report = run_bridge(
            env.as_mut(),
            &mut transport,
            &lockstep(1000),
            &AtomicBool::new(false),
            |e| seen.push(e.episode),
        )
        .unwrap();
        assert_eq!(seen, [0, 1]);
        for episode in &report.episodes {
            let (expected, steps) = direct_return(env.as_mut(), episode.seed, gain);
            assert_eq!(episode.episode_return, expected);
            assert_eq!(episode.steps, steps);
        }
        assert_eq!(report.bad_commands + report.command_timeouts, 0);
        assert_eq!(report.commands_received, report.steps);
        assert_eq!(report.command_latency.count as u64, report.steps - 1);
        assert_eq!(transport.stamps.len() as u64, report.steps);
        assert!(transport.stamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bad_unmatched_and_missing_commands_are_counted_and_never_applied() {
        let assets = Assets::discover().unwrap();
        let mut env = make_env("InvertedPendulum-v5", &assets).unwrap();
        // 1: NaN; 2: wrong length; 3: answers an older observation, then nothing (timeout);
        // later: 0.0, the same as the held action, so the episode is the zero-action episode.
        let mut first_stamp = None;
        let mut transport = Loopback::new(|n, stamp, _: &[f64]| {
            let first = *first_stamp.get_or_insert(stamp);
            let (answers, values) = match n {
                1 => (stamp, vec![f64::NAN]),
                2 => (stamp, vec![0.0, 0.0]),
                3 => (first, vec![0.0]),
                _ => (stamp, vec![0.0]),
            };
            Some(Command {
                answers_stamp: Some(answers),
                values,
            })
        });
        let mut config = lockstep(5);
        config.episodes = 1;
        let report = run_bridge(
            env.as_mut(),
            &mut transport,
            &config,
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap();
        assert_eq!(report.bad_commands, 2);
        assert_eq!(report.unmatched_commands, 1);
        assert_eq!(report.command_timeouts, 1);
        let (expected, steps) = direct_return(env.as_mut(), config.seed, 0.0);
        assert_eq!(report.episodes[0].episode_return, expected);
        assert_eq!(report.episodes[0].steps, steps);
    }

    #[test]
    fn a_run_without_controller_fails() {
        let assets = Assets::discover().unwrap();
        let mut env = make_env("InvertedPendulum-v5", &assets).unwrap();
        let mut transport = Loopback::new(|_, _, _: &[f64]| None);
        let err = run_bridge(
            env.as_mut(),
            &mut transport,
            &lockstep(5),
            &AtomicBool::new(false),
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, BridgeError::NoController(_)), "{err}");
    }

    #[test]
    fn a_stop_request_ends_the_run_with_the_finished_episodes() {
        let assets = Assets::discover().unwrap();
        let mut env = make_env("InvertedPendulum-v5", &assets).unwrap();
        let (_, first_steps) = {
            let mut probe = make_env("InvertedPendulum-v5", &assets).unwrap();
            direct_return(probe.as_mut(), 5, 2.0)
        };
        // Stop (as a signal handler would) at the 10th observation of the second episode.
        let stop = AtomicBool::new(false);
        let stop_at = first_steps as usize + 10;
        let mut transport = Loopback::new(|n, stamp, obs: &[f64]| {
            if n == stop_at {
                stop.store(true, Ordering::Relaxed);
            }
            Some(Command {
                answers_stamp: Some(stamp),
                values: vec![(2.0 * obs[1]).clamp(-3.0, 3.0)],
            })
        });
        let mut config = lockstep(1000);
        config.episodes = 3;
        let report = run_bridge(env.as_mut(), &mut transport, &config, &stop, |_| {}).unwrap();
        assert!(report.interrupted);
        assert_eq!(report.episodes.len(), 1, "{report:?}");
        assert_eq!(report.episodes[0].steps, first_steps);
        // The 10th observation went unanswered: nine steps of the second episode were taken.
        assert_eq!(report.steps, u64::from(first_steps) + 9);

        // Stopped while waiting for a controller: an interrupted empty report, not an error.
        let mut silent = Loopback::new(|_, _, _: &[f64]| None);
        let report = run_bridge(
            env.as_mut(),
            &mut silent,
            &config,
            &AtomicBool::new(true),
            |_| {},
        )
        .unwrap();
        assert!(report.interrupted && report.episodes.is_empty() && report.steps == 0);
    }
}
