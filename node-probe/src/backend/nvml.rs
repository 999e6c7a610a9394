//! The real backend: the NVIDIA driver through NVML (nvml-wrapper, which dlopens libnvidia-ml at run time).
//!
//! NVML is initialised once per backend (it loads every symbol); the event thread shares that instance through an
//! `Arc`. Each per-GPU call is independent: NOT_SUPPORTED, a missing symbol, INVALID_ARGUMENT or FUNCTION_NOT_FOUND
//! omit that one field and name it in `unsupported_fields`; GPU_IS_LOST moves the GPU to `lost_gpus`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gpuscope_crds::gpu_node_status::{
    Backend, Clocks, EccCounters, GpuInfo, GpuMemory, MigInfo, NvLinkState, NvLinks, RecoveryActionStatus,
    RemappedRows, RetiredPages, Utilization, XidSource,
};
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::xid::RecoveryAction;
use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, RetirementCause, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::FieldValueSample;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_REMAPPED_COR, NVML_FI_DEV_REMAPPED_FAILURE, NVML_FI_DEV_REMAPPED_PENDING, NVML_FI_DEV_REMAPPED_UNC,
};
use nvml_wrapper::{Device, EventSet, Nvml};
use tokio::sync::mpsc;

use super::{
    BackendError, EventThread, GpuBackend, LostGpu, NodeSnapshot, NvmlXidEvent, XidEvents, send_until_stopped,
};

/// The library name NVML is loaded by when no path is configured (the driver's soname, found by the loader).
pub const DEFAULT_NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: not among nvml-wrapper 0.13's constants, and outside the 251–273 range it
/// renumbers for drivers ≥ 580.82, so the raw id is stable.
const FIELD_GPU_RECOVERY_ACTION: u32 = 230;
/// NVML_NVLINK_MAX_LINKS in nvml.h (12.x); links past a GPU's last answer INVALID_ARGUMENT.
const MAX_NVLINKS: u32 = 18;
/// NVML_DEVICE_MIG_ENABLE.
const MIG_ENABLED: u32 = 1;
const BYTES_PER_MIB: u64 = 1024 * 1024;
/// How long one event wait blocks: bounds how fast the thread notices a stop request.
const EVENT_WAIT_MS: u32 = 200;
/// Pause after an unexpected event-wait error, so a broken driver does not spin a core.
const EVENT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Throttle-reason names as the API spells them, in a fixed order (the bitflags alias 2 twice, so iterate a table).
const THROTTLE_REASON_NAMES: [(ThrottleReasons, &str); 9] = [
    (ThrottleReasons::GPU_IDLE, "GpuIdle"),
    (ThrottleReasons::APPLICATIONS_CLOCKS_SETTING, "ApplicationsClocksSetting"),
    (ThrottleReasons::SW_POWER_CAP, "SwPowerCap"),
    (ThrottleReasons::HW_SLOWDOWN, "HwSlowdown"),
    (ThrottleReasons::SYNC_BOOST, "SyncBoost"),
    (ThrottleReasons::SW_THERMAL_SLOWDOWN, "SwThermalSlowdown"),
    (ThrottleReasons::HW_THERMAL_SLOWDOWN, "HwThermalSlowdown"),
    (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "HwPowerBrakeSlowdown"),
    (ThrottleReasons::DISPLAY_CLOCK_SETTING, "DisplayClockSetting"),
];

/// How to reach NVML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvmlConfig {
    /// The NVML library: a path, or a bare name the dynamic loader resolves (default `libnvidia-ml.so.1`).
    pub library_path: PathBuf,
}

impl Default for NvmlConfig {
    fn default() -> NvmlConfig {
        NvmlConfig { library_path: PathBuf::from(DEFAULT_NVML_LIBRARY) }
    }
}

/// The driver's view of the GPUs, read through NVML.
#[derive(Debug)]
pub struct NvmlBackend {
    nvml: Arc<Nvml>,
    library_path: PathBuf,
}

