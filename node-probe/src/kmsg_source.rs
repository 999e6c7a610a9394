//! Follows the kernel log and turns NVIDIA's lines into observations.
//!
//! `/dev/kmsg` (a character device) hands out one record per `read`, starting with the oldest record still in
//! the ring: that is the backfill, and it is why XIDs are deduplicated by (boot id, sequence) downstream. A reader
//! that falls behind gets `EPIPE` for overwritten records: it continues and counts the gap. Any other path (a
//! regular file or FIFO, for tests and replays) is read line by line and followed like `tail -f`.
//!
//! Only kernel-facility records count: a process that can write to `/dev/kmsg` must not be able to forge XIDs.
//! Malformed, truncated or non-UTF-8 records are counted and skipped, never fatal.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gpuscope_crds::gpu_node_status::{XidEvent, XidSource};
use gpuscope_crds::kmsg::{KmsgRecord, RecordSplitter, parse_record};
use gpuscope_crds::xid::RecoveryAction;
use gpuscope_crds::xid::line::{KernelEvent, parse_kernel_message};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;

/// Something the kernel log told the probe.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// An XID.
    Xid(XidEvent),
    /// The driver named a GPU's UUID (`NVRM: GPU at PCI:…: GPU-…`).
    GpuUuid {
        /// Normalised PCI bus id.
        pci_bus_id: String,
        /// GPU UUID.
        uuid: String,
    },
    /// XID 154: the driver's recovery action for a GPU changed.
    RecoveryAction {
        /// Normalised PCI bus id.
        pci_bus_id: String,
        /// The new action.
        action: RecoveryAction,
        /// When.
        time: Time,
    },
    /// A record that could not be parsed (skipped).
    Malformed {
        /// Why.
        reason: String,
    },
    /// Records lost because the reader fell behind the ring buffer.
    Lost {
        /// How many (by sequence numbers), 0 when unknown.
        records: u64,
    },
}

/// Where and how to read.
#[derive(Clone, Debug)]
pub struct KmsgSettings {
    /// `/dev/kmsg`, or a file/FIFO in tests.
    pub path: PathBuf,
    /// The node's boot id, stamped on every XID.
    pub boot_id: Option<String>,
    /// Wall-clock time of boot, to turn the records' microseconds-since-boot into times.
    pub boot_time: jiff::Timestamp,
}

/// Turns records into observations; pure apart from its small PCI → UUID memory.
#[derive(Debug)]
pub struct Interpreter {
    boot_id: Option<String>,
    boot_time: jiff::Timestamp,
    uuids: HashMap<String, String>,
    last_sequence: Option<u64>,
}

impl Interpreter {
    /// An interpreter for one boot.
    pub fn new(boot_id: Option<String>, boot_time: jiff::Timestamp) -> Interpreter {
        Interpreter { boot_id, boot_time, uuids: HashMap::new(), last_sequence: None }
    }

    /// Observations from one parsed record (or its parse error).
    pub fn interpret(&mut self, record: Result<KmsgRecord, String>) -> Vec<Observation> {
        let record = match record {
            Ok(r) => r,
            Err(reason) => return vec![Observation::Malformed { reason }],
        };
        let mut out = Vec::new();
        if let Some(last) = self.last_sequence
            && record.sequence > last + 1
            && record.sequence - last - 1 > 0
        {
            // Sequences are dense within a boot; a jump means the ring overwrote what we did not read.
            out.push(Observation::Lost { records: record.sequence - last - 1 });
        }
        self.last_sequence = Some(record.sequence);
        if record.facility != 0 {
            return out;
        }
        let time = self.time_of(record.timestamp_us);
        match parse_kernel_message(&record.message) {
            Ok(Some(KernelEvent::Xid(line))) => {
                let pci = line.pci_bus_id.to_string();
                if let Some(action) = line.recovery_action {
                    out.push(Observation::RecoveryAction { pci_bus_id: pci.clone(), action, time: time.clone() });
                }
                out.push(Observation::Xid(XidEvent {
                    code: line.code,
                    time,
                    gpu_uuid: self.uuids.get(&pci).cloned(),
                    pci_bus_id: pci,
                    gpu_instance: line.gpu_instance,
                    compute_instance: line.compute_instance,
                    pid: line.pid,
                    process_name: line.process_name,
                    message: Some(truncate(line.message)).filter(|m| !m.is_empty()),
                    source: XidSource::Kmsg,
                    boot_id: self.boot_id.clone(),
                    sequence: Some(record.sequence),
                    pods: None,
                }));
            }
            Ok(Some(KernelEvent::GpuUuid { pci_bus_id, uuid })) => {
                let pci = pci_bus_id.to_string();
                self.uuids.insert(pci.clone(), uuid.clone());
                out.push(Observation::GpuUuid { pci_bus_id: pci, uuid });
            }
            Ok(_) => {}
            Err(e) => out.push(Observation::Malformed { reason: e.to_string() }),
        }
        out
    }

