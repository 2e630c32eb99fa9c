//! The DDS half of the node: one thread that owns ros2-client. It turns each observation
//! message into an [`ObservationPod`] for the control thread (and wakes it), publishes the
//! commands and diagnostics the control thread queues, and records all three to MCAP. This
//! thread allocates freely; the control thread never waits for it.

use std::cell::RefCell;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::thread::Thread;

use futures::StreamExt;
use futures::future::{self, Either};
use futures::task::AtomicWaker;
use heapless::spsc::{Consumer, Producer, Queue};
use ros2_client::{Context, Node, Publisher, Subscription};

use crate::clock;
use crate::control::{
    ActionPolicy, CommandPod, CommandSource, ControlLinks, Controller, LoopConfig, MAX_OBS_DIM,
    ObservationFault, ObservationPod, QUEUE_SLOTS, WindowReport, run_control_loop,
};
use crate::dds::{self, DdsError};
use crate::msg::{
    DiagnosticArray, DiagnosticStatus, Float64MultiArray, Header, JointState, KeyValue,
    ObservationError, RosMessage, Time, observation_from_joint_state, observation_from_message,
    parse_stamp, stamp_label,
};
use crate::qos;
use crate::record::{Channel, RecordError, Recorder};
use crate::ros_args::ParamValue;

/// The label of a command's dimension (`action;stamp=<s>` when it answers a stamped
/// observation).
pub const COMMAND_LABEL: &str = "action";
/// The `name` of the node's status in each `DiagnosticArray`.
pub const DIAGNOSTIC_NAME: &str = "sdac-node: control loop";

/// A message type the node takes observations from.
pub trait ObservationMessage: RosMessage {
    /// Copies the observation into `pod` (`obs_dim` values) with its stamp, or says why not.
    fn fill(&self, pod: &mut ObservationPod, obs_dim: usize) -> Result<(), ObservationError>;
}

impl ObservationMessage for Float64MultiArray {
    /// Values from the layout's `data_offset` on; the stamp from the first dimension's label
    /// (`<name>;stamp=<u64>`).
    fn fill(&self, pod: &mut ObservationPod, obs_dim: usize) -> Result<(), ObservationError> {
        observation_from_message(self, &mut pod.values[..obs_dim])?;
        pod.len = obs_dim;
        pod.stamp = parse_stamp(self.label());
        Ok(())
    }
}

impl ObservationMessage for JointState {
    /// `concat(position, velocity)` in message order; the stamp is `header.stamp` in
    /// nanoseconds.
    fn fill(&self, pod: &mut ObservationPod, obs_dim: usize) -> Result<(), ObservationError> {
        observation_from_joint_state(self, &mut pod.values[..obs_dim])?;
        pod.len = obs_dim;
        pod.stamp = self.header.stamp.as_nanos();
        Ok(())
    }
}

/// Which message observations arrive as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservationInput {
    Float64MultiArray,
    JointState,
}

/// The node's topics and options.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_name: String,
    /// The node's namespace, absolute (`/` for none).
    pub namespace: String,
    /// The values the node runs with, offered read-only through the ROS 2 parameter services.
    pub parameters: Vec<(String, ParamValue)>,
    pub domain_id: u16,
    pub obs_topic: String,
    pub cmd_topic: String,
    pub diag_topic: String,
    pub input: ObservationInput,
    pub obs_dim: usize,
    pub rate_hz: f64,
    pub record: Option<PathBuf>,
    /// Pin the DDS thread and RustDDS's own threads to this CPU.
    pub dds_cpu: Option<usize>,
}

