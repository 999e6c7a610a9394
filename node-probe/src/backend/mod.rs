//! Where the probe's GPU data comes from: the driver through NVML ([`NvmlBackend`]) or a scenario file
//! ([`SimulatedBackend`]), behind one narrow trait at snapshot granularity.
//!
//! A backend answers two questions: "what do the GPUs look like now" ([`GpuBackend::snapshot`]) and "tell me about
//! XIDs as they happen" ([`GpuBackend::start_xid_events`]). A field the driver cannot report is omitted and named in
//! [`NodeSnapshot::unsupported_fields`]; it never fails the snapshot. A GPU that fell off the bus is listed in
//! [`NodeSnapshot::lost_gpus`] instead of `gpus`, because that absence is itself the health signal.

pub mod nvml;
pub mod simulated;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use gpuscope_crds::gpu_node_status::{Backend, GpuInfo, XidEvent, XidSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;

pub use nvml::{DEFAULT_NVML_LIBRARY, NvmlBackend, NvmlConfig};
pub use simulated::{Clock, ManualClock, Scenario, SimulatedBackend, SystemClock};

/// A source of GPU data: NVML or a simulation. Implementations are driven from one task; they need not be `Sync`.
pub trait GpuBackend: Send {
    /// Which backend this is, as the API's `probe.backend` names it.
    fn kind(&self) -> Backend;

    /// What the GPUs look like now. Fails only when nothing can be read at all (e.g. the device count); a field the
    /// driver lacks is omitted and listed in [`NodeSnapshot::unsupported_fields`].
    fn snapshot(&mut self) -> Result<NodeSnapshot, BackendError>;

    /// Start delivering XIDs as they happen on a channel of `capacity` events, from a dedicated thread.
    fn start_xid_events(&mut self, capacity: usize) -> Result<XidEvents, BackendError>;
}

/// One reading of the node's GPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSnapshot {
    /// NVIDIA driver version, e.g. "570.86.15".
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. "12.8".
    pub cuda_driver_version: Option<String>,
    /// NVML library version, e.g. "12.570.86.15".
    pub nvml_version: Option<String>,
    /// The GPUs that answered, ordered by index; lost GPUs are in `lost_gpus` instead.
    pub gpus: Vec<GpuInfo>,
    /// Fields the driver or library could not report (NOT_SUPPORTED, missing symbol, invalid argument), as paths
    /// relative to status or to a GPU entry: "cudaDriverVersion", "gpus.remappedRows", "gpus.ecc.volatileCorrected".
    pub unsupported_fields: BTreeSet<String>,
    /// GPUs NVML counts but that answered "GPU is lost" (fallen off the bus, XID 79): not in `gpus`.
    pub lost_gpus: Vec<LostGpu>,
    /// Fields that failed for another reason (permission, driver error), keyed by "gpus[<index>].<field>" or the
    /// status field, with NVML's message; omitted from the snapshot like unsupported ones, but worth logging.
    pub field_errors: BTreeMap<String, String>,
    /// Pods on the GPUs, when the backend knows them itself (a simulated scenario's `pods`); `None` for NVML,
    /// where the kubelet's pod-resources API tells.
    pub allocations: Option<Vec<crate::pod_resources::Allocation>>,
}

/// A GPU that NVML enumerates but reports as lost, with whatever identity was read before it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LostGpu {
    /// NVML index.
    pub index: u32,
    /// UUID, when it was read before the loss showed.
    pub uuid: Option<String>,
    /// Normalised PCI bus id, when it was read before the loss showed.
    pub pci_bus_id: Option<String>,
}

