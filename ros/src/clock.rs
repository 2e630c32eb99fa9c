//! Monotonic time, absolute-deadline sleeping (optionally finished by a busy-wait), real-time
//! thread setup (`SCHED_FIFO`, timer slack, CPU pinning), the idle-polling PM QoS request and
//! process CPU time, on `libc` (Linux). The clock and sleep functions allocate nothing and take
//! no lock: the control thread calls them every period; the rest is for start-up.

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

/// Like [`sleep_until_ns`], but sleeps only until `deadline_ns - spin_ns` and busy-waits on
/// `CLOCK_MONOTONIC` for the rest, so a late wake-up from sleep (a halted virtual CPU, a deep
/// idle state) that is shorter than `spin_ns` does not delay the return. Costs up to `spin_ns`
/// of CPU time per call; `spin_ns = 0` is a plain sleep.
pub fn sleep_until_ns_spinning(deadline_ns: u64, spin_ns: u64) {
    if spin_ns > 0 {
        sleep_until_ns(deadline_ns.saturating_sub(spin_ns));
        while monotonic_ns() < deadline_ns {
            std::hint::spin_loop();
        }
    } else {
        sleep_until_ns(deadline_ns);
    }
}

/// How the calling thread was set up for real-time work, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimeSetup {
    /// `SCHED_FIFO` granted (needs CAP_SYS_NICE or an rtprio limit); otherwise `SCHED_OTHER`.
    pub fifo: bool,
    /// Timer slack set to 1 ns, so sleeps end when asked instead of up to 50 us later.
    pub tight_timer_slack: bool,
    /// The CPU the thread is pinned to, when it was asked for and granted.
    pub cpu: Option<usize>,
}

/// Asks for `SCHED_FIFO` at `priority` and 1 ns timer slack for the calling thread, and pins it
/// to `cpu` when one is given; whatever the system refuses is reported, not an error. Threads
/// the calling thread starts afterwards inherit all three (Linux semantics), so calling this
/// before a library starts its own threads (RustDDS's event loop) sets them up too.
pub fn setup_realtime_thread(priority: i32, cpu: Option<usize>) -> RealtimeSetup {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: plain syscalls on the calling thread with valid arguments.
    let fifo = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
    let tight_timer_slack = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) } == 0;
    RealtimeSetup {
        fifo,
        tight_timer_slack,
        cpu: cpu.filter(|&cpu| pin_current_thread(cpu).is_ok()),
    }
}

/// Why a CPU cannot be used for pinning.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("CPU {cpu} is not one this process may run on (allowed: {allowed:?})")]
    NotAllowed { cpu: usize, allowed: Vec<usize> },
    #[error("reading this process's CPU affinity: {0}")]
    Affinity(std::io::Error),
    #[error("pinning a thread to CPU {cpu}: {source}")]
    Pin { cpu: usize, source: std::io::Error },
}

/// The CPUs the calling thread may run on (its affinity mask).
pub fn allowed_cpus() -> Result<Vec<usize>, CpuError> {
    // SAFETY: all-zero is a valid cpu_set_t; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(CpuError::Affinity(std::io::Error::last_os_error()));
    }
    // SAFETY: CPU_ISSET reads the set within its fixed size (CPU_SETSIZE bits).
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Checks that `cpu` is one the process may be pinned to (before any thread starts).
pub fn check_cpu(cpu: usize) -> Result<usize, CpuError> {
    let allowed = allowed_cpus()?;
    if allowed.contains(&cpu) {
        Ok(cpu)
    } else {
        Err(CpuError::NotAllowed { cpu, allowed })
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: all-zero is a valid, empty cpu_set_t; `cpu` is below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(&set)
}

/// Runs `f` with the calling thread pinned to `cpu` (when given) and restores the thread's
/// affinity afterwards: threads that `f` starts (a library's own threads) stay on `cpu`.
pub fn with_threads_on_cpu<T>(cpu: Option<usize>, f: impl FnOnce() -> T) -> Result<T, CpuError> {
    let Some(cpu) = cpu else {
        return Ok(f());
    };
    // SAFETY: all-zero is a valid cpu_set_t; sched_getaffinity fills it.
    let mut previous: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut previous)
    };
    if rc != 0 {
        return Err(CpuError::Affinity(std::io::Error::last_os_error()));
    }
    pin_current_thread(cpu).map_err(|source| CpuError::Pin { cpu, source })?;
    let result = f();
    set_affinity(&previous).map_err(CpuError::Affinity)?;
    Ok(result)
}

/// A PM QoS request that keeps every CPU out of idle states with an exit latency above zero
/// (`/dev/cpu_dma_latency` holding 0) for as long as this value lives: idle CPUs poll instead
/// of halting, so a wake-up does not wait for a halted CPU (in a VM: a halted virtual CPU that
/// the host must schedule again). An idle CPU then burns its whole time; dropping this ends
/// the request.
pub struct IdlePoll {
    _request: std::fs::File,
}

impl IdlePoll {
    /// Opens the request (needs write access to `/dev/cpu_dma_latency`, root by default).
    pub fn request() -> std::io::Result<Self> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/cpu_dma_latency")?;
        file.write_all(&0i32.to_ne_bytes())?;
        Ok(Self { _request: file })
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
        let deadline = monotonic_ns() + 2_000_000;
        sleep_until_ns_spinning(deadline, 500_000);
        assert!(monotonic_ns() >= deadline);
    }

    #[test]
    fn only_allowed_cpus_can_be_pinned() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        assert_eq!(check_cpu(allowed[0]).unwrap(), allowed[0]);
        let outside = allowed.iter().max().unwrap() + 1;
        assert!(matches!(
            check_cpu(outside),
            Err(CpuError::NotAllowed { cpu, .. }) if cpu == outside
        ));
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }

    #[test]
    fn the_idle_poll_request_holds_zero_or_is_refused() {
        match IdlePoll::request() {
            Ok(_request) => {
                let value = std::fs::read("/dev/cpu_dma_latency").unwrap();
                assert_eq!(value, 0i32.to_ne_bytes());
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied),
        }
    }

    #[test]
    fn threads_started_inside_stay_on_the_cpu_and_the_caller_gets_its_affinity_back() {
        // A fresh thread, so that the test harness's thread keeps its affinity.
        std::thread::spawn(|| {
            let before = allowed_cpus().unwrap();
            let cpu = *before.last().unwrap();
            let inner = with_threads_on_cpu(Some(cpu), || {
                std::thread::spawn(|| allowed_cpus().unwrap())
                    .join()
                    .unwrap()
            })
            .unwrap();
            assert_eq!(inner, vec![cpu]);
            assert_eq!(allowed_cpus().unwrap(), before);
            let outside = libc::CPU_SETSIZE as usize;
            assert!(matches!(
                with_threads_on_cpu(Some(outside), || ()),
                Err(CpuError::Pin { cpu, .. }) if cpu == outside
            ));
            assert_eq!(allowed_cpus().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