/// Why the node's DDS side failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Dds(#[from] DdsError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("DDS threads: {0}")]
    Cpu(#[from] clock::CpuError),
    #[error("observation dimension {0} is more than the node carries ({MAX_OBS_DIM})")]
    ObsTooLarge(usize),
    #[error("the ros2-client spinner stopped: {0}")]
    Spinner(String),
    #[error("the DDS thread stopped before shutdown: {0}")]
    Stopped(&'static str),
    #[error("starting a node thread: {0}")]
    Thread(std::io::Error),
    #[error("a node thread panicked")]
    Panicked,
}

enum ObservationSubscription {
    Array(Subscription<Float64MultiArray>),
    Joints(Subscription<JointState>),
}

struct Recording {
    recorder: Recorder,
    observations: Channel,
    commands: Channel,
    diagnostics: Channel,
}

/// Everything the DDS thread owns, created before any thread starts so that a bad topic name or
/// an unwritable recording path fails the node at start-up.
pub struct DdsEndpoints {
    config: NodeConfig,
    _context: Context,
    node: Node,
    observations: ObservationSubscription,
    commands: Publisher<Float64MultiArray>,
    diagnostics: Publisher<DiagnosticArray>,
    recording: Option<Recording>,
}

impl DdsEndpoints {
    pub fn create(config: NodeConfig) -> Result<Self, NodeError> {
        if config.obs_dim > MAX_OBS_DIM {
            return Err(NodeError::ObsTooLarge(config.obs_dim));
        }
        let recording = match &config.record {
            None => None,
            Some(path) => {
                let mut recorder = Recorder::create(path)?;
                let observations = match config.input {
                    ObservationInput::Float64MultiArray => {
                        recorder.channel::<Float64MultiArray>(&config.obs_topic)?
                    }
                    ObservationInput::JointState => {
                        recorder.channel::<JointState>(&config.obs_topic)?
                    }
                };
                let commands = recorder.channel::<Float64MultiArray>(&config.cmd_topic)?;
                let diagnostics = recorder.channel::<DiagnosticArray>(&config.diag_topic)?;
                Some(Recording {
                    recorder,
                    observations,
                    commands,
                    diagnostics,
                })
            }
        };
        // RustDDS starts its threads with the participant: they inherit the pinning.
        let context =
            clock::with_threads_on_cpu(config.dds_cpu, || dds::context(config.domain_id))??;
        let mut node = dds::node(
            &context,
            &config.namespace,
            &config.node_name,
            Some(&config.parameters),
        )?;
        let observations = match config.input {
            ObservationInput::Float64MultiArray => ObservationSubscription::Array(
                dds::subscription(&mut node, &config.obs_topic, qos::SENSOR_DATA)?,
            ),
            ObservationInput::JointState => ObservationSubscription::Joints(dds::subscription(
                &mut node,
                &config.obs_topic,
                qos::SENSOR_DATA,
            )?),
        };
        let commands = dds::publisher(&mut node, &config.cmd_topic, qos::COMMAND)?;
        let diagnostics = dds::publisher(&mut node, &config.diag_topic, qos::DIAGNOSTICS)?;
        Ok(Self {
            config,
            _context: context,
            node,
            observations,
            commands,
            diagnostics,
            recording,
        })
    }
}

/// The DDS thread's ends of the queues and its signals.
pub struct DdsLinks<'q> {
    pub observations: Producer<'q, ObservationPod>,
    pub commands: Consumer<'q, CommandPod>,
    pub reports: Consumer<'q, WindowReport>,
    /// Registered by this thread; the control thread wakes it after each command and report.
    pub waker: &'q AtomicWaker,
    /// Unparked after each queued observation.
    pub control_thread: Thread,
    pub shutdown: &'q AtomicBool,
}

/// What the DDS thread counted over a diagnostics window (and the run).
#[derive(Debug, Default)]
struct DdsStats {
    observations_received: u64,
    observations_refused: u64,
    observation_queue_full: u64,
    commands_published: u64,
    commands_blocked_non_finite: u64,
    publish_errors: u64,
    /// Receipt of an observation to publication of the command that answers it, ns.
    latency_ns: Vec<u64>,
    record_errors: u64,
    last_record_error: Option<String>,
}

struct DdsState<'e> {
    endpoints_commands: &'e Publisher<Float64MultiArray>,
    endpoints_diagnostics: &'e Publisher<DiagnosticArray>,
    recording: Option<Recording>,
    stats: DdsStats,
    config: &'e NodeConfig,
}