impl NvmlBackend {
    /// Load and initialise NVML once; the error names the library path and how to make it available.
    pub fn open(config: NvmlConfig) -> Result<NvmlBackend, BackendError> {
        let path = config.library_path;
        let nvml = Nvml::builder().lib_path(path.as_os_str()).init().map_err(|e| init_error(&path, e))?;
        tracing::info!(library = %path.display(), "NVML initialised");
        Ok(NvmlBackend { nvml: Arc::new(nvml), library_path: path })
    }

    /// The library this backend loaded.
    pub fn library_path(&self) -> &Path {
        &self.library_path
    }

    /// Read every GPU once (the work behind [`GpuBackend::snapshot`], usable through a shared reference).
    pub fn read_snapshot(&self) -> Result<NodeSnapshot, BackendError> {
        read_snapshot(&self.nvml)
    }
}

impl GpuBackend for NvmlBackend {
    fn kind(&self) -> Backend {
        Backend::Nvml
    }

    fn snapshot(&mut self) -> Result<NodeSnapshot, BackendError> {
        self.read_snapshot()
    }

    fn start_xid_events(&mut self, capacity: usize) -> Result<XidEvents, BackendError> {
        start_event_thread(Arc::clone(&self.nvml), capacity)
    }
}

fn init_error(path: &Path, error: NvmlError) -> BackendError {
    let path = path.to_path_buf();
    match error {
        NvmlError::LibloadingError(e) => BackendError::NvmlLibraryNotFound { path, detail: e.to_string() },
        NvmlError::LibraryNotFound => BackendError::NvmlLibraryNotFound { path, detail: "library not found".into() },
        // A library without nvmlInit_v2 is not an NVML this probe can use.
        NvmlError::FailedToLoadSymbol(detail) => {
            BackendError::NvmlLibraryNotFound { path, detail: format!("not an NVML library: {detail}") }
        }
        NvmlError::DriverNotLoaded => BackendError::NvmlDriverNotLoaded { path },
        NvmlError::NoPermission => BackendError::NvmlNoPermission { path },
        source => BackendError::NvmlInit { path, source },
    }
}

/// How an NVML error on one field is treated.
enum Problem {
    /// The driver, GPU or library cannot report it: omit and list it.
    Unsupported,
    /// The GPU is gone: the whole GPU moves to `lost_gpus`.
    Lost,
    /// Anything else: omit it and record the message.
    Failed(String),
}

/// An error while reading one field: NVML's, or a value NVML returned that makes no sense.
#[derive(Debug)]
enum ReadError {
    Nvml(NvmlError),
    Invalid(String),
}

impl From<NvmlError> for ReadError {
    fn from(e: NvmlError) -> ReadError {
        ReadError::Nvml(e)
    }
}

fn classify(error: ReadError) -> Problem {
    match error {
        ReadError::Nvml(
            NvmlError::NotSupported
            | NvmlError::FailedToLoadSymbol(_)
            | NvmlError::InvalidArg
            | NvmlError::FunctionNotFound,
        ) => Problem::Unsupported,
        ReadError::Nvml(NvmlError::GpuLost) => Problem::Lost,
        ReadError::Nvml(other) => Problem::Failed(other.to_string()),
        ReadError::Invalid(message) => Problem::Failed(message),
    }
}