    fn time_of(&self, timestamp_us: u64) -> Time {
        let offset = jiff::SignedDuration::from_micros(i64::try_from(timestamp_us).unwrap_or(i64::MAX));
        Time(self.boot_time.checked_add(offset).unwrap_or(self.boot_time))
    }
}

/// Longest driver message kept per XID: the status must stay small whatever the driver prints.
pub const MAX_MESSAGE_CHARS: usize = 512;

fn truncate(mut message: String) -> String {
    if let Some((at, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(at);
        message.push('…');
    }
    message
}

/// Wall-clock boot time: now minus the monotonic clock (the clock kernel log timestamps use).
pub fn boot_time() -> jiff::Timestamp {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own and has no other effect.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
    let now = jiff::Timestamp::now();
    if !ok {
        return now;
    }
    let since_boot = jiff::SignedDuration::new(ts.tv_sec, i32::try_from(ts.tv_nsec).unwrap_or(0));
    now.checked_sub(since_boot).unwrap_or(now)
}

/// The node's boot id, e.g. from `/proc/sys/kernel/random/boot_id`.
pub fn read_boot_id(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Why the kernel log could not be followed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read the kernel log at {path} (mount /dev/kmsg read-only and grant CAP_SYSLOG, or set --kmsg-path): {source}"
)]
pub struct KmsgError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Start a thread that follows the kernel log until `stop` is set, sending observations to `tx`.
pub fn spawn(
    settings: KmsgSettings,
    tx: mpsc::Sender<Observation>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, KmsgError> {
    let path = settings.path.clone();
    let file = File::open(&path).map_err(|source| KmsgError { path: path.clone(), source })?;
    let is_device = file.metadata().map(|m| m.file_type().is_char_device()).unwrap_or(false);
    std::thread::Builder::new()
        .name("kmsg".into())
        .spawn(move || {
            let mut interp = Interpreter::new(settings.boot_id.clone(), settings.boot_time);
            let send = |obs: Vec<Observation>| obs.into_iter().all(|o| tx.blocking_send(o).is_ok());
            if is_device {
                follow_device(file, &mut interp, &stop, send);
            } else {
                follow_lines(file, &mut interp, &stop, send);
            }
        })
        .map_err(|source| KmsgError { path, source })
}

fn follow_device(mut file: File, interp: &mut Interpreter, stop: &AtomicBool, send: impl Fn(Vec<Observation>) -> bool) {
    let mut buf = vec![0u8; gpuscope_crds::kmsg::MAX_RECORD_BYTES + 64];
    while !stop.load(Ordering::Relaxed) {
        match file.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(100)),
            Ok(n) => {
                let record = parse_record(&buf[..n]).map_err(|e| e.to_string());
                if !send(interp.interpret(record)) {
                    return;
                }
            }
            // The ring overwrote records we had not read; the next read continues with the oldest left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                if !send(vec![Observation::Lost { records: 0 }]) {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading /dev/kmsg failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn follow_lines(file: File, interp: &mut Interpreter, stop: &AtomicBool, send: impl Fn(Vec<Observation>) -> bool) {
    let mut reader = BufReader::new(file);
    let mut splitter = RecordSplitter::new();
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        // Bound a single line: a huge line is cut here and reported by the splitter as too long.
        let limit = (gpuscope_crds::kmsg::MAX_RECORD_BYTES * 4) as u64;
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) => {
                // Idle: the pending record is complete (a follower cannot wait for the next one forever).
                if let Some(r) = splitter.finish()
                    && !send(interp.interpret(r.map_err(|e| e.to_string())))
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => {
                if let Some(r) = splitter.push_line(&line)
                    && !send(interp.interpret(r.map_err(|e| e.to_string())))
                {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the kernel log file failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, facility: u8, message: &str) -> Result<KmsgRecord, String> {
        let line = format!("{},{seq},{},-;{message}", facility * 8 + 3, seq * 1_000_000);
        parse_record(line.as_bytes()).map_err(|e| e.to_string())
    }

    fn interp() -> Interpreter {
        Interpreter::new(Some("boot-1".into()), jiff::Timestamp::from_second(1_790_000_000).expect("valid"))
    }

    #[test]
    fn an_xid_line_becomes_an_xid_with_wall_clock_time_and_identity() {
        let mut i = interp();
        let uuid = "NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab";
        assert!(matches!(i.interpret(record(1, 0, uuid)).as_slice(), [Observation::GpuUuid { .. }]));
        let obs = i.interpret(record(
            2,
            0,
            "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.",
        ));
        let [Observation::Xid(x)] = obs.as_slice() else { panic!("expected one XID, got {obs:?}") };
        assert_eq!(x.code, 79);
        assert_eq!(x.pci_bus_id, "0000:3b:00.0");
        assert_eq!(x.gpu_uuid.as_deref(), Some("GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab"));
        assert_eq!(x.time.0.as_second(), 1_790_000_002);
        assert_eq!((x.boot_id.as_deref(), x.sequence), (Some("boot-1"), Some(2)));
        assert_eq!(x.process_name.as_deref(), Some("python3"));
    }

    #[test]
    fn an_xid_whose_pid_is_no_number_is_still_an_xid() {
        let mut i = interp();
        for (seq, line) in [
            "NVRM: Xid (PCI:0000:3b:00): 79, pid='N/A', name=python3, GPU has fallen off the bus.",
            "NVRM: Xid (PCI:0000:3b:00): 79, pid=, name='python3', GPU has fallen off the bus.",
        ]
        .into_iter()
        .enumerate()
        {
            let obs = i.interpret(record(seq as u64 + 1, 0, line));
            let [Observation::Xid(x)] = obs.as_slice() else { panic!("{line}: expected one XID, got {obs:?}") };
            assert_eq!((x.code, x.pid, x.process_name.as_deref()), (79, None, Some("python3")), "{line}");
        }
    }

    #[test]
    fn xid_154_also_reports_the_recovery_action() {
        let mut i = interp();
        let obs = i.interpret(record(
            1,
            0,
            "NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)",
        ));
        assert!(matches!(
            obs.first(),
            Some(Observation::RecoveryAction { action: RecoveryAction::NodeReboot, pci_bus_id, .. }) if pci_bus_id == "0000:01:00.0"
        ));
        assert!(matches!(obs.get(1), Some(Observation::Xid(x)) if x.code == 154));
    }

    #[test]
    fn long_driver_messages_are_cut_to_keep_the_status_small() {
        let mut i = interp();
        let text = format!("NVRM: Xid (PCI:0000:3b:00): 13, {}", "x".repeat(5_000));
        let obs = i.interpret(record(1, 0, &text));
        let [Observation::Xid(x)] = obs.as_slice() else { panic!("expected an XID: {obs:?}") };
        assert_eq!(x.message.as_ref().map(|m| m.chars().count()), Some(MAX_MESSAGE_CHARS + 1));
    }

    #[test]
    fn user_space_records_cannot_forge_xids() {
        let mut i = interp();
        assert!(i.interpret(record(1, 1, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.")).is_empty());
    }

    #[test]
    fn malformed_records_and_sequence_gaps_are_reported_not_fatal() {
        let mut i = interp();
        assert!(matches!(i.interpret(Err("bad".into())).as_slice(), [Observation::Malformed { .. }]));
        assert!(i.interpret(record(10, 0, "ordinary line")).is_empty());
        assert_eq!(i.interpret(record(15, 0, "after a gap")), vec![Observation::Lost { records: 4 }]);
        let bad_xid = i.interpret(record(16, 0, "NVRM: Xid (PCI:...): 79, redacted"));
        assert!(matches!(bad_xid.as_slice(), [Observation::Malformed { .. }]), "{bad_xid:?}");
    }

    #[tokio::test]
    async fn a_followed_file_delivers_backfill_then_appended_lines() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kmsg");
        let mut f = File::create(&path).expect("create");
        writeln!(f, "3,1,1000000,-;NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a, Graphics Exception").expect("w");
        writeln!(f, "\u{0}\u{1}garbage").expect("w");
        let (tx, mut rx) = mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let settings =
            KmsgSettings { path: path.clone(), boot_id: Some("b".into()), boot_time: jiff::Timestamp::UNIX_EPOCH };
        let handle = spawn(settings, tx, stop.clone()).expect("spawn");
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time");
        assert!(matches!(first, Some(Observation::Xid(ref x)) if x.code == 13), "{first:?}");
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time");
        assert!(matches!(second, Some(Observation::Malformed { .. })), "{second:?}");
        writeln!(f, "3,3,3000000,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.").expect("w");
        let third = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time");
        assert_eq!(third, Some(Observation::Lost { records: 1 }), "sequence 2 was never seen");
        let fourth = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time");
        assert!(matches!(fourth, Some(Observation::Xid(ref x)) if x.code == 79 && x.sequence == Some(3)), "{fourth:?}");
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        handle.join().expect("join");
    }
}
