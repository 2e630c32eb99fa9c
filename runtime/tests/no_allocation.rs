//! After load, `Policy::act` and `Policy::act_seeded` allocate nothing: a counting global
//! allocator sees zero allocations (and zero bytes) over thousands of calls, for a teacher, a
//! student and a student on half-precision weights. Weights are synthetic (seeded random, see
//! `common`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{Shape, normals, synthetic};
use sdac_runtime::Policy;

/// Counts every allocation and reallocation (calls and bytes), per thread (the test harness
/// runs tests on parallel threads).
struct Counting;

thread_local! {
    static COUNTS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn count(bytes: usize) {
    // `try_with`: the thread's counter may already be gone while the thread exits.
    let _ = COUNTS.try_with(|c| {
        let (calls, total) = c.get();
        c.set((calls + 1, total + bytes));
    });
}

fn counts() -> (usize, usize) {
    COUNTS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocation calls and bytes while `f` runs.
fn allocations_during(f: impl FnOnce()) -> (usize, usize) {
    let (calls, bytes) = counts();
    f();
    let (calls_after, bytes_after) = counts();
    (calls_after - calls, bytes_after - bytes)
}

/// Runs `calls` of each of `act` and `act_seeded` (and a refused call of each) after load and
/// returns the allocations seen; also checks the counter works by allocating once on purpose.
fn allocations_after_load(artifact: &[u8], calls: usize) -> (usize, usize) {
    let mut policy = Policy::from_bytes(artifact).expect("loads");
    let observations: Vec<Vec<f32>> = (0..16).map(|i| normals(policy.obs_dim(), i)).collect();
    let noises: Vec<Vec<f32>> = (0..16)
        .map(|i| normals(policy.noise_len(), 100 + i))
        .collect();
    let mut action = vec![0.0f32; policy.act_dim()];
    let bad_obs = vec![f32::NAN; policy.obs_dim()];
    let (sanity, _) = allocations_during(|| drop(std::hint::black_box(vec![1u8; 3])));
    assert_eq!(sanity, 1, "the counting allocator does not count");
    allocations_during(|| {
        policy.reseed(5);
        for i in 0..calls {
            let (obs, noise) = (&observations[i % 16], &noises[i % 16]);
            policy.act(obs, noise, &mut action).expect("acts");
            policy.act_seeded(obs, &mut action).expect("acts");
            std::hint::black_box(&action);
        }
        assert!(policy.act(&bad_obs, &noises[0], &mut action).is_err());
        assert!(policy.act_seeded(&bad_obs, &mut action).is_err());
    })
}

#[test]
fn the_student_allocates_nothing_after_load() {
    let artifact = synthetic(&Shape::student(4), 11).bytes();
    assert_eq!(allocations_after_load(&artifact, 5000), (0, 0));
}

#[test]
fn the_half_precision_student_allocates_nothing_after_load() {
    let artifact = synthetic(&Shape::student(4), 11)
        .with_half_precision_values()
        .bytes();
    let policy = Policy::from_bytes(&artifact).expect("loads");
    assert!(policy.uses_half_weights());
    assert_eq!(allocations_after_load(&artifact, 5000), (0, 0));
}

#[test]
fn the_teacher_allocates_nothing_after_load() {
    let artifact = synthetic(&Shape::teacher(), 11).bytes();
    assert_eq!(allocations_after_load(&artifact, 2000), (0, 0));
}