/// An XID as NVML's event API reports it; the simulated backend sends the same shape.
#[derive(Clone, Debug, PartialEq)]
pub struct NvmlXidEvent {
    /// XID code (999 when NVML could not identify it).
    pub code: u32,
    /// UUID of the GPU the event names, when NVML could tell.
    pub gpu_uuid: Option<String>,
    /// Normalised PCI bus id ("0000:3b:00.0") of that GPU, when NVML could tell.
    pub pci_bus_id: Option<String>,
    /// When the probe received it (NVML events carry no timestamp).
    pub time: jiff::Timestamp,
    /// Text accompanying the XID; NVML events carry none, simulated ones may.
    pub message: Option<String>,
}

impl NvmlXidEvent {
    /// The API's form of this event (source `nvml`); `None` without a PCI bus id, which the history is keyed by.
    pub fn to_xid_event(&self, boot_id: Option<&str>) -> Option<XidEvent> {
        Some(XidEvent {
            code: self.code,
            time: Time(self.time),
            pci_bus_id: self.pci_bus_id.clone()?,
            gpu_uuid: self.gpu_uuid.clone(),
            gpu_instance: None,
            compute_instance: None,
            pid: None,
            process_name: None,
            message: self.message.clone(),
            source: XidSource::Nvml,
            boot_id: boot_id.map(str::to_owned),
            sequence: None,
            pods: None,
        })
    }
}

/// A running XID event source: the receiving end of its channel and the thread that feeds it.
#[derive(Debug)]
pub struct XidEvents {
    /// XIDs in the order they arrived; closed when the thread stops.
    pub receiver: mpsc::Receiver<NvmlXidEvent>,
    /// The feeding thread; dropping it asks the thread to stop.
    pub thread: EventThread,
}

/// Handle on an event thread. The thread stops when asked, when this handle is dropped, or when the receiver is
/// dropped; it notices within a fraction of a second because it never blocks longer than one short wait.
#[derive(Debug)]
pub struct EventThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EventThread {
    fn new(stop: Arc<AtomicBool>, handle: JoinHandle<()>) -> EventThread {
        EventThread { stop, handle: Some(handle) }
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Ask the thread to stop and wait for it (at most about one wait interval). Blocks: call it from
    /// `spawn_blocking` or outside the async runtime.
    pub fn stop(mut self) -> Result<(), BackendError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(handle) => handle.join().map_err(|_| BackendError::EventThreadPanicked),
            None => Ok(()),
        }
    }
}

impl Drop for EventThread {
    fn drop(&mut self) {
        // No join here: drop may run on the async runtime, and the flag alone ends the thread shortly.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How long an event thread waits before retrying a send into a full channel.
const FULL_CHANNEL_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Send from an event thread without ever blocking past a stop request: a full channel is retried until there is
/// room, the receiver is gone, or the thread is asked to stop. False means "stop the thread".
fn send_until_stopped(tx: &mpsc::Sender<NvmlXidEvent>, mut event: NvmlXidEvent, stop: &AtomicBool) -> bool {
    loop {
        match tx.try_send(event) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                event = back;
                std::thread::sleep(FULL_CHANNEL_RETRY);
            }
        }
    }
}

