//! Monotonic time, absolute-deadline sleeping and process CPU time, on `libc` (Linux). Nothing
//! here allocates or locks: the control thread calls these every period.

/// Nanoseconds on `CLOCK_MONOTONIC` (the clock all of the node's deadlines and ages use; shared
/// by every process on the machine, so a peer on the same host may stamp with it too).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds since the Unix epoch on the system clock: what ROS 2 stamps and rosbag2 log
/// times use.
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Sleeps until `CLOCK_MONOTONIC` reads `deadline_ns` (absolute, so the error of one period
/// does not carry into the next); returns at once if it has passed. Resumes after signals.
pub fn sleep_until_ns(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remaining-time pointer may be null with
        // TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// How the calling thread was set up for real-time work, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimeSetup {
    /// `SCHED_FIFO` granted (needs CAP_SYS_NICE or an rtprio limit); otherwise `SCHED_OTHER`.
    pub fifo: bool,
    /// Timer slack set to 1 ns, so sleeps end when asked instead of up to 50 us later.
    pub tight_timer_slack: bool,
}

/// Asks for `SCHED_FIFO` at `priority` and 1 ns timer slack for the calling thread; whatever
/// the system refuses is reported, not an error.
pub fn setup_realtime_thread(priority: i32) -> RealtimeSetup {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscalls on the calling thread with valid arguments.
    let fifo = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
    let tight_timer_slack = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) } == 0;
    RealtimeSetup {
        fifo,
        tight_timer_slack,
    }
}

/// CPU time (user + system) in nanoseconds, of this process (`children = false`) or of its
/// waited-for children (`children = true`), from `getrusage`.
pub fn cpu_time_ns(children: bool) -> u64 {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let tv_ns = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1_000;
    tv_ns(usage.ru_utime) + tv_ns(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_until_a_deadline_does_not_return_early() {
        let deadline = monotonic_ns() + 2_000_000;
        sleep_until_ns(deadline);
        assert!(monotonic_ns() >= deadline);
        let before = monotonic_ns();
        sleep_until_ns(before - 1);
        assert!(monotonic_ns() - before < 1_000_000_000);
    }
}
