//! The server process's own accounting, read from `/proc/<pid>`: CPU time (utime + stime of
//! `stat`, all threads) and resident memory (`VmRSS`, `VmHWM` of `status`). The figures come
//! from the kernel, so a load generator slower than the server cannot flatter it.

use std::time::Duration;

use thiserror::Error;

/// A `/proc` file could not be read or understood.
#[derive(Debug, Error)]
pub enum ProcError {
    /// The file could not be read (the process is gone?).
    #[error("cannot read /proc/{pid}/{file}: {source}")]
    Read {
        /// Process id.
        pid: u32,
        /// File under `/proc/<pid>`.
        file: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The file's text is not what Linux writes.
    #[error("unexpected format of /proc/{pid}/{file}")]
    Format {
        /// Process id.
        pid: u32,
        /// File under `/proc/<pid>`.
        file: &'static str,
    },
}

/// Total CPU time (user + system) the process has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration, ProcError> {
    let text = read(pid, "stat")?;
    let ticks = parse_stat_ticks(&text).ok_or(ProcError::Format { pid, file: "stat" })?;
    Ok(ticks_to_duration(ticks))
}

/// Resident set size now, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64, ProcError> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size since start (or the last [`reset_peak`]), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, ProcError> {
    status_field(pid, "VmHWM:")
}

/// Resets the process's peak RSS to its current RSS (Linux `clear_refs` value 5). Needs
/// permission over the process; returns false when the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn read(pid: u32, file: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).map_err(|source| ProcError::Read {
        pid,
        file,
        source,
    })
}

fn status_field(pid: u32, name: &str) -> Result<u64, ProcError> {
    let text = read(pid, "status")?;
    parse_status_kib(&text, name).ok_or(ProcError::Format {
        pid,
        file: "status",
    })
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a system constant.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_sec = u64::try_from(per_sec)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_a_command_name_with_spaces() {
        let line = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
    }

    #[test]
    fn status_field_is_read_in_kib() {
        let text = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kib(text, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(text, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(text, "VmSwap:"), None);
    }

    #[test]
    fn own_process_has_cpu_time_and_rss() {
        let pid = std::process::id();
        let spin: u64 = (0..3_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert_ne!(spin, 1);
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(peak_rss_kib(pid).unwrap() >= rss_kib(pid).unwrap() / 2);
        assert!(cpu_time(pid).is_ok());
    }
}