impl DdsState<'_> {
    fn record<M: RosMessage>(&mut self, pick: fn(&Recording) -> Channel, message: &M) {
        if let Some(recording) = &mut self.recording {
            let channel = pick(recording);
            if let Err(e) = recording
                .recorder
                .write(channel, clock::wall_clock_ns(), message)
            {
                self.stats.record_errors += 1;
                self.stats.last_record_error = Some(e.to_string());
            }
        }
    }

    fn publish_command(&mut self, command: &CommandPod) {
        let values = command.values();
        if values.iter().any(|v| !v.is_finite()) {
            // The controller never queues one; this is the guard at the wire.
            self.stats.commands_blocked_non_finite += 1;
            return;
        }
        let label = match command.stamp {
            Some(stamp) => stamp_label(COMMAND_LABEL, stamp),
            None => COMMAND_LABEL.to_owned(),
        };
        let message =
            Float64MultiArray::vector(&label, values.iter().map(|v| f64::from(*v)).collect());
        self.record(|r| r.commands, &message);
        match self.endpoints_commands.publish(message) {
            Ok(()) => {
                self.stats.commands_published += 1;
                if let (CommandSource::Policy, Some(received)) =
                    (command.source, command.obs_received_ns)
                {
                    let latency = clock::monotonic_ns().saturating_sub(received);
                    self.stats.latency_ns.push(latency);
                }
            }
            Err(_) => self.stats.publish_errors += 1,
        }
    }

    fn publish_diagnostics(&mut self, report: &WindowReport) {
        let message = diagnostics_message(report, &mut self.stats, self.config);
        self.record(|r| r.diagnostics, &message);
        if self.endpoints_diagnostics.publish(message).is_err() {
            self.stats.publish_errors += 1;
        }
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// The `DiagnosticArray` for one window; resets the window part of `stats`.
fn diagnostics_message(
    report: &WindowReport,
    stats: &mut DdsStats,
    config: &NodeConfig,
) -> DiagnosticArray {
    stats.latency_ns.sort_unstable();
    let latency_at = |q: f64| -> u64 {
        let n = stats.latency_ns.len();
        if n == 0 {
            return 0;
        }
        let rank = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        stats.latency_ns[rank]
    };
    let (lat_p50, lat_p99) = (latency_at(0.5), latency_at(0.99));
    let lat_max = stats.latency_ns.last().copied().unwrap_or(0);
    let latency_samples = stats.latency_ns.len();
    stats.latency_ns.clear();

    let safe = report.sources.safe;
    let level = if safe > 0 {
        DiagnosticStatus::LEVEL_ERROR
    } else if report.deadline_misses > 0 || stats.commands_blocked_non_finite > 0 {
        DiagnosticStatus::LEVEL_WARN
    } else {
        DiagnosticStatus::LEVEL_OK
    };
    let message = match (safe, report.last_fault) {
        (0, _) => format!(
            "running: {} periods, {} deadline misses",
            report.periods, report.deadline_misses
        ),
        (n, Some(fault)) => format!("safe action in {n} periods: {fault}"),
        (n, None) => format!("safe action in {n} periods"),
    };
    let realtime = match report.realtime {
        Some(r) if r.fifo => "SCHED_FIFO",
        Some(_) => "SCHED_OTHER (SCHED_FIFO refused)",
        None => "unknown",
    };
    let f = &report.faults_total;
    let pairs: Vec<(&str, String)> = vec![
        ("rate_hz", format!("{}", config.rate_hz)),
        ("periods", report.periods.to_string()),
        ("period_mean_us", us(report.period_mean_ns)),
        ("period_max_us", us(report.period_max_ns)),
        ("wake_late_max_us", us(report.wake_late_max_ns)),
        ("compute_p50_us", us(report.compute_p50_ns)),
        ("compute_p99_us", us(report.compute_p99_ns)),
        ("compute_max_us", us(report.compute_max_ns)),
        ("deadline_misses", report.deadline_misses.to_string()),
        (
            "deadline_misses_total",
            report.deadline_misses_total.total().to_string(),
        ),
        (
            "deadline_misses_overrun_total",
            report.deadline_misses_total.overrun.to_string(),
        ),
        (
            "deadline_misses_late_wakeup_total",
            report.deadline_misses_total.late_wakeup.to_string(),
        ),
        ("commands_policy", report.sources.policy.to_string()),
        ("commands_repeat", report.sources.repeat.to_string()),
        ("commands_safe", safe.to_string()),
        ("faults_total", f.total().to_string()),
        ("faults_no_observation_total", f.no_observation.to_string()),
        ("faults_stale_total", f.stale.to_string()),
        ("faults_invalid_total", f.invalid.to_string()),
        ("faults_malformed_total", f.malformed.to_string()),
        ("faults_policy_total", f.policy.to_string()),
        (
            "last_fault",
            report.last_fault.map_or(String::new(), |f| f.to_string()),
        ),
        ("latency_samples", latency_samples.to_string()),
        ("latency_p50_us", us(lat_p50)),
        ("latency_p99_us", us(lat_p99)),
        ("latency_max_us", us(lat_max)),
        (
            "observations_received_total",
            stats.observations_received.to_string(),
        ),
        (
            "observations_refused_total",
            stats.observations_refused.to_string(),
        ),
        (
            "observation_queue_full_total",
            stats.observation_queue_full.to_string(),
        ),
        (
            "commands_published_total",
            stats.commands_published.to_string(),
        ),
        (
            "commands_blocked_non_finite_total",
            stats.commands_blocked_non_finite.to_string(),
        ),
        ("publish_errors_total", stats.publish_errors.to_string()),
        ("queue_full_total", report.queue_full_total.to_string()),
        ("record_errors_total", stats.record_errors.to_string()),
        ("scheduling", realtime.to_owned()),
        (
            "control_cpu",
            report
                .realtime
                .and_then(|r| r.cpu)
                .map_or("any".to_owned(), |cpu| cpu.to_string()),
        ),
    ];
    DiagnosticArray {
        header: Header {
            stamp: Time::now(),
            frame_id: String::new(),
        },
        status: vec![DiagnosticStatus {
            level,
            name: DIAGNOSTIC_NAME.to_owned(),
            message,
            hardware_id: crate::ros_args::fully_qualified(&config.namespace, &config.node_name),
            values: pairs
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key: key.to_owned(),
                    value,
                })
                .collect(),
        }],
    }
}

