//! The real-time half of the node: the [`Controller`] that turns the newest observation into a
//! command once per period, its watchdog, its timing statistics, and the loop that paces it.
//!
//! Contract: after [`Controller::new`] nothing here allocates, locks or panics. Observations,
//! commands and statistics cross to the DDS thread as fixed-size plain values
//! ([`ObservationPod`], [`CommandPod`], [`WindowReport`]) through `heapless` SPSC queues.
//!
//! Timing. Period `k` spans `[s_k, s_k + P)`. At `s_k` the loop takes the newest queued
//! observation and acts on it at once. With none queued it waits for one (woken by the DDS
//! thread) until `s_k + 3P/4`, the decision point; an observation that arrives later waits for
//! `s_{k+1}`. Without a new observation the period's command repeats the last command while the
//! last valid observation is younger than the timeout, and is the safe action once it is older
//! (or when none has come yet). So exactly one command goes out per period, and an observation
//! that arrives in the first three quarters of a period is answered within the compute time.
//! A deadline miss is a period whose command was handed to the DDS thread after `s_k + P`, or a
//! period skipped because the thread woke too late. Each miss has one cause ([`MissCause`]): the
//! decision (policy and hand-off) took longer than its budget, the last quarter period, or it fit
//! that budget and the thread ran too late to meet the deadline (the operating system or, on a
//! virtual machine, the host did not run it in time).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::task::AtomicWaker;
use heapless::spsc::{Consumer, Producer};

use crate::clock;
use crate::msg::ObservationError;

/// The largest observation the node carries (Humanoid-v5 has 348 values).
pub const MAX_OBS_DIM: usize = 512;
/// The largest action the node carries.
pub const MAX_ACT_DIM: usize = 64;
/// Slots of each SPSC queue (`heapless` keeps one free: 15 items in flight).
pub const QUEUE_SLOTS: usize = 16;
/// The most periods one statistics window holds; a window is one second or this many periods.
pub const MAX_WINDOW_TICKS: usize = 10_000;

/// What the policy behind the controller must provide. `act` must not allocate, lock or panic.
pub trait ActionPolicy: Send {
    fn obs_dim(&self) -> usize;
    fn act_dim(&self) -> usize;
    /// Action bounds in environment units, `act_dim` values each.
    fn action_low(&self) -> &[f64];
    fn action_high(&self) -> &[f64];
    /// Writes the action for `obs_raw` into `action_env`, or refuses (wrong length, non-finite
    /// input or result) without writing.
    fn act(&mut self, obs_raw: &[f32], action_env: &mut [f32]) -> Result<(), PolicyRefused>;
}

/// The policy refused to act (its error is not carried: the real-time path formats nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRefused;

/// Why the DDS thread could not turn a message into an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ObservationFault {
    /// Deserialised, but the values are unusable (length, offset, non-finite).
    Invalid(ObservationError),
    /// The payload did not deserialise as the topic's type.
    Malformed,
}

/// An observation as it crosses to the control thread: values, the opaque stamp its label
/// carried, when the DDS thread received it, or why it is unusable.
#[derive(Clone, Copy)]
pub struct ObservationPod {
    pub values: [f32; MAX_OBS_DIM],
    pub len: usize,
    pub stamp: Option<u64>,
    /// `CLOCK_MONOTONIC` time of receipt on the DDS thread.
    pub received_ns: u64,
    pub fault: Option<ObservationFault>,
}

impl ObservationPod {
    /// No values yet; fill [`Self::values`] and [`Self::len`], or set [`Self::fault`].
    pub const fn empty(received_ns: u64) -> Self {
        Self {
            values: [0.0; MAX_OBS_DIM],
            len: 0,
            stamp: None,
            received_ns,
            fault: None,
        }
    }

    /// A pod that carries only the reason the message was refused.
    pub const fn faulty(fault: ObservationFault, received_ns: u64) -> Self {
        let mut pod = Self::empty(received_ns);
        pod.fault = Some(fault);
        pod
    }

    pub fn values(&self) -> &[f32] {
        &self.values[..self.len.min(MAX_OBS_DIM)]
    }
}

/// Where a command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandSource {
    /// The policy's action for a new observation.
    Policy,
    /// The last command again (with its stamp): no new observation this period (or the same
    /// stamped observation again), the last valid one still fresh.
    Repeat,
    /// The safe action: the watchdog tripped this period.
    Safe,
}

/// A command as it crosses to the DDS thread.
#[derive(Clone, Copy)]
pub struct CommandPod {
    pub values: [f32; MAX_ACT_DIM],
    pub len: usize,
    /// The stamp of the observation it answers (policy commands and their repeats).
    pub stamp: Option<u64>,
    pub source: CommandSource,
    /// When the observation it answers reached the DDS thread (policy commands only).
    pub obs_received_ns: Option<u64>,
    /// When the control thread handed it over.
    pub sent_ns: u64,
}

impl CommandPod {
    pub fn values(&self) -> &[f32] {
        &self.values[..self.len.min(MAX_ACT_DIM)]
    }
}