fn read_snapshot(nvml: &Nvml) -> Result<NodeSnapshot, BackendError> {
    let mut snapshot = NodeSnapshot::default();
    let mut system = FieldReader::new("");
    snapshot.driver_version = system.read("driverVersion", || Ok(nvml.sys_driver_version()?));
    snapshot.cuda_driver_version = system.read("cudaDriverVersion", || {
        let v = nvml.sys_cuda_driver_version()?;
        Ok(format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v)))
    });
    snapshot.nvml_version = system.read("nvmlVersion", || Ok(nvml.sys_nvml_version()?));
    system.merge_into(&mut snapshot);

    let count = nvml.device_count().map_err(|source| BackendError::NvmlCall { call: "nvmlDeviceGetCount", source })?;
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(device) => device,
            Err(NvmlError::GpuLost) => {
                tracing::warn!(gpu = index, "NVML reports the GPU as lost (fallen off the bus?)");
                snapshot.lost_gpus.push(LostGpu { index, uuid: None, pci_bus_id: None });
                continue;
            }
            Err(e) => {
                tracing::warn!(gpu = index, error = %e, "cannot open the GPU through NVML; skipping it");
                snapshot.field_errors.insert(format!("gpus[{index}]"), e.to_string());
                continue;
            }
        };
        let mut reader = FieldReader::new(&format!("gpus[{index}]"));
        let info = read_gpu(&device, index, &mut reader);
        if reader.lost {
            tracing::warn!(gpu = index, uuid = ?info.uuid, "NVML reports the GPU as lost (fallen off the bus?)");
            let uuid = Some(info.uuid).filter(|u| !u.is_empty());
            snapshot.lost_gpus.push(LostGpu { index: info.index, uuid, pci_bus_id: info.pci_bus_id });
            continue;
        }
        reader.merge_into(&mut snapshot);
        snapshot.gpus.push(info);
    }
    Ok(snapshot)
}

/// Runs one field's NVML calls and sorts their errors, for one GPU (or the system fields).
struct FieldReader {
    /// Prefix for `field_errors` keys, e.g. "gpus[3]".
    error_prefix: String,
    unsupported: BTreeSet<String>,
    errors: BTreeMap<String, String>,
    lost: bool,
}

impl FieldReader {
    fn new(error_prefix: &str) -> FieldReader {
        FieldReader {
            error_prefix: error_prefix.to_owned(),
            unsupported: BTreeSet::new(),
            errors: BTreeMap::new(),
            lost: false,
        }
    }

    /// The field's value, or `None` with the reason recorded. `path` is the unsupported-field path, e.g.
    /// "gpus.temperatureCelsius". Once the GPU is lost, no further calls are made on it.
    fn read<T>(&mut self, path: &str, call: impl FnOnce() -> Result<T, ReadError>) -> Option<T> {
        if self.lost {
            return None;
        }
        match call() {
            Ok(value) => Some(value),
            Err(error) => {
                self.problem(path, classify(error));
                None
            }
        }
    }

    fn problem(&mut self, path: &str, problem: Problem) {
        match problem {
            Problem::Unsupported => {
                self.unsupported.insert(path.to_owned());
            }
            Problem::Lost => self.lost = true,
            Problem::Failed(message) => {
                let field = path.strip_prefix("gpus.").unwrap_or(path);
                let key = if self.error_prefix.is_empty() {
                    field.to_owned()
                } else {
                    format!("{}.{field}", self.error_prefix)
                };
                tracing::warn!(field = %key, error = %message, "NVML could not read a field; omitting it");
                self.errors.insert(key, message);
            }
        }
    }

    fn merge_into(self, snapshot: &mut NodeSnapshot) {
        snapshot.unsupported_fields.extend(self.unsupported);
        snapshot.field_errors.extend(self.errors);
    }
}