/// Why a backend could not start or read. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The NVML library could not be loaded at all.
    #[error(
        "could not load the NVIDIA management library from {path}: {detail}. On Kubernetes, run the probe with the \
         NVIDIA container runtime (runtimeClassName: nvidia), or mount the driver's libnvidia-ml.so.1 into the \
         container and pass its path with --nvml-library; on a machine without GPUs use --backend simulated"
    )]
    NvmlLibraryNotFound {
        /// The library path that was tried.
        path: PathBuf,
        /// The loader's message.
        detail: String,
    },
    /// The library loaded but the kernel driver is not running.
    #[error(
        "NVML ({path}) loaded but the NVIDIA kernel driver is not loaded: check `nvidia-smi` on the node and that \
         the driver is installed and its modules loaded, or use --backend simulated"
    )]
    NvmlDriverNotLoaded {
        /// The library path that was loaded.
        path: PathBuf,
    },
    /// NVML refused access to the GPUs.
    #[error(
        "NVML ({path}) was denied access to the GPUs: the probe needs the /dev/nvidia* devices; run it with the \
         NVIDIA container runtime (runtimeClassName: nvidia) or give it access to those devices"
    )]
    NvmlNoPermission {
        /// The library path that was loaded.
        path: PathBuf,
    },
    /// nvmlInit failed for another reason.
    #[error(
        "NVML ({path}) failed to initialise: {source}; check that the library matches the running driver \
         (`nvidia-smi` reports both) and the kernel log for NVRM errors"
    )]
    NvmlInit {
        /// The library path that was loaded.
        path: PathBuf,
        /// NVML's error.
        #[source]
        source: ::nvml_wrapper::error::NvmlError,
    },
    /// A node-wide NVML call failed, so there is nothing to report.
    #[error("NVML call {call} failed: {source}; check `nvidia-smi` and the kernel log for NVRM/Xid errors")]
    NvmlCall {
        /// The NVML function.
        call: &'static str,
        /// NVML's error.
        #[source]
        source: ::nvml_wrapper::error::NvmlError,
    },
    /// NVML cannot deliver XID events here; the kernel log still can.
    #[error("NVML XID events are unavailable: {reason}; XIDs are still read from the kernel log (/dev/kmsg)")]
    EventsUnavailable {
        /// Why.
        reason: String,
    },
    /// The event thread could not be started.
    #[error("could not start the XID event thread: {source}; the process may be out of threads or memory")]
    EventThreadSpawn {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The event thread panicked.
    #[error("the XID event thread panicked; this is a bug in gpuscope-probe, please report it with the logs")]
    EventThreadPanicked,
    /// A scenario file could not be read.
    #[error("cannot read scenario file {path}: {source}; check the path given with --scenario")]
    ScenarioRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario file is malformed.
    #[error("scenario file {path} is invalid: {problem}")]
    ScenarioInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        problem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_event_without_a_bus_id_has_no_api_form() {
        let event = NvmlXidEvent {
            code: 79,
            gpu_uuid: Some("GPU-1".into()),
            pci_bus_id: None,
            time: jiff::Timestamp::UNIX_EPOCH,
            message: None,
        };
        assert_eq!(event.to_xid_event(None), None);
        let with_bus = NvmlXidEvent { pci_bus_id: Some("0000:3b:00.0".into()), ..event };
        let api = with_bus.to_xid_event(Some("boot-1")).expect("api form");
        assert_eq!((api.code, api.pci_bus_id.as_str(), api.source), (79, "0000:3b:00.0", XidSource::Nvml));
        assert_eq!(api.boot_id.as_deref(), Some("boot-1"));
    }

    #[test]
    fn a_full_channel_does_not_keep_a_stopping_thread_alive() {
        let (tx, mut rx) = mpsc::channel(1);
        let event = NvmlXidEvent {
            code: 13,
            gpu_uuid: None,
            pci_bus_id: None,
            time: jiff::Timestamp::UNIX_EPOCH,
            message: None,
        };
        let stop = AtomicBool::new(false);
        assert!(send_until_stopped(&tx, event.clone(), &stop));
        stop.store(true, Ordering::Relaxed);
        assert!(!send_until_stopped(&tx, event.clone(), &stop), "full and stopping: give up");
        assert_eq!(rx.try_recv().map(|e| e.code).ok(), Some(13));
        drop(rx);
        assert!(!send_until_stopped(&tx, event, &AtomicBool::new(false)), "receiver gone: give up");
    }

    #[test]
    fn library_not_found_error_says_how_to_fix_it() {
        let e = BackendError::NvmlLibraryNotFound { path: "/nope/libnvidia-ml.so.1".into(), detail: "no file".into() };
        let text = e.to_string();
        for needle in ["/nope/libnvidia-ml.so.1", "runtimeClassName: nvidia", "--nvml-library", "--backend simulated"] {
            assert!(text.contains(needle), "{needle} missing from: {text}");
        }
    }
}