/// Why a period's command was the safe action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// No observation has arrived since the start.
    NoObservation,
    /// The newest valid observation is older than the timeout.
    Stale { age_ns: u64 },
    /// The newest observation was refused by the DDS thread.
    Observation(ObservationFault),
    /// The observation has a different length than the policy takes.
    WrongLength { expected: usize, got: usize },
    /// The policy refused the observation or produced a non-finite action.
    Policy,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NoObservation => write!(f, "no observation received yet"),
            Fault::Stale { age_ns } => write!(
                f,
                "stale observation: newest valid one is {:.1} ms old",
                *age_ns as f64 / 1e6
            ),
            Fault::Observation(ObservationFault::Invalid(e)) => write!(f, "{e}"),
            Fault::Observation(ObservationFault::Malformed) => {
                write!(f, "malformed observation payload (not the topic's type)")
            }
            Fault::WrongLength { expected, got } => {
                write!(
                    f,
                    "observation has {got} values, the policy takes {expected}"
                )
            }
            Fault::Policy => write!(f, "the policy refused the observation or its action"),
        }
    }
}

/// Periods whose command was the safe action, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub no_observation: u64,
    pub stale: u64,
    pub invalid: u64,
    pub malformed: u64,
    pub policy: u64,
}

/// Why a period missed its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissCause {
    /// The decision took longer than its budget (a quarter period): the node's own work ran long.
    Overrun,
    /// The decision fit its budget but began too late, or the thread slept through whole periods:
    /// it was not run in time.
    LateWakeup,
}

/// Deadline misses by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissCounts {
    pub overrun: u64,
    pub late_wakeup: u64,
}

impl MissCounts {
    pub fn total(&self) -> u64 {
        self.overrun + self.late_wakeup
    }

    fn count(&mut self, cause: MissCause, periods: u64) {
        match cause {
            MissCause::Overrun => self.overrun += periods,
            MissCause::LateWakeup => self.late_wakeup += periods,
        }
    }
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.no_observation + self.stale + self.invalid + self.malformed + self.policy
    }

    fn count(&mut self, fault: &Fault) {
        let slot = match fault {
            Fault::NoObservation => &mut self.no_observation,
            Fault::Stale { .. } => &mut self.stale,
            Fault::Observation(ObservationFault::Invalid(_)) | Fault::WrongLength { .. } => {
                &mut self.invalid
            }
            Fault::Observation(ObservationFault::Malformed) => &mut self.malformed,
            Fault::Policy => &mut self.policy,
        };
        *slot += 1;
    }
}

/// Commands per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub policy: u64,
    pub repeat: u64,
    pub safe: u64,
}

/// Statistics of one window (about a second) of the control loop, sent to the DDS thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowReport {
    pub periods: u64,
    /// Time between consecutive period starts as the thread woke up.
    pub period_mean_ns: u64,
    pub period_max_ns: u64,
    /// How late the thread woke after a period start, worst case.
    pub wake_late_max_ns: u64,
    /// Time to decide (policy included) per period.
    pub compute_p50_ns: u64,
    pub compute_p99_ns: u64,
    pub compute_max_ns: u64,
    pub deadline_misses: u64,
    /// Deadline misses since the start, by cause.
    pub deadline_misses_total: MissCounts,
    /// Times the period grid's phase moved to follow the observation stream.
    pub phase_shifts: u64,
    pub faults: FaultCounts,
    pub faults_total: FaultCounts,
    pub sources: SourceCounts,
    pub last_fault: Option<Fault>,
    /// Commands and reports lost because a queue to the DDS thread was full, since the start.
    pub queue_full_total: u64,
    pub realtime: Option<clock::RealtimeSetup>,
}

/// What the safe action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafeAction {
    /// All zeros in environment units, clamped into the action bounds.
    Zero,
    /// The last action the policy computed (the zero action before the first one).
    Hold,
}

/// The controller's settings.
#[derive(Debug, Clone, Copy)]
pub struct ControlConfig {
    pub period_ns: u64,
    pub obs_timeout_ns: u64,
    pub safe_action: SafeAction,
}

/// How the control thread runs (not what it decides): its `SCHED_FIFO` priority, the CPU it is
/// pinned to, and how long it busy-waits before each deadline instead of sleeping through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopConfig {
    pub priority: i32,
    pub cpu: Option<usize>,
    /// The last `spin_ns` before a period start and before the decision point are spent polling
    /// the clock (and, before the decision point, the observation queue) instead of sleeping.
    pub spin_ns: u64,
}

/// Why a controller cannot be built for a policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error("the policy takes {0} observation values, the node carries at most {MAX_OBS_DIM}")]
    ObsTooLarge(usize),
    #[error("the policy has {0} action values, the node carries at most {MAX_ACT_DIM}")]
    ActTooLarge(usize),
    #[error("the policy's action bounds have {low} and {high} values for {act_dim} actions")]
    BoundsLength {
        low: usize,
        high: usize,
        act_dim: usize,
    },
    #[error("the period must be between 10 us and 10 s, got {0:?}")]
    Period(Duration),
}

