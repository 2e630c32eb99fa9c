//! Listening to `sdac-node`'s `diagnostic_msgs/DiagnosticArray` from a test, over DDS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sdac_ros::{DiagnosticArray, dds, qos};

/// Keeps the newest diagnostics message on `topic` until dropped.
pub struct DiagnosticsListener {
    latest: Arc<Mutex<Option<DiagnosticArray>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DiagnosticsListener {
    /// Subscribes on `domain_id` (from a thread of its own that polls every 20 ms).
    pub fn start(domain_id: u16, topic: &str) -> Result<Self, String> {
        let context = dds::context(domain_id).map_err(|e| e.to_string())?;
        let mut node = dds::node(&context, "sdac_test_diagnostics").map_err(|e| e.to_string())?;
        let subscription = dds::subscription::<DiagnosticArray>(&mut node, topic, qos::DIAGNOSTICS)
            .map_err(|e| e.to_string())?;
        let latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (latest_in, stop_in) = (latest.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _keep = (context, node);
            while !stop_in.load(Ordering::Relaxed) {
                while let Ok(Some((message, _))) = subscription.take() {
                    if let Ok(mut slot) = latest_in.lock() {
                        *slot = Some(message);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Ok(Self {
            latest,
            stop,
            thread: Some(thread),
        })
    }

    /// The value under `key` in the first status of the newest message, if one came.
    pub fn latest_value(&self, key: &str) -> Option<String> {
        let latest = self.latest.lock().ok()?;
        latest
            .as_ref()?
            .status
            .first()?
            .value(key)
            .map(str::to_owned)
    }
}

impl Drop for DiagnosticsListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
