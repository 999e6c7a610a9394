//! The kernel-log CLI on large generated logs: the real `gpuscope-mcp analyze-log` on files of each size, its
//! throughput (MB/s by wall clock and per CPU second) and its peak RSS, which must not grow with the input. No
//! control plane.

use std::fmt::Write as _;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::ProcSample;
use crate::workspace_binary;

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct AnalyzeLogBench {
    /// Sizes of the generated logs, in bytes.
    pub sizes: Vec<u64>,
    /// One XID line in this many lines.
    pub xid_every: u64,
    /// Where the generated logs go (each is deleted after its run); `None`: the system's temp dir.
    pub dir: Option<PathBuf>,
    /// What the CLI prints: `text` or `json`.
    pub output: String,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A byte count: a plain number, or with a unit (KB, MB, GB: powers of 1000; KiB, MiB, GiB: powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{s:?} is not a size like 500MB or 1GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?}; use B, KB, MB, GB, KiB, MiB or GiB")),
    };
    let bytes = number * scale as f64;
    if !(1.0..=1e13).contains(&bytes) {
        return Err(format!("{s:?} is out of range (1 byte to 10 TB)"));
    }
    Ok(bytes as u64)
}

/// Run it and print the figures.
pub fn run(cfg: &AnalyzeLogBench) -> BenchResult<()> {
    let binary = workspace_binary("gpuscope-mcp")?;
    let dir = cfg.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "analyze-log benchmark ({}, --output {}, one XID line in {}; the file is read from the page cache)",
        binary.display(),
        cfg.output,
        cfg.xid_every
    );
    println!(
        "  {:>9}  {:>11}  {:>9}  {:>8}  {:>9}  {:>10}  {:>14}  {:>9}",
        "size", "lines", "XID lines", "wall", "MB/s", "MB/CPU-s", "peak RSS", "generate"
    );
    for &size in &cfg.sizes {
        let file = tempfile::Builder::new().prefix("gpuscope-bench-").suffix(".log").tempfile_in(&dir)?;
        let started = Instant::now();
        let written = generate(file.as_file(), size, cfg.xid_every)?;
        let generate_time = started.elapsed();
        let m = measure(&binary, file.path(), &cfg.output)?;
        if cfg.output == "json" {
            let report: serde_json::Value = serde_json::from_slice(&m.stdout)?;
            let lines = &report["report"]["input"]["lines"];
            let xids = &report["report"]["summary"]["xidLines"];
            if *lines != written.lines || *xids != written.xid_lines {
                return Err(format!(
                    "the CLI read {lines} lines and {xids} XID lines; {} and {} were written",
                    written.lines, written.xid_lines
                )
                .into());
            }
        }
        let mb = written.bytes as f64 / 1e6;
        println!(
            "  {:>9}  {:>11}  {:>9}  {:>7.2}s  {:>9.1}  {:>10.1}  {:>7.1} MiB ({:.1})  {:>8.1}s",
            human_bytes(written.bytes),
            written.lines,
            written.xid_lines,
            m.wall.as_secs_f64(),
            mb / m.wall.as_secs_f64().max(1e-9),
            mb / m.cpu.as_secs_f64().max(1e-9),
            m.max_rss_kib as f64 / 1024.0,
            m.sampled_peak_kib as f64 / 1024.0,
            generate_time.as_secs_f64()
        );
    }
    println!("  peak RSS: getrusage maxrss at exit (in brackets: VmHWM sampled every 10 ms while running)");
    Ok(())
}

/// What one generated log holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// Lines written.
    pub lines: u64,
    /// XID lines among them.
    pub xid_lines: u64,
}

/// Ordinary kernel lines of a GPU node, in the formats logs arrive in. `{t}` is replaced by an uptime.
const ORDINARY: [&str; 10] = [
    "[{t}] eth0: Link is Up - 25Gbps/Full - flow control rx/tx",
    "[{t}] audit: type=1400 audit(1722830053.123:4242): apparmor=\"STATUS\" operation=\"profile_replace\" profile=\"unconfined\" name=\"nvidia_modprobe\" pid=81234 comm=\"apparmor_parser\"",
    "Aug  5 03:54:13 gpu-node-17 kernel: [{t}] IPv6: ADDRCONF(NETDEV_CHANGE): cali3f2a1b4c5d6: link becomes ready",
    "[{t}] pcieport 0000:00:01.0: AER: Corrected error received: 0000:3b:00.0",
    "[{t}] EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.",
    "[{t}] cni0: port 3(veth1a2b3c4d) entered forwarding state",
    "[{t}] kauditd_printk_skb: 12 callbacks suppressed",
    "Aug 05 03:54:13 gpu-node-17 kernel: oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=cri-containerd-4f3c2b1a.scope,mems_allowed=0-1,task=python3,pid=4242,uid=0",
    "[{t}] nvme nvme0: I/O 512 QID 7 timeout, completion polled",
    "[{t}] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.86.15  Fri Jan 24 20:40:21 UTC 2025",
];