/// Per-window samples and counters; fixed size.
struct Window {
    compute_ns: Box<[u64; MAX_WINDOW_TICKS]>,
    periods: usize,
    target_periods: usize,
    last_start_ns: Option<u64>,
    period_sum_ns: u64,
    period_count: u64,
    period_max_ns: u64,
    wake_late_max_ns: u64,
    deadline_misses: u64,
    phase_shifts: u64,
    faults: FaultCounts,
    sources: SourceCounts,
}

impl Window {
    fn new(target_periods: usize) -> Self {
        Self {
            compute_ns: Box::new([0; MAX_WINDOW_TICKS]),
            periods: 0,
            target_periods: target_periods.clamp(1, MAX_WINDOW_TICKS),
            last_start_ns: None,
            period_sum_ns: 0,
            period_count: 0,
            period_max_ns: 0,
            wake_late_max_ns: 0,
            deadline_misses: 0,
            phase_shifts: 0,
            faults: FaultCounts::default(),
            sources: SourceCounts::default(),
        }
    }

    fn reset(&mut self) {
        self.periods = 0;
        self.period_sum_ns = 0;
        self.period_count = 0;
        self.period_max_ns = 0;
        self.wake_late_max_ns = 0;
        self.deadline_misses = 0;
        self.phase_shifts = 0;
        self.faults = FaultCounts::default();
        self.sources = SourceCounts::default();
    }
}

/// The value at quantile `q` of `samples` (nearest rank); reorders `samples`, allocates nothing.
fn quantile(samples: &mut [u64], q: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    *samples.select_nth_unstable(rank).1
}

/// Timing of the period a tick belongs to.
#[derive(Debug, Clone, Copy)]
pub struct PeriodTiming {
    /// `s_k` on `CLOCK_MONOTONIC`.
    pub start_ns: u64,
    /// When the thread actually woke for it.
    pub woke_ns: u64,
}

/// The queue ends and signals the control thread works with.
pub struct ControlLinks<'q> {
    pub observations: Consumer<'q, ObservationPod>,
    pub commands: Producer<'q, CommandPod>,
    pub reports: Producer<'q, WindowReport>,
    /// Woken after every command and report, so the DDS thread publishes at once.
    pub dds_waker: &'q AtomicWaker,
}

/// Turns observations into commands, one per period, with the watchdog; owns the policy.
pub struct Controller<P: ActionPolicy> {
    policy: P,
    config: ControlConfig,
    obs_dim: usize,
    act_dim: usize,
    zero_action: [f32; MAX_ACT_DIM],
    last_policy_action: Option<[f32; MAX_ACT_DIM]>,
    last_policy_stamp: Option<u64>,
    last_valid_obs_ns: Option<u64>,
    last_command: Option<CommandPod>,
    last_fault: Option<Fault>,
    deadline_misses_total: MissCounts,
    faults_total: FaultCounts,
    queue_full_total: u64,
    realtime: Option<clock::RealtimeSetup>,
    window: Window,
}

impl<P: ActionPolicy> Controller<P> {
    /// Checks that the policy fits the node's fixed buffers and sizes everything (the only
    /// allocation: the statistics window).
    pub fn new(policy: P, config: ControlConfig) -> Result<Self, ControlError> {
        let (obs_dim, act_dim) = (policy.obs_dim(), policy.act_dim());
        if obs_dim > MAX_OBS_DIM {
            return Err(ControlError::ObsTooLarge(obs_dim));
        }
        if act_dim > MAX_ACT_DIM {
            return Err(ControlError::ActTooLarge(act_dim));
        }
        let (low, high) = (policy.action_low(), policy.action_high());
        if low.len() != act_dim || high.len() != act_dim {
            return Err(ControlError::BoundsLength {
                low: low.len(),
                high: high.len(),
                act_dim,
            });
        }
        if !(10_000..=10_000_000_000).contains(&config.period_ns) {
            return Err(ControlError::Period(Duration::from_nanos(config.period_ns)));
        }
        let mut zero_action = [0.0f32; MAX_ACT_DIM];
        for ((z, lo), hi) in zero_action.iter_mut().zip(low).zip(high) {
            // max then min: a NaN bound cannot produce a NaN action.
            *z = 0.0f64.max(*lo).min(*hi) as f32;
            if !z.is_finite() {
                *z = 0.0;
            }
        }
        let periods_per_second = (1_000_000_000 / config.period_ns) as usize;
        Ok(Self {
            policy,
            config,
            obs_dim,
            act_dim,
            zero_action,
            last_policy_action: None,
            last_policy_stamp: None,
            last_valid_obs_ns: None,
            last_command: None,
            last_fault: None,
            deadline_misses_total: MissCounts::default(),
            faults_total: FaultCounts::default(),
            queue_full_total: 0,
            realtime: None,
            window: Window::new(periods_per_second),
        })
    }

    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// Records how the control thread was set up, for the reports.
    pub fn set_realtime(&mut self, setup: clock::RealtimeSetup) {
        self.realtime = Some(setup);
    }