fn read_gpu(device: &Device<'_>, index: u32, r: &mut FieldReader) -> GpuInfo {
    // Identity first, so a GPU that turns out to be lost is still named in `lost_gpus`.
    let uuid = r.read("gpus.uuid", || Ok(device.uuid()?)).unwrap_or_default();
    let pci_bus_id = r.read("gpus.pciBusId", || {
        let raw = device.pci_info()?.bus_id;
        PciBusId::normalize(&raw).ok_or_else(|| ReadError::Invalid(format!("NVML returned a malformed bus id {raw:?}")))
    });
    let index = r.read("gpus.index", || Ok(device.index()?)).unwrap_or(index);
    let product_name = r.read("gpus.productName", || Ok(device.name()?));
    let serial = r.read("gpus.serial", || Ok(device.serial()?));
    let memory = r.read("gpus.memory", || {
        let m = device.memory_info()?;
        Ok(GpuMemory { total_mib: m.total / BYTES_PER_MIB, used_mib: Some(m.used / BYTES_PER_MIB) })
    });
    let temperature_celsius = r.read("gpus.temperatureCelsius", || Ok(device.temperature(TemperatureSensor::Gpu)?));
    let power_draw_watts = r.read("gpus.powerDrawWatts", || Ok(milliwatts_to_watts(device.power_usage()?)));
    let power_limit_watts = r.read("gpus.powerLimitWatts", || Ok(milliwatts_to_watts(device.enforced_power_limit()?)));
    let utilization = r.read("gpus.utilization", || {
        let u = device.utilization_rates()?;
        Ok(Utilization { gpu_percent: u.gpu, memory_percent: u.memory })
    });
    let sm_mhz = r.read("gpus.clocks.smMhz", || Ok(device.clock_info(Clock::SM)?));
    let memory_mhz = r.read("gpus.clocks.memoryMhz", || Ok(device.clock_info(Clock::Memory)?));
    let clocks = (sm_mhz.is_some() || memory_mhz.is_some()).then_some(Clocks { sm_mhz, memory_mhz });
    let throttle_reasons =
        r.read("gpus.throttleReasons", || Ok(throttle_reason_names(device.current_throttle_reasons()?)));
    let ecc = read_ecc(device, r);
    let retired_pages = read_retired_pages(device, r);
    let remapped_rows = read_remapped_rows(device, r);
    let mig = read_mig(device, r);
    let nvlinks = read_nvlinks(device, r);
    let recovery_action = r.read("gpus.recoveryAction", || {
        let code = field_values(device, &[FIELD_GPU_RECOVERY_ACTION])?[0];
        let code = u32::try_from(code).map_err(|_| ReadError::Invalid(format!("recovery action {code} is too big")))?;
        Ok(RecoveryActionStatus {
            code,
            action: RecoveryAction::from_code(code).name().to_owned(),
            source: XidSource::Nvml,
            // The sample's timestamp is when it was read, not when the driver set it; a read time would also make
            // every snapshot differ from the last and defeat write-on-change.
            time: None,
        })
    });
    GpuInfo {
        index,
        uuid,
        product_name,
        pci_bus_id,
        serial,
        memory,
        temperature_celsius,
        power_draw_watts,
        power_limit_watts,
        utilization,
        clocks,
        throttle_reasons,
        ecc,
        retired_pages,
        remapped_rows,
        mig,
        pods: None,
        pods_omitted: None,
        nvlinks,
        recovery_action,
    }
}

fn milliwatts_to_watts(mw: u32) -> u32 {
    mw.saturating_add(500) / 1000
}

