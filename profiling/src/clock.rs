//! Clocks: monotonic and wall-clock nanoseconds, process CPU time, and civil dates without a date crate.

/// Nanoseconds of `CLOCK_MONOTONIC`: shared by every process on this machine, so logs of several processes
/// of one run line up without any correction.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds since the Unix epoch (wall clock).
pub fn unix_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock ids used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// CPU time consumed by the calling thread, ns (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time, not
/// inflated when other processes compete for the cores.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time consumed by all threads of this process, ns (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time and peak memory of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User-mode CPU time, nanoseconds, all threads.
    pub user_ns: u64,
    /// Kernel-mode CPU time, nanoseconds, all threads.
    pub sys_ns: u64,
    /// Peak resident set size, kibibytes.
    pub max_rss_kib: u64,
}

/// Reads [`Usage`] of the calling process with `getrusage`.
pub fn usage() -> Usage {
    // SAFETY: zeroed rusage is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Usage::default();
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Usage { user_ns: tv(ru.ru_utime), sys_ns: tv(ru.ru_stime), max_rss_kib: ru.ru_maxrss as u64 }
}

/// Current resident set size of this process in bytes (from `/proc/self/statm`), 0 when unreadable.
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = s.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

/// Kernel thread id of the calling thread (what `top -H` and Perfetto show).
pub fn thread_id() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// A UTC calendar date and time of day, from Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
}

impl Civil {
    /// Converts Unix nanoseconds to a UTC civil time (Howard Hinnant's `civil_from_days`).
    pub fn from_unix_ns(ns: u64) -> Civil {
        let secs = (ns / 1_000_000_000) as i64;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            second: (sod % 60) as u32,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYYMMDDTHHMMSSZ`, safe in file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub fn human(&self) -> String {
        format!("{} {:02}:{:02}:{:02} UTC", self.date(), self.hour, self.minute, self.second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(Civil::from_unix_ns(0).human(), "1970-01-01 00:00:00 UTC");
        // 2026-11-22 03:40:56 UTC
        assert_eq!(Civil::from_unix_ns(1_795_318_856_000_000_000).compact(), "20261122T034056Z");
        assert_eq!(Civil::from_unix_ns(951_782_400_000_000_000).date(), "2000-02-29");
    }

    #[test]
    fn clocks_move_forward() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
        assert!(unix_ns() > 1_600_000_000_000_000_000);
        assert!(thread_id() > 0);
    }
}

/// The 1-minute load average of the machine (`/proc/loadavg`), to judge how much other work competed for
/// the cores during a measurement; `None` where the system does not say.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