    /// Whether a new observation is worth waiting for this period: the last valid one is
    /// fresh, so without one the period would repeat the last command.
    pub fn expects_observation(&self, now_ns: u64) -> bool {
        self.last_valid_obs_ns
            .is_some_and(|t| now_ns.saturating_sub(t) <= self.config.obs_timeout_ns)
    }

    /// The safe action now.
    fn safe_values(&self) -> [f32; MAX_ACT_DIM] {
        match (self.config.safe_action, self.last_policy_action) {
            (SafeAction::Hold, Some(held)) => held,
            _ => self.zero_action,
        }
    }

    /// The period's command for `input` (the newest observation, if one came) at `now_ns`.
    pub fn decide(&mut self, now_ns: u64, input: Option<&ObservationPod>) -> CommandPod {
        let mut command = CommandPod {
            values: [0.0; MAX_ACT_DIM],
            len: self.act_dim,
            stamp: None,
            source: CommandSource::Safe,
            obs_received_ns: None,
            sent_ns: now_ns,
        };
        let outcome = match input {
            Some(pod) => self.act_on(now_ns, pod, &mut command),
            None => match self.last_valid_obs_ns {
                None => Err(Fault::NoObservation),
                Some(t) if now_ns.saturating_sub(t) > self.config.obs_timeout_ns => {
                    Err(Fault::Stale { age_ns: now_ns - t })
                }
                Some(_) => self.repeat(&mut command),
            },
        };
        if let Err(fault) = outcome {
            command.values = self.safe_values();
            command.source = CommandSource::Safe;
            command.stamp = None;
            command.obs_received_ns = None;
            self.window.faults.count(&fault);
            self.faults_total.count(&fault);
            self.last_fault = Some(fault);
        }
        // The last guard before an actuator: whatever happened above, no non-finite value.
        if command.values().iter().any(|v| !v.is_finite()) {
            command.values = self.zero_action;
            command.source = CommandSource::Safe;
            self.window.faults.policy += 1;
            self.faults_total.policy += 1;
            self.last_fault = Some(Fault::Policy);
        }
        self.last_command = Some(command);
        command
    }

    /// The last command again (with the stamp it answered).
    fn repeat(&self, command: &mut CommandPod) -> Result<(), Fault> {
        let last = self.last_command.ok_or(Fault::NoObservation)?;
        command.values = last.values;
        command.stamp = last.stamp;
        command.source = CommandSource::Repeat;
        Ok(())
    }

    fn act_on(
        &mut self,
        now_ns: u64,
        pod: &ObservationPod,
        command: &mut CommandPod,
    ) -> Result<(), Fault> {
        if let Some(fault) = pod.fault {
            return Err(Fault::Observation(fault));
        }
        let age_ns = now_ns.saturating_sub(pod.received_ns);
        if age_ns > self.config.obs_timeout_ns {
            return Err(Fault::Stale { age_ns });
        }
        if pod.len != self.obs_dim {
            return Err(Fault::WrongLength {
                expected: self.obs_dim,
                got: pod.len,
            });
        }
        if pod.stamp.is_some() && pod.stamp == self.last_policy_stamp {
            // The same observation again (a publisher re-sending over best effort): it shows
            // the publisher is alive; the answer stays the one already given.
            self.last_valid_obs_ns = Some(pod.received_ns);
            return self.repeat(command);
        }
        let action = &mut command.values[..self.act_dim];
        self.policy
            .act(pod.values(), action)
            .map_err(|PolicyRefused| Fault::Policy)?;
        if action.iter().any(|v| !v.is_finite()) {
            return Err(Fault::Policy);
        }
        self.last_valid_obs_ns = Some(pod.received_ns);
        self.last_policy_action = Some(command.values);
        self.last_policy_stamp = pod.stamp;
        command.source = CommandSource::Policy;
        command.stamp = pod.stamp;
        command.obs_received_ns = Some(pod.received_ns);
        Ok(())
    }

    /// One period's work, the body of the control thread: decide, hand the command to the DDS
    /// thread, wake it, keep the statistics, and send a [`WindowReport`] when a window is full.
    /// Allocates nothing and takes no lock.
    pub fn tick(
        &mut self,
        timing: PeriodTiming,
        input: Option<&ObservationPod>,
        links: &mut ControlLinks<'_>,
    ) {
        let begin_ns = clock::monotonic_ns();
        let mut command = self.decide(begin_ns, input);
        let end_ns = clock::monotonic_ns();
        command.sent_ns = end_ns;
        let source = command.source;
        if links.commands.enqueue(command).is_err() {
            self.queue_full_total += 1;
        }
        links.dds_waker.wake();

        let window = &mut self.window;
        match source {
            CommandSource::Policy => window.sources.policy += 1,
            CommandSource::Repeat => window.sources.repeat += 1,
            CommandSource::Safe => window.sources.safe += 1,
        }
        if window.periods < MAX_WINDOW_TICKS {
            window.compute_ns[window.periods] = end_ns - begin_ns;
        }
        window.periods += 1;
        if let Some(last) = window.last_start_ns {
            let period = timing.woke_ns.saturating_sub(last);
            window.period_sum_ns += period;
            window.period_count += 1;
            window.period_max_ns = window.period_max_ns.max(period);
        }
        window.last_start_ns = Some(timing.woke_ns);
        window.wake_late_max_ns = window
            .wake_late_max_ns
            .max(timing.woke_ns.saturating_sub(timing.start_ns));
        if end_ns > timing.start_ns + self.config.period_ns {
            let cause = if end_ns - begin_ns > self.config.period_ns / 4 {
                MissCause::Overrun
            } else {
                MissCause::LateWakeup
            };
            self.count_deadline_misses(cause, 1);
        }
        if self.window.periods >= self.window.target_periods {
            self.send_report(links);
        }
    }

