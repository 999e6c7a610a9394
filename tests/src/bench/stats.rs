//! Small measuring tools for the benchmarks: percentiles and a process's CPU and memory from /proc.

use std::time::{Duration, Instant};

/// The `p`-th percentile (0–100) of `samples`, nearest-rank; `None` when empty.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// A process's resource use at one moment.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    at: Instant,
    cpu_ticks: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
}

impl ProcSample {
    /// Read /proc/<pid>/stat and /proc/<pid>/status.
    pub fn read(pid: u32) -> Option<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        };
        Some(ProcSample {
            at: Instant::now(),
            cpu_ticks: utime + stime,
            rss_kib: kib("VmRSS:").unwrap_or(0),
            peak_rss_kib: kib("VmHWM:").unwrap_or(0),
        })
    }

    /// CPU use between two samples, in percent of one core.
    pub fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        // SAFETY: sysconf has no side effects.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu = self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / ticks_per_second;
        let wall = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        100.0 * cpu / wall
    }
}

/// Format a duration in milliseconds with one decimal.
pub fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "n/a".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = ProcSample::read(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib);
    }
}