/// Receives observations until the subscription's stream ends.
async fn forward_observations<M: ObservationMessage>(
    subscription: &Subscription<M>,
    producer: &mut Producer<'_, ObservationPod>,
    control_thread: &Thread,
    obs_dim: usize,
    state: &RefCell<DdsState<'_>>,
) {
    let mut stream = pin!(subscription.async_stream());
    while let Some(result) = stream.next().await {
        let received_ns = clock::monotonic_ns();
        let mut pod = ObservationPod::empty(received_ns);
        let mut state = state.borrow_mut();
        state.stats.observations_received += 1;
        match result {
            Ok((message, _info)) => {
                if let Err(e) = message.fill(&mut pod, obs_dim) {
                    pod = ObservationPod::faulty(ObservationFault::Invalid(e), received_ns);
                    state.stats.observations_refused += 1;
                }
                state.record(|r| r.observations, &message);
            }
            Err(_) => {
                pod = ObservationPod::faulty(ObservationFault::Malformed, received_ns);
                state.stats.observations_refused += 1;
            }
        }
        if producer.enqueue(pod).is_err() {
            state.stats.observation_queue_full += 1;
        }
        drop(state);
        control_thread.unpark();
    }
}

/// Runs the DDS thread until `links.shutdown` is set (and the control thread's wake), then
/// finishes the recording.
pub fn run_dds_thread(endpoints: DdsEndpoints, links: DdsLinks<'_>) -> Result<(), NodeError> {
    let DdsEndpoints {
        config,
        _context,
        mut node,
        observations,
        commands,
        diagnostics,
        recording,
    } = endpoints;
    let DdsLinks {
        observations: mut obs_producer,
        commands: mut cmd_consumer,
        reports: mut report_consumer,
        waker,
        control_thread,
        shutdown,
    } = links;
    if let Some(cpu) = config.dds_cpu {
        clock::pin_current_thread(cpu).map_err(|source| clock::CpuError::Pin { cpu, source })?;
    }
    let spinner = node
        .spinner()
        .map_err(|e| NodeError::Spinner(e.to_string()))?;
    let state = RefCell::new(DdsState {
        endpoints_commands: &commands,
        endpoints_diagnostics: &diagnostics,
        recording,
        stats: DdsStats::default(),
        config: &config,
    });

    // The futures borrow `state`; they end with this block.
    let stopped = {
        let output = future::poll_fn(|cx| {
            waker.register(cx.waker());
            let mut state = state.borrow_mut();
            while let Some(command) = cmd_consumer.dequeue() {
                state.publish_command(&command);
            }
            while let Some(report) = report_consumer.dequeue() {
                state.publish_diagnostics(&report);
            }
            if shutdown.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let obs_dim = config.obs_dim;
        let input = async {
            match &observations {
                ObservationSubscription::Array(sub) => {
                    forward_observations(sub, &mut obs_producer, &control_thread, obs_dim, &state)
                        .await
                }
                ObservationSubscription::Joints(sub) => {
                    forward_observations(sub, &mut obs_producer, &control_thread, obs_dim, &state)
                        .await
                }
            }
        };
        let spin = pin!(spinner.spin());
        let input = pin!(input);
        let output = pin!(output);
        futures::executor::block_on(async {
            match future::select(output, future::select(input, spin)).await {
                Either::Left(_) => None,
                Either::Right((Either::Left(_), _)) => Some(NodeError::Stopped(
                    "the observation subscription's stream ended",
                )),
                Either::Right((Either::Right((Err(e), _)), _)) => {
                    Some(NodeError::Spinner(e.to_string()))
                }
                Either::Right((Either::Right((Ok(()), _)), _)) => {
                    Some(NodeError::Stopped("the ros2-client spinner returned"))
                }
            }
        })
    };
    let recording = state.into_inner().recording;
    if let Some(recording) = recording {
        recording.recorder.finish()?;
    }
    stopped.map_or(Ok(()), Err)
}

/// Runs the node until `shutdown` is set: the control thread (paced as `timing` says, owning
/// `controller`) and the DDS thread (owning `endpoints`), joined by fixed-capacity SPSC queues.
/// Returns the DDS thread's error if it stopped on its own (the control thread is stopped with
/// it).
pub fn run<P: ActionPolicy>(
    mut controller: Controller<P>,
    endpoints: DdsEndpoints,
    timing: LoopConfig,
    shutdown: &AtomicBool,
) -> Result<(), NodeError> {
    let mut observations: Box<Queue<ObservationPod, QUEUE_SLOTS>> = Box::new(Queue::new());
    let mut commands: Box<Queue<CommandPod, QUEUE_SLOTS>> = Box::new(Queue::new());
    let mut reports: Box<Queue<WindowReport, QUEUE_SLOTS>> = Box::new(Queue::new());
    let (obs_producer, obs_consumer) = observations.split();
    let (cmd_producer, cmd_consumer) = commands.split();
    let (report_producer, report_consumer) = reports.split();
    let waker = AtomicWaker::new();
    let mut control_links = ControlLinks {
        observations: obs_consumer,
        commands: cmd_producer,
        reports: report_producer,
        dds_waker: &waker,
    };
    std::thread::scope(|scope| {
        let control = std::thread::Builder::new()
            .name("sdac-control".into())
            .spawn_scoped(scope, || {
                run_control_loop(&mut controller, &mut control_links, timing, shutdown)
            })
            .map_err(NodeError::Thread)?;
        let dds_links = DdsLinks {
            observations: obs_producer,
            commands: cmd_consumer,
            reports: report_consumer,
            waker: &waker,
            control_thread: control.thread().clone(),
            shutdown,
        };
        let dds = std::thread::Builder::new()
            .name("sdac-dds".into())
            .spawn_scoped(scope, || run_dds_thread(endpoints, dds_links));
        let dds = match dds {
            Ok(handle) => handle,
            Err(e) => {
                shutdown.store(true, Ordering::Release);
                return Err(NodeError::Thread(e));
            }
        };
        while !shutdown.load(Ordering::Acquire) && !dds.is_finished() && !control.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        shutdown.store(true, Ordering::Release);
        waker.wake();
        control.thread().unpark();
        let control_result = control.join();
        let dds_result = dds.join();
        match (dds_result, control_result) {
            (Ok(result), Ok(())) => result,
            _ => Err(NodeError::Panicked),
        }
    })
}