    /// Counts a move of the period grid's phase ([`phase_shift_ns`]).
    pub fn count_phase_shift(&mut self) {
        self.window.phase_shifts += 1;
    }

    /// Counts periods that missed their deadline (late commands, skipped periods).
    pub fn count_deadline_misses(&mut self, cause: MissCause, periods: u64) {
        self.window.deadline_misses += periods;
        self.deadline_misses_total.count(cause, periods);
    }

    fn send_report(&mut self, links: &mut ControlLinks<'_>) {
        let window = &mut self.window;
        let samples = &mut window.compute_ns[..window.periods.min(MAX_WINDOW_TICKS)];
        let compute_max_ns = samples.iter().copied().max().unwrap_or(0);
        let compute_p99_ns = quantile(samples, 0.99);
        let compute_p50_ns = quantile(samples, 0.50);
        let report = WindowReport {
            periods: window.periods as u64,
            period_mean_ns: window
                .period_sum_ns
                .checked_div(window.period_count)
                .unwrap_or(0),
            period_max_ns: window.period_max_ns,
            wake_late_max_ns: window.wake_late_max_ns,
            compute_p50_ns,
            compute_p99_ns,
            compute_max_ns,
            deadline_misses: window.deadline_misses,
            deadline_misses_total: self.deadline_misses_total,
            phase_shifts: window.phase_shifts,
            faults: window.faults,
            faults_total: self.faults_total,
            sources: window.sources,
            last_fault: self.last_fault,
            queue_full_total: self.queue_full_total,
            realtime: self.realtime,
        };
        window.reset();
        if links.reports.enqueue(report).is_err() {
            self.queue_full_total += 1;
        }
        links.dds_waker.wake();
    }
}

/// The newest queued observation (older ones are dropped unread) and how many were queued.
fn newest_observation(queue: &mut Consumer<'_, ObservationPod>) -> (Option<ObservationPod>, usize) {
    let mut newest = None;
    let mut count = 0;
    while let Some(pod) = queue.dequeue() {
        newest = Some(pod);
        count += 1;
    }
    (newest, count)
}

/// How far to move the next period start earlier so that a stream of one observation per
/// period, which keeps arriving just after the period's command went out, arrives just after
/// the next period starts instead (and is answered on arrival): `waited - P/16` when the
/// observation answered at this period's start had waited more than `P/8`, at most `P/2`; zero
/// otherwise. Only for a steady one-to-one stream (`drained` and `previous_drained` both 1):
/// faster streams always have an observation queued, slower ones leave periods without one.
pub fn phase_shift_ns(
    period_ns: u64,
    queued_at_start: Option<&ObservationPod>,
    woke_ns: u64,
    drained: usize,
    previous_drained: usize,
) -> u64 {
    let Some(pod) = queued_at_start else {
        return 0;
    };
    if drained != 1 || previous_drained != 1 || pod.fault.is_some() {
        return 0;
    }
    let waited_ns = woke_ns.saturating_sub(pod.received_ns);
    let margin_ns = period_ns / 16;
    if waited_ns <= 2 * margin_ns || waited_ns >= period_ns {
        return 0;
    }
    (waited_ns - margin_ns).min(period_ns / 2)
}

