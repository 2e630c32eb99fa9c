//! A test-side ROS 2 participant that talks to a running node: publishes observations, collects
//! the commands (with their time of arrival) and diagnostics the node publishes. Used by the
//! benchmark and the tests; it allocates and locks freely (it is not the real-time side).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::thread::JoinHandle;

use futures::StreamExt;
use futures::future;
use futures::task::AtomicWaker;
use ros2_client::{Context, Node, Publisher, QosProfile, Subscription};

use crate::clock;
use crate::dds::{self, DdsError};
use crate::msg::{DiagnosticArray, Float64MultiArray, RosMessage};
use crate::qos;

/// A command as the peer received it.
#[derive(Debug, Clone)]
pub struct ReceivedCommand {
    pub message: Float64MultiArray,
    /// `CLOCK_MONOTONIC` time of arrival on the peer's receiving thread.
    pub received_ns: u64,
}

/// A diagnostics message as the peer received it.
#[derive(Debug, Clone)]
pub struct ReceivedDiagnostics {
    pub message: DiagnosticArray,
    /// `CLOCK_MONOTONIC` time of arrival on the peer's receiving thread.
    pub received_ns: u64,
}

/// Everything the peer has received so far.
#[derive(Debug, Default)]
pub struct Received {
    pub commands: Vec<ReceivedCommand>,
    pub diagnostics: Vec<ReceivedDiagnostics>,
    /// Payloads that did not deserialise.
    pub errors: u64,
}

/// Topic names the peer uses (the node's defaults unless told otherwise).
#[derive(Debug, Clone)]
pub struct PeerTopics {
    pub obs: String,
    pub cmd: String,
    pub diag: String,
}

impl Default for PeerTopics {
    fn default() -> Self {
        Self {
            obs: "/sdac/observation".into(),
            cmd: "/sdac/command".into(),
            diag: "/diagnostics".into(),
        }
    }
}

/// The peer: a participant on `domain_id` with an observation publisher and a thread that
/// collects commands and diagnostics. Dropping it stops the thread.
pub struct Peer {
    node: Node,
    observations: Publisher<Float64MultiArray>,
    received: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
    waker: Arc<AtomicWaker>,
    thread: Option<JoinHandle<()>>,
    // Dropped last: the participant outlives its endpoints.
    _context: Context,
}

async fn collect<M: RosMessage>(
    subscription: Subscription<M>,
    received: &Mutex<Received>,
    store: fn(&mut Received, M, u64),
) {
    let mut stream = pin!(subscription.async_stream());
    while let Some(result) = stream.next().await {
        let now = clock::monotonic_ns();
        let mut received = lock(received);
        match result {
            Ok((message, _)) => store(&mut received, message, now),
            Err(_) => received.errors += 1,
        }
    }
}

fn lock(received: &Mutex<Received>) -> MutexGuard<'_, Received> {
    received.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peer {
    pub fn start(domain_id: u16, topics: &PeerTopics) -> Result<Self, DdsError> {
        let context = dds::context(domain_id)?;
        let mut node = dds::node(
            &context,
            "/",
            &format!("sdac_peer_{}", std::process::id()),
            None,
        )?;
        let observations = dds::publisher(&mut node, &topics.obs, qos::SENSOR_DATA)?;
        let commands: Subscription<Float64MultiArray> =
            dds::subscription(&mut node, &topics.cmd, qos::COMMAND)?;
        let diagnostics: Subscription<DiagnosticArray> =
            dds::subscription(&mut node, &topics.diag, qos::DIAGNOSTICS)?;
        let received = Arc::new(Mutex::new(Received::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let waker = Arc::new(AtomicWaker::new());
        let thread = {
            let (received, stop, waker) = (received.clone(), stop.clone(), waker.clone());
            std::thread::spawn(move || {
                let commands = collect(commands, &received, |r, message, received_ns| {
                    r.commands.push(ReceivedCommand {
                        message,
                        received_ns,
                    })
                });
                let diagnostics = collect(diagnostics, &received, |r, message, received_ns| {
                    r.diagnostics.push(ReceivedDiagnostics {
                        message,
                        received_ns,
                    })
                });
                let stopped = future::poll_fn(|cx| {
                    waker.register(cx.waker());
                    if stop.load(Ordering::Acquire) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                });
                futures::executor::block_on(future::select(
                    pin!(stopped),
                    pin!(future::join(commands, diagnostics)),
                ));
            })
        };
        Ok(Self {
            node,
            observations,
            received,
            stop,
            waker,
            thread: Some(thread),
            _context: context,
        })
    }

    /// Publishes one observation (best effort).
    pub fn publish(&self, message: Float64MultiArray) {
        // Best effort: a failed write is a lost sample, as on the wire.
        let _ = self.observations.publish(message);
    }

    /// A publisher of any message type on `topic`, e.g. to put a wrong type on a topic.
    pub fn publisher<M: RosMessage>(
        &mut self,
        topic: &str,
        qos: QosProfile,
    ) -> Result<Publisher<M>, DdsError> {
        dds::publisher(&mut self.node, topic, qos)
    }

    /// Locks what has been received so far.
    pub fn received(&self) -> MutexGuard<'_, Received> {
        lock(&self.received)
    }

    /// Waits up to `timeout` for `ready(received)` to hold; returns whether it did.
    pub fn wait_for(
        &self,
        timeout: std::time::Duration,
        ready: impl Fn(&Received) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if ready(&self.received()) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