/// XID lines: (code, message), on one of eight GPUs.
const XIDS: [(u32, &str); 8] = [
    (13, "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address"),
    (31, "Ch 00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f6e_8a000000"),
    (43, "Ch 00000010"),
    (45, "Ch 00000008"),
    (48, "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6"),
    (79, "GPU has fallen off the bus."),
    (94, "Contained: CE User Channel (0x9). RST: No, D-RST: No"),
    (119, "Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL)"),
];

const BUSES: [u8; 8] = [0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb];

/// Write a mixed kernel log of `size` bytes (rounded to whole lines) to `out` in chunks, never holding it whole.
pub fn generate(out: impl Write, size: u64, xid_every: u64) -> std::io::Result<Written> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut w = Written::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut line = String::with_capacity(512);
    while w.bytes < size {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        line.clear();
        let uptime = format!("{:>12.6}", w.lines as f64 * 0.000_731);
        if xid_every > 0 && w.lines % xid_every == xid_every - 1 {
            let (code, message) = XIDS[(rng % XIDS.len() as u64) as usize];
            let bus = BUSES[((rng >> 8) % BUSES.len() as u64) as usize];
            let prefix =
                if rng & 1 == 0 { format!("[{uptime}] ") } else { "Aug 05 03:54:13 gpu-node-17 kernel: ".to_string() };
            let _ = writeln!(
                line,
                "{prefix}NVRM: Xid (PCI:0000:{bus:02x}:00): {code}, pid={}, name=python3, {message}",
                rng % 90_000 + 1000
            );
            w.xid_lines += 1;
        } else {
            let template = ORDINARY[(rng % ORDINARY.len() as u64) as usize];
            line.push_str(&template.replace("{t}", &uptime));
            line.push('\n');
        }
        out.write_all(line.as_bytes())?;
        w.bytes += line.len() as u64;
        w.lines += 1;
    }
    out.flush()?;
    Ok(w)
}

/// One run of the CLI.
struct Measured {
    wall: Duration,
    cpu: Duration,
    /// getrusage's peak RSS of the child.
    max_rss_kib: u64,
    /// The largest VmHWM seen while sampling.
    sampled_peak_kib: u64,
    stdout: Vec<u8>,
}

fn measure(binary: &std::path::Path, file: &std::path::Path, output: &str) -> BenchResult<Measured> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("analyze-log")
        .arg(file)
        .args(["--output", output])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let mut sampled_peak_kib = 0;
    // Sample until the child exits (a zombie has no VmHWM any more); waitid with WNOWAIT keeps it reapable.
    loop {
        if let Some(s) = ProcSample::read(pid) {
            sampled_peak_kib = sampled_peak_kib.max(s.peak_rss_kib);
        }
        if exited(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, usage) = wait_with_usage(pid)?;
    let wall = started.elapsed();
    let stdout = reader.join().map_err(|_| "the stdout reader panicked")??;
    if status != 0 {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        return Err(format!("analyze-log exited with wait status {status}: {stderr}").into());
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: usage.ru_maxrss as u64,
        sampled_peak_kib,
        stdout,
    })
}

/// True once `pid` has exited (without reaping it).
fn exited(pid: u32) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter; waitid only writes to it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: WNOWAIT leaves the child waitable; `info` outlives the call.
    let rc = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: si_pid is set by waitid when a child changed state and stays 0 otherwise (zeroed above).
    rc != 0 || unsafe { info.si_pid() } != 0
}

/// Reap `pid` and give its wait status and resource use (the only way to get a child's exact peak RSS).
fn wait_with_usage(pid: u32) -> std::io::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; wait4 only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: `status` and `usage` outlive the call; the child is ours and not yet reaped.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((status, usage))
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0} MB", n as f64 / 1e6),
        n => format!("{:.0} KB", n as f64 / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("0MB").is_err());
    }

    #[test]
    fn the_generated_log_has_the_size_and_xid_rate_asked_for() {
        let mut buf = Vec::new();
        let w = generate(&mut buf, 1_000_000, 100).expect("generated");
        assert_eq!(w.bytes, buf.len() as u64);
        assert!((1_000_000..1_000_300).contains(&w.bytes), "{w:?}");
        assert_eq!(w.xid_lines, w.lines / 100);
        let text = String::from_utf8(buf).expect("UTF-8");
        assert_eq!(text.lines().count() as u64, w.lines);
        assert_eq!(text.matches("NVRM: Xid (PCI:").count() as u64, w.xid_lines);
    }
}