/// The control thread: paces [`Controller::tick`] at the configured period on absolute
/// deadlines until `shutdown` is set. The DDS thread unparks this thread after each
/// observation it queues. The period grid keeps its length; its phase follows a one-to-one
/// observation stream ([`phase_shift_ns`]), so such a stream is answered on arrival.
///
/// With `timing.spin_ns > 0` the thread stops sleeping `spin_ns` before each period start and
/// each decision point and polls instead ([`clock::sleep_until_ns_spinning`]): a wake-up that
/// would come late (a halted virtual CPU) then costs nothing, at up to `2 * spin_ns` of CPU time
/// per period.
pub fn run_control_loop<P: ActionPolicy>(
    controller: &mut Controller<P>,
    links: &mut ControlLinks<'_>,
    timing: LoopConfig,
    shutdown: &AtomicBool,
) {
    controller.set_realtime(clock::setup_realtime_thread(timing.priority, timing.cpu));
    let period_ns = controller.config().period_ns;
    let spin_ns = timing.spin_ns.min(period_ns / 4);
    let decision_offset_ns = period_ns - period_ns / 4;
    let mut start_ns = clock::monotonic_ns();
    let mut previous_drained = 0;
    while !shutdown.load(Ordering::Acquire) {
        let woke_ns = clock::monotonic_ns();
        let (mut input, mut drained) = newest_observation(&mut links.observations);
        let queued_at_start = input.is_some();
        if input.is_none() && controller.expects_observation(woke_ns) {
            let decision_ns = start_ns + decision_offset_ns;
            loop {
                let now_ns = clock::monotonic_ns();
                if now_ns >= decision_ns || shutdown.load(Ordering::Acquire) {
                    break;
                }
                let park_until_ns = decision_ns - spin_ns;
                if now_ns < park_until_ns {
                    std::thread::park_timeout(Duration::from_nanos(park_until_ns - now_ns));
                } else {
                    std::hint::spin_loop();
                }
                let (arrived, count) = newest_observation(&mut links.observations);
                drained += count;
                if arrived.is_some() {
                    input = arrived;
                    break;
                }
            }
        }
        controller.tick(PeriodTiming { start_ns, woke_ns }, input.as_ref(), links);
        let shift_ns = phase_shift_ns(
            period_ns,
            input.as_ref().filter(|_| queued_at_start),
            woke_ns,
            drained,
            previous_drained,
        );
        if shift_ns > 0 {
            controller.count_phase_shift();
        }
        previous_drained = drained;
        start_ns += period_ns - shift_ns;
        clock::sleep_until_ns_spinning(start_ns, spin_ns);
        let late_ns = clock::monotonic_ns().saturating_sub(start_ns);
        if late_ns >= period_ns {
            // Woke a whole period (or more) late: those periods had no command.
            let skipped = late_ns / period_ns;
            controller.count_deadline_misses(MissCause::LateWakeup, skipped);
            start_ns += skipped * period_ns;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::ObservationError;

    /// action = [sum(obs), obs[0]]; refuses when `refuse` is set; NaN output when `nan`; busy
    /// for at least `busy_ns` per call.
    struct Sum {
        calls: usize,
        refuse: bool,
        nan: bool,
        busy_ns: u64,
    }

    impl ActionPolicy for Sum {
        fn obs_dim(&self) -> usize {
            3
        }
        fn act_dim(&self) -> usize {
            2
        }
        fn action_low(&self) -> &[f64] {
            &[0.5, -1.0]
        }
        fn action_high(&self) -> &[f64] {
            &[2.0, 1.0]
        }
        fn act(&mut self, obs: &[f32], action: &mut [f32]) -> Result<(), PolicyRefused> {
            self.calls += 1;
            let busy_until_ns = clock::monotonic_ns() + self.busy_ns;
            while clock::monotonic_ns() < busy_until_ns {
                std::hint::spin_loop();
            }
            if self.refuse {
                return Err(PolicyRefused);
            }
            action[0] = if self.nan { f32::NAN } else { obs.iter().sum() };
            action[1] = obs[0];
            Ok(())
        }
    }

    const MS: u64 = 1_000_000;

    fn controller(safe_action: SafeAction) -> Controller<Sum> {
        controller_with_period(safe_action, MS)
    }

    fn controller_with_period(safe_action: SafeAction, period_ns: u64) -> Controller<Sum> {
        let policy = Sum {
            calls: 0,
            refuse: false,
            nan: false,
            busy_ns: 0,
        };
        let config = ControlConfig {
            period_ns,
            obs_timeout_ns: 20 * period_ns,
            safe_action,
        };
        Controller::new(policy, config).unwrap()
    }

    /// The queues between the control thread and a (here absent) DDS thread.
    struct Queues {
        commands: heapless::spsc::Queue<CommandPod, QUEUE_SLOTS>,
        reports: heapless::spsc::Queue<WindowReport, 4>,
        observations: heapless::spsc::Queue<ObservationPod, 2>,
        waker: AtomicWaker,
    }

    impl Queues {
        fn new() -> Self {
            Self {
                commands: heapless::spsc::Queue::new(),
                reports: heapless::spsc::Queue::new(),
                observations: heapless::spsc::Queue::new(),
                waker: AtomicWaker::new(),
            }
        }

        /// The control thread's links, and the DDS thread's ends of the command and report queues.
        fn split(
            &mut self,
        ) -> (
            ControlLinks<'_>,
            Consumer<'_, CommandPod>,
            Consumer<'_, WindowReport>,
        ) {
            let (_, obs_consumer) = self.observations.split();
            let (cmd_producer, cmd_consumer) = self.commands.split();
            let (report_producer, report_consumer) = self.reports.split();
            let links = ControlLinks {
                observations: obs_consumer,
                commands: cmd_producer,
                reports: report_producer,
                dds_waker: &self.waker,
            };
            (links, cmd_consumer, report_consumer)
        }
    }

    fn obs(values: &[f32], stamp: Option<u64>, received_ns: u64) -> ObservationPod {
        let mut pod = ObservationPod::empty(received_ns);
        pod.values[..values.len()].copy_from_slice(values);
        pod.len = values.len();
        pod.stamp = stamp;
        pod
    }

    #[test]
    fn a_fresh_observation_is_answered_with_its_stamp() {
        let mut c = controller(SafeAction::Zero);
        let cmd = c.decide(100, Some(&obs(&[1.0, 2.0, 3.0], Some(7), 90)));
        assert_eq!(cmd.source, CommandSource::Policy);
        assert_eq!(cmd.values(), &[6.0, 1.0]);
        assert_eq!(cmd.stamp, Some(7));
        assert_eq!(cmd.obs_received_ns, Some(90));
    }

    #[test]
    fn without_observations_the_safe_action_is_zero_clamped_into_bounds() {
        let mut c = controller(SafeAction::Zero);
        let cmd = c.decide(0, None);
        assert_eq!(cmd.source, CommandSource::Safe);
        assert_eq!(cmd.values(), &[0.5, 0.0]);
        assert_eq!(c.last_fault, Some(Fault::NoObservation));
        assert_eq!(c.faults_total.no_observation, 1);
    }

    #[test]
    fn the_last_command_repeats_until_the_observation_is_stale() {
        let mut c = controller(SafeAction::Zero);
        c.decide(0, Some(&obs(&[1.0, 1.0, 1.0], Some(1), 0)));
        let repeat = c.decide(10 * MS, None);
        assert_eq!(repeat.source, CommandSource::Repeat);
        assert_eq!(repeat.values(), &[3.0, 1.0]);
        assert_eq!(repeat.stamp, Some(1));
        assert!(c.expects_observation(20 * MS));
        let stale = c.decide(21 * MS, None);
        assert_eq!(stale.source, CommandSource::Safe);
        assert_eq!(stale.values(), &[0.5, 0.0]);
        assert!(matches!(c.last_fault, Some(Fault::Stale { age_ns }) if age_ns == 21 * MS));
        // An observation that waited too long in the queue is stale too.
        let late = c.decide(50 * MS, Some(&obs(&[1.0, 1.0, 1.0], None, 29 * MS)));
        assert_eq!(late.source, CommandSource::Safe);
        assert_eq!(c.faults_total.stale, 2);
    }

    #[test]
    fn bad_observations_give_the_safe_action_and_count_a_fault() {
        let mut c = controller(SafeAction::Hold);
        c.decide(0, Some(&obs(&[1.0, 2.0, 0.0], None, 0)));
        let invalid = ObservationFault::Invalid(ObservationError::NonFinite {
            index: 1,
            value: f64::NAN,
        });
        let cases = [
            ObservationPod::faulty(invalid, MS),
            ObservationPod::faulty(ObservationFault::Malformed, MS),
            obs(&[1.0, 2.0], None, MS),
        ];
        for pod in &cases {
            let cmd = c.decide(MS, Some(pod));
            assert_eq!(cmd.source, CommandSource::Safe);
            // hold: the last policy action.
            assert_eq!(cmd.values(), &[3.0, 1.0]);
        }
        assert_eq!(c.faults_total.invalid, 2);
        assert_eq!(c.faults_total.malformed, 1);
        assert_eq!(c.policy.calls, 1);
        // Recovery with the next good observation.
        let cmd = c.decide(2 * MS, Some(&obs(&[0.0, 0.0, 1.0], None, 2 * MS)));
        assert_eq!(cmd.source, CommandSource::Policy);
        assert_eq!(cmd.values(), &[1.0, 0.0]);
    }

    #[test]
    fn a_policy_that_refuses_or_returns_nan_never_reaches_the_command() {
        let mut c = controller(SafeAction::Zero);
        c.policy.nan = true;
        let cmd = c.decide(0, Some(&obs(&[1.0, 2.0, 3.0], None, 0)));
        assert_eq!(cmd.source, CommandSource::Safe);
        assert!(cmd.values().iter().all(|v| v.is_finite()));
        c.policy.nan = false;
        c.policy.refuse = true;
        let cmd = c.decide(0, Some(&obs(&[1.0, 2.0, 3.0], None, 0)));
        assert_eq!(cmd.source, CommandSource::Safe);
        assert_eq!(c.faults_total.policy, 2);
    }

    #[test]
    fn the_same_stamped_observation_is_answered_once() {
        let mut c = controller(SafeAction::Zero);
        c.decide(0, Some(&obs(&[1.0, 1.0, 1.0], Some(5), 0)));
        let again = c.decide(15 * MS, Some(&obs(&[1.0, 1.0, 1.0], Some(5), 15 * MS)));
        assert_eq!(again.source, CommandSource::Repeat);
        assert_eq!(again.stamp, Some(5));
        assert_eq!(c.policy.calls, 1);
        // The re-sent observation keeps the watchdog fed.
        assert_eq!(c.decide(30 * MS, None).source, CommandSource::Repeat);
    }

    #[test]
    fn policies_larger_than_the_buffers_are_refused() {
        struct Wide;
        impl ActionPolicy for Wide {
            fn obs_dim(&self) -> usize {
                MAX_OBS_DIM + 1
            }
            fn act_dim(&self) -> usize {
                1
            }
            fn action_low(&self) -> &[f64] {
                &[0.0]
            }
            fn action_high(&self) -> &[f64] {
                &[1.0]
            }
            fn act(&mut self, _: &[f32], _: &mut [f32]) -> Result<(), PolicyRefused> {
                Ok(())
            }
        }
        let config = ControlConfig {
            period_ns: MS,
            obs_timeout_ns: MS,
            safe_action: SafeAction::Zero,
        };
        assert_eq!(
            Controller::new(Wide, config).err(),
            Some(ControlError::ObsTooLarge(MAX_OBS_DIM + 1))
        );
    }

    #[test]
    fn the_grid_follows_only_a_one_to_one_stream_that_arrives_after_the_command() {
        let pod = obs(&[0.0; 3], None, 10 * MS);
        // Waited 400 us at the period start, one observation per period: move 337.5 us earlier.
        let woke = 10 * MS + 400_000;
        assert_eq!(
            phase_shift_ns(MS, Some(&pod), woke, 1, 1),
            400_000 - MS / 16
        );
        // Long waits are capped at half a period.
        assert_eq!(
            phase_shift_ns(MS, Some(&pod), 10 * MS + 900_000, 1, 1),
            MS / 2
        );
        // Already aligned (arrived just before the start), faster or slower streams, faulty
        // observations, or an observation answered on arrival: no move.
        assert_eq!(phase_shift_ns(MS, Some(&pod), 10 * MS + 100_000, 1, 1), 0);
        assert_eq!(phase_shift_ns(MS, Some(&pod), woke, 10, 10), 0);
        assert_eq!(phase_shift_ns(MS, Some(&pod), woke, 1, 0), 0);
        let faulty = ObservationPod::faulty(ObservationFault::Malformed, 10 * MS);
        assert_eq!(phase_shift_ns(MS, Some(&faulty), woke, 1, 1), 0);
        assert_eq!(phase_shift_ns(MS, None, woke, 1, 1), 0);
    }

    #[test]
    fn a_full_window_sends_a_report_with_counts_and_quantiles() {
        let mut c = controller(SafeAction::Zero);
        let mut queues = Queues::new();
        let (mut links, mut cmd_consumer, mut report_consumer) = queues.split();
        for k in 0..1000u64 {
            let now = clock::monotonic_ns();
            let timing = PeriodTiming {
                start_ns: now,
                woke_ns: now,
            };
            let pod = obs(&[1.0, 0.0, 0.0], Some(k), now);
            let input = (k % 2 == 0).then_some(&pod);
            c.tick(timing, input, &mut links);
            assert!(cmd_consumer.dequeue().is_some());
        }
        let report = report_consumer
            .dequeue()
            .expect("one report per 1000 periods");
        assert!(report_consumer.dequeue().is_none());
        assert_eq!(report.periods, 1000);
        assert_eq!(report.sources.policy, 500);
        assert_eq!(report.sources.repeat, 500);
        assert_eq!(report.faults.total(), 0);
        assert!(report.compute_p50_ns <= report.compute_p99_ns);
        assert!(report.compute_p99_ns <= report.compute_max_ns);
    }

    /// A period's command handed over after the deadline is one miss; its cause is an overrun
    /// when the decision took more than a quarter period, a late wake-up when it began late.
    #[test]
    fn deadline_misses_are_counted_by_cause() {
        // A long period (a 25 ms budget), so that a preempted test thread cannot change a cause.
        const PERIOD: u64 = 100 * MS;
        let mut c = controller_with_period(SafeAction::Zero, PERIOD);
        let mut queues = Queues::new();
        let (mut links, _cmd_consumer, mut report_consumer) = queues.split();
        // A period that started at `now + offset_ns` (a start in the future cannot miss).
        let mut tick = |c: &mut Controller<Sum>, offset_ns: i64| {
            let now = clock::monotonic_ns();
            let start_ns = now.saturating_add_signed(offset_ns);
            let timing = PeriodTiming {
                start_ns,
                woke_ns: start_ns,
            };
            let pod = obs(&[1.0, 0.0, 0.0], None, now);
            c.tick(timing, Some(&pod), &mut links);
        };
        let on_time = PERIOD as i64;
        tick(&mut c, on_time);
        // Began two periods after its start and decided fast: a late wake-up.
        tick(&mut c, -2 * PERIOD as i64);
        // Began at 0.9 P and decided for 0.3 P, more than its quarter period: an overrun.
        c.policy.busy_ns = 3 * PERIOD / 10;
        tick(&mut c, -9 * PERIOD as i64 / 10);
        c.policy.busy_ns = 0;
        // Three whole periods slept through (the loop counts those).
        c.count_deadline_misses(MissCause::LateWakeup, 3);
        for _ in 0..7 {
            tick(&mut c, on_time);
        }
        let report = report_consumer
            .dequeue()
            .expect("a full window of 10 periods");
        assert_eq!(report.periods, 10);
        assert_eq!(report.deadline_misses, 5);
        assert_eq!(
            report.deadline_misses_total,
            MissCounts {
                overrun: 1,
                late_wakeup: 4
            }
        );
    }
}
