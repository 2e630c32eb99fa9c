//! The control thread's per-period body, `Controller::tick` (watchdog, the runtime policy, the
//! command and report queues, waking the DDS thread), allocates nothing: counted by a global
//! allocator over thousands of periods with every kind of input, for a teacher and a student.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures::task::AtomicWaker;
use heapless::spsc::Queue;
use sdac_ros::clock;
use sdac_ros::control::{
    CommandPod, CommandSource, ControlConfig, ControlLinks, Controller, ObservationFault,
    ObservationPod, PeriodTiming, QUEUE_SLOTS, SafeAction, WindowReport,
};
use sdac_ros::msg::ObservationError;
use sdac_ros::policy::RuntimePolicy;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts wake-ups, as the DDS thread's executor would be woken.
struct CountingWake(std::sync::atomic::AtomicU64);

impl Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn run_periods(shape: &common::Shape, safe_action: SafeAction) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_policy(dir.path(), shape, "policy.safetensors");
    let policy = RuntimePolicy::load(&path, 3).unwrap();
    let obs_dim = policy.policy().obs_dim();
    let period_ns = 1_000_000;
    let mut controller = Controller::new(
        policy,
        ControlConfig {
            period_ns,
            obs_timeout_ns: 20 * period_ns,
            safe_action,
        },
    )
    .unwrap();
    let mut observations: Box<Queue<ObservationPod, QUEUE_SLOTS>> = Box::new(Queue::new());
    let mut commands: Box<Queue<CommandPod, QUEUE_SLOTS>> = Box::new(Queue::new());
    let mut reports: Box<Queue<WindowReport, QUEUE_SLOTS>> = Box::new(Queue::new());
    let (mut obs_in, obs_out) = observations.split();
    let (cmd_in, mut cmd_out) = commands.split();
    let (report_in, mut report_out) = reports.split();
    let waker = AtomicWaker::new();
    let wakes = Arc::new(CountingWake(0.into()));
    let dds_waker = Waker::from(wakes.clone());
    let mut links = ControlLinks {
        observations: obs_out,
        commands: cmd_in,
        reports: report_in,
        dds_waker: &waker,
    };

    let periods = 3000u64;
    let mut sources = [0u64; 3];
    let mut report_count = 0;
    COUNTING.with(|c| c.set(true));
    for k in 0..periods {
        // The DDS thread registers its waker before each poll (a clone: no allocation).
        waker.register(&dds_waker);
        let now = clock::monotonic_ns();
        let mut pod = ObservationPod::empty(now);
        pod.len = obs_dim;
        for (i, v) in pod.values[..obs_dim].iter_mut().enumerate() {
            *v = ((k + i as u64) as f32 * 0.01).sin();
        }
        pod.stamp = Some(k);
        let invalid = ObservationFault::Invalid(ObservationError::NonFinite {
            index: 0,
            value: f64::NAN,
        });
        match k % 10 {
            // good observations most of the time
            0..=5 => {}
            6 => pod.fault = Some(invalid),
            7 => pod.fault = Some(ObservationFault::Malformed),
            8 => pod.len = obs_dim - 1,
            _ => pod.received_ns = now.saturating_sub(50 * period_ns),
        }
        let input = if k % 3 == 2 {
            None
        } else {
            let _ = obs_in.enqueue(pod);
            let mut newest = None;
            while let Some(p) = links.observations.dequeue() {
                newest = Some(p);
            }
            newest
        };
        let timing = PeriodTiming {
            start_ns: now,
            woke_ns: now,
        };
        controller.tick(timing, input.as_ref(), &mut links);
        while let Some(command) = cmd_out.dequeue() {
            assert!(command.values().iter().all(|v| v.is_finite()));
            sources[command.source as usize] += 1;
        }
        while report_out.dequeue().is_some() {
            report_count += 1;
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = ALLOCATIONS.with(Cell::get);
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {periods} periods"
    );
    // Every path ran: policy answers, repeats, safe actions, and the window reports.
    assert!(
        sources[CommandSource::Policy as usize] > 1000,
        "{sources:?}"
    );
    assert!(sources[CommandSource::Repeat as usize] > 100, "{sources:?}");
    assert!(sources[CommandSource::Safe as usize] > 500, "{sources:?}");
    assert_eq!(report_count, 3);
    assert!(wakes.0.load(std::sync::atomic::Ordering::Relaxed) >= periods);
}

#[test]
fn a_student_period_allocates_nothing() {
    run_periods(&common::Shape::student(2), SafeAction::Zero);
}

#[test]
fn a_teacher_period_allocates_nothing() {
    run_periods(&common::Shape::teacher(), SafeAction::Hold);
}

#[test]
fn the_counter_sees_an_allocation() {
    COUNTING.with(|c| c.set(true));
    let boxed = std::hint::black_box(Box::new([1u8; 64]));
    COUNTING.with(|c| c.set(false));
    drop(boxed);
    assert!(ALLOCATIONS.with(Cell::get) >= 1);
}