fn throttle_reason_names(reasons: ThrottleReasons) -> Vec<String> {
    THROTTLE_REASON_NAMES
        .iter()
        .filter(|(flag, _)| reasons.contains(*flag))
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

fn read_ecc(device: &Device<'_>, r: &mut FieldReader) -> Option<EccCounters> {
    let enabled = r.read("gpus.ecc", || Ok(device.is_ecc_enabled()?.currently_enabled))?;
    if !enabled {
        // The driver keeps no counts with ECC off; asking would only list four "unsupported" counters.
        return Some(EccCounters { enabled, ..EccCounters::default() });
    }
    let mut count = |path: &str, error: MemoryError, counter: EccCounter| {
        r.read(path, || Ok(device.total_ecc_errors(error, counter)?))
    };
    Some(EccCounters {
        enabled,
        volatile_corrected: count("gpus.ecc.volatileCorrected", MemoryError::Corrected, EccCounter::Volatile),
        volatile_uncorrected: count("gpus.ecc.volatileUncorrected", MemoryError::Uncorrected, EccCounter::Volatile),
        aggregate_corrected: count("gpus.ecc.aggregateCorrected", MemoryError::Corrected, EccCounter::Aggregate),
        aggregate_uncorrected: count("gpus.ecc.aggregateUncorrected", MemoryError::Uncorrected, EccCounter::Aggregate),
    })
}

fn read_retired_pages(device: &Device<'_>, r: &mut FieldReader) -> Option<RetiredPages> {
    r.read("gpus.retiredPages", || {
        let single_bit_ecc = device.retired_pages(RetirementCause::MultipleSingleBitEccErrors)?.len() as u64;
        let double_bit_ecc = device.retired_pages(RetirementCause::DoubleBitEccError)?.len() as u64;
        let pending = device.are_pages_pending_retired()?;
        Ok(RetiredPages { single_bit_ecc, double_bit_ecc, pending })
    })
}

fn read_remapped_rows(device: &Device<'_>, r: &mut FieldReader) -> Option<RemappedRows> {
    // Not wrapped by nvml-wrapper 0.13 (nvmlDeviceGetRemappedRows); the field-value API carries the same numbers.
    r.read("gpus.remappedRows", || {
        let ids = [
            NVML_FI_DEV_REMAPPED_COR,
            NVML_FI_DEV_REMAPPED_UNC,
            NVML_FI_DEV_REMAPPED_PENDING,
            NVML_FI_DEV_REMAPPED_FAILURE,
        ];
        let [correctable, uncorrectable, pending, failure] = field_values(device, &ids)?;
        Ok(RemappedRows { correctable, uncorrectable, pending: pending != 0, failure: failure != 0 })
    })
}

/// Integer field values, in the order asked; the first failing field fails the read.
fn field_values<const N: usize>(device: &Device<'_>, ids: &[u32; N]) -> Result<[u64; N], ReadError> {
    let field_ids: Vec<FieldId> = ids.iter().map(|&id| FieldId(id)).collect();
    let samples = device.field_values_for(&field_ids)?;
    if samples.len() != N {
        return Err(ReadError::Invalid(format!("NVML returned {} field values for {N} ids", samples.len())));
    }
    let mut values = [0u64; N];
    for (slot, sample) in values.iter_mut().zip(samples) {
        *slot = sample_as_u64(sample)?;
    }
    Ok(values)
}

fn sample_as_u64(sample: Result<FieldValueSample, NvmlError>) -> Result<u64, ReadError> {
    let sample = sample?;
    match sample.value? {
        SampleValue::U32(v) => Ok(u64::from(v)),
        SampleValue::U64(v) => Ok(v),
        SampleValue::I64(v) => {
            u64::try_from(v).map_err(|_| ReadError::Invalid(format!("field {} is negative ({v})", sample.field.0)))
        }
        SampleValue::F64(v) => {
            Err(ReadError::Invalid(format!("field {} is a float ({v}), expected a count", sample.field.0)))
        }
    }
}

fn read_mig(device: &Device<'_>, r: &mut FieldReader) -> Option<MigInfo> {
    let mode = r.read("gpus.mig", || Ok(device.mig_mode()?))?;
    let enabled = mode.current == MIG_ENABLED;
    let (device_count, device_uuids) = if enabled {
        // nvmlDeviceGetMaxMigDeviceCount is the capacity; the configured devices are the slots that answer. Their
        // UUIDs ("MIG-…") are how the kubelet names a MIG device a pod holds.
        let mut uuids = Vec::new();
        let count = r.read("gpus.mig.deviceCount", || {
            let slots = device.mig_device_count()?;
            let mut configured = 0;
            for slot in 0..slots {
                match device.mig_device_by_index(slot) {
                    Ok(mig) => {
                        configured += 1;
                        if let Ok(uuid) = mig.uuid() {
                            uuids.push(uuid);
                        }
                    }
                    Err(NvmlError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(configured)
        });
        (count, (!uuids.is_empty()).then_some(uuids))
    } else {
        (Some(0), None)
    };
    Some(MigInfo { enabled, pending_enabled: Some(mode.pending == MIG_ENABLED), device_count, device_uuids })
}

fn read_nvlinks(device: &Device<'_>, r: &mut FieldReader) -> Option<NvLinks> {
    if r.lost {
        return None;
    }
    let mut links = Vec::new();
    for link in 0..MAX_NVLINKS {
        match device.link_wrapper_for(link).is_active() {
            Ok(active) => links.push(NvLinkState { link, active }),
            // Past the GPU's last link: the driver answers INVALID_ARGUMENT.
            Err(NvmlError::InvalidArg) => {}
            Err(e) => {
                r.problem("gpus.nvlinks", classify(e.into()));
                return None;
            }
        }
    }
    if links.is_empty() {
        r.problem("gpus.nvlinks", Problem::Unsupported);
        return None;
    }
    Some(NvLinks::from_states(&links))
}

fn start_event_thread(nvml: Arc<Nvml>, capacity: usize) -> Result<XidEvents, BackendError> {
    // Check the symbols here, not in the thread: a missing one should fail this call with a clear reason, and
    // EventSet's Drop calls nvmlEventSetFree unconditionally (it panics if that symbol is missing).
    let lib = nvml.lib();
    let symbols = [
        ("nvmlEventSetCreate", lib.nvmlEventSetCreate.is_ok()),
        ("nvmlDeviceRegisterEvents", lib.nvmlDeviceRegisterEvents.is_ok()),
        ("nvmlEventSetWait_v2", lib.nvmlEventSetWait_v2.is_ok()),
        ("nvmlEventSetFree", lib.nvmlEventSetFree.is_ok()),
    ];
    if let Some((missing, _)) = symbols.iter().find(|(_, present)| !present) {
        return Err(BackendError::EventsUnavailable { reason: format!("the NVML library lacks {missing}") });
    }

    let (tx, receiver) = mpsc::channel(capacity.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<usize, BackendError>>();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("nvml-xid-events".into())
        .spawn(move || {
            // The EventSet and Devices borrow the Nvml owned (through the Arc) by this thread.
            let set = match register_xid_events(&nvml) {
                Ok((set, registered)) => {
                    let _ = ready_tx.send(Ok(registered));
                    set
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            event_loop(&set, &tx, &thread_stop);
        })
        .map_err(|source| BackendError::EventThreadSpawn { source })?;
    let thread = EventThread::new(stop, handle);
    match ready_rx.recv() {
        Ok(Ok(registered)) => {
            tracing::info!(gpus = registered, "listening for NVML critical-XID events");
            Ok(XidEvents { receiver, thread })
        }
        Ok(Err(e)) => {
            thread.stop()?;
            Err(e)
        }
        Err(_) => Err(thread.stop().err().unwrap_or(BackendError::EventThreadPanicked)),
    }
}

/// An event set with every GPU that supports critical-XID events registered, and how many GPUs that is.
fn register_xid_events(nvml: &Nvml) -> Result<(EventSet<'_>, usize), BackendError> {
    let count = nvml.device_count().map_err(|source| BackendError::NvmlCall { call: "nvmlDeviceGetCount", source })?;
    let create =
        || nvml.create_event_set().map_err(|source| BackendError::NvmlCall { call: "nvmlEventSetCreate", source });
    let mut set = create()?;
    let mut registered: Vec<u32> = Vec::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            tracing::warn!(gpu = index, "cannot open the GPU for XID events; its XIDs come from the kernel log only");
            continue;
        };
        match device.supported_event_types() {
            Ok(types) if !types.contains(EventTypes::CRITICAL_XID_ERROR) => {
                tracing::info!(gpu = index, "the GPU does not report XID events through NVML");
                continue;
            }
            // Without the query, registration itself tells.
            Ok(_) | Err(NvmlError::FailedToLoadSymbol(_)) => {}
            Err(e) => {
                tracing::warn!(gpu = index, error = %e, "cannot query the GPU's event types; skipping it");
                continue;
            }
        }
        match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(with_device) => {
                set = with_device;
                registered.push(index);
            }
            Err(e) => {
                tracing::warn!(gpu = index, error = %e.error, "cannot register the GPU for XID events; skipping it");
                // NVML frees the set when a registration fails, so rebuild it with the GPUs registered so far.
                set = create()?;
                for &done in &registered {
                    let device = nvml
                        .device_by_index(done)
                        .map_err(|source| BackendError::NvmlCall { call: "nvmlDeviceGetHandleByIndex", source })?;
                    set = device
                        .register_events(EventTypes::CRITICAL_XID_ERROR, set)
                        .map_err(|e| BackendError::NvmlCall { call: "nvmlDeviceRegisterEvents", source: e.error })?;
                }
            }
        }
    }
    if registered.is_empty() {
        return Err(BackendError::EventsUnavailable { reason: format!("none of the {count} GPUs accepts them") });
    }
    Ok((set, registered.len()))
}

fn event_loop(set: &EventSet<'_>, tx: &mpsc::Sender<NvmlXidEvent>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        match set.wait(EVENT_WAIT_MS) {
            Ok(data) => {
                let Some(xid) = data.event_data else { continue };
                let event = xid_event(&data.device, xid);
                tracing::debug!(code = event.code, gpu = ?event.gpu_uuid, "NVML XID event");
                if !send_until_stopped(tx, event, stop) {
                    break;
                }
            }
            // Also what NVML returns when a wait is interrupted.
            Err(NvmlError::Timeout) => {}
            Err(e) => {
                tracing::warn!(error = %e, "waiting for NVML events failed; retrying");
                std::thread::sleep(EVENT_ERROR_BACKOFF);
            }
        }
    }
    tracing::debug!("NVML XID event thread stopped");
}

fn xid_event(device: &Device<'_>, xid: XidError) -> NvmlXidEvent {
    let (code, message) = match xid {
        XidError::Value(v) => (u32::try_from(v).unwrap_or(u32::MAX), None),
        XidError::Unknown => (999, Some("NVML reported an XID it could not identify".to_owned())),
    };
    NvmlXidEvent {
        code,
        gpu_uuid: device.uuid().ok(),
        pci_bus_id: device.pci_info().ok().and_then(|p| PciBusId::normalize(&p.bus_id)),
        time: jiff::Timestamp::now(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_reasons_are_named_once_each() {
        let names = throttle_reason_names(ThrottleReasons::HW_THERMAL_SLOWDOWN | ThrottleReasons::SW_POWER_CAP);
        assert_eq!(names, vec!["SwPowerCap", "HwThermalSlowdown"]);
        // 2 is both APPLICATIONS_CLOCKS_SETTING and USER_DEFINED_CLOCKS: one name, not two.
        assert_eq!(throttle_reason_names(ThrottleReasons::from_bits_truncate(2)), vec!["ApplicationsClocksSetting"]);
        assert!(throttle_reason_names(ThrottleReasons::empty()).is_empty());
    }

    #[test]
    fn power_is_rounded_to_whole_watts() {
        assert_eq!(milliwatts_to_watts(699_499), 699);
        assert_eq!(milliwatts_to_watts(699_500), 700);
        assert_eq!(milliwatts_to_watts(u32::MAX), u32::MAX / 1000);
    }

    #[test]
    fn missing_library_names_the_path_and_the_fixes() {
        let config = NvmlConfig { library_path: PathBuf::from("/nonexistent/gpuscope/libnvidia-ml.so.1") };
        let err = NvmlBackend::open(config).expect_err("no library there");
        assert!(matches!(err, BackendError::NvmlLibraryNotFound { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/gpuscope/libnvidia-ml.so.1"), "{text}");
        assert!(text.contains("runtimeClassName: nvidia"), "{text}");
    }

    #[test]
    fn unsupported_kinds_are_unsupported_and_gpu_lost_is_lost() {
        for e in [
            NvmlError::NotSupported,
            NvmlError::FailedToLoadSymbol("x".into()),
            NvmlError::InvalidArg,
            NvmlError::FunctionNotFound,
        ] {
            assert!(matches!(classify(e.into()), Problem::Unsupported));
        }
        assert!(matches!(classify(NvmlError::GpuLost.into()), Problem::Lost));
        assert!(matches!(classify(NvmlError::NoPermission.into()), Problem::Failed(_)));
    }
}
