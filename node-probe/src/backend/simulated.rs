//! The simulated backend: GPUs and a timeline of events from a scenario file, for demos, scale runs and tests.
//!
//! A scenario (YAML) has node info, GPUs written exactly as the API's `status.gpus` entries (camelCase), optional
//! `gpuDefaults` merged under every GPU, and timed events, each `after` N seconds from the start:
//!
//! ```yaml
//! description: One H100 falls off the bus.
//! node: { driverVersion: "570.86.15", cudaDriverVersion: "12.8", nvmlVersion: "12.570.86.15" }
//! gpuDefaults: { productName: NVIDIA H100 80GB HBM3, powerLimitWatts: 700 }
//! gpus:
//!   - { index: 0, uuid: GPU-6f1f5c2e-9f7c-4d4e-8a7b-2c1e0f9d3a10, pciBusId: "0000:18:00.0" }
//! events:
//!   - after: 60
//!     xid: { gpu: 0, code: 79, message: "GPU has fallen off the bus." }
//!   - after: 60
//!     gpuLost: { gpu: 0 }
//! ```
//!
//! Event kinds (`gpu` is the GPU's index): `xid` {code, message?} is delivered through the XID channel;
//! `eccErrors` {corrected?, uncorrected?} adds to the volatile and aggregate counts; `temperature` {celsius,
//! over? seconds, throttleReasons?} ramps linearly to the target and then sets the throttle reasons; `gpuLost`
//! moves the GPU to `lost_gpus`; `recoveryAction` {code} sets the driver's recovery action; `update` {set} applies
//! a JSON merge patch to the GPU entry (any field but `index`).
//!
//! Pods on the GPUs (what the kubelet's pod-resources API reports on a real node) are listed under `pods`, each
//! with the GPU indexes it holds and optionally when it starts and stops (`after`/`until`, seconds), e.g.
//! `pods: [{ namespace: ml, name: train-0, container: trainer, gpus: [0, 1], controller: Job/train, after: 10 }]`.
//! A `deviceId` replaces the GPU's UUID as the device id (a MIG device, a time-slicing replica, an unmappable id).
//!
//! [`SimulatedBackend::snapshot`] is a pure function of the scenario and the elapsed time on an injectable
//! [`Clock`], so tests step through a timeline deterministically with [`ManualClock`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpuscope_crds::gpu_node_status::{Backend, EccCounters, GpuInfo, RecoveryActionStatus, XidSource};
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::xid::RecoveryAction;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::pod_resources::Allocation;
use crate::pod_resources::binding::WHOLE_GPU_RESOURCE;

use super::{
    BackendError, EventThread, GpuBackend, LostGpu, NodeSnapshot, NvmlXidEvent, XidEvents, send_until_stopped,
};

/// How often the simulated event thread looks at the clock: bounds stop latency and lets a [`ManualClock`] drive it.
const EVENT_POLL: Duration = Duration::from_millis(50);

/// The time source of a simulation; injectable so tests control it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to, for deterministic tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock { now: Mutex::new(start) }
    }

    /// Move the clock forward by `by` (saturating at jiff's maximum timestamp).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.saturating_add(by).unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Node-level facts of a scenario.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// NVIDIA driver version, e.g. "570.86.15".
    #[serde(default)]
    pub driver_version: Option<String>,
    /// CUDA version the driver supports, e.g. "12.8".
    #[serde(default)]
    pub cuda_driver_version: Option<String>,
    /// NVML version, e.g. "12.570.86.15".
    #[serde(default)]
    pub nvml_version: Option<String>,
    /// Fields to report as unsupported, e.g. ["gpus.retiredPages"].
    #[serde(default)]
    pub unsupported_fields: Vec<String>,
}

/// A loaded, validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// What the scenario shows.
    pub description: Option<String>,
    /// Node-level facts.
    pub node: NodeSpec,
    /// The GPUs at the start, ordered by index, bus ids normalised.
    pub gpus: Vec<GpuInfo>,
    /// The timeline, ordered by time (stable: events at the same second keep file order).
    pub events: Vec<TimedEvent>,
    /// Pods holding GPUs, with their lifetimes.
    pub pods: Vec<ScenarioPod>,
}

/// A pod of a scenario: which GPUs it holds and when.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Container name (default "main").
    #[serde(default)]
    pub container: Option<String>,
    /// GPU indexes it holds.
    pub gpus: Vec<u32>,
    /// The device id the kubelet would report instead of the GPU's UUID.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Extended resource (default "nvidia.com/gpu").
    #[serde(default)]
    pub resource: Option<String>,
    /// Seconds from the start when it starts holding the GPUs (default 0).
    #[serde(default)]
    pub after: u64,
    /// Seconds from the start when it stops (default: never).
    #[serde(default)]
    pub until: Option<u64>,
}

/// One event of a scenario's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// When, from the start of the simulation.
    pub after: Duration,
    /// The index of the GPU it happens to.
    pub gpu: u32,
    /// What happens.
    pub kind: EventKind,
}

/// What a timeline event does.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// An XID, delivered through the XID channel.
    Xid {
        /// XID code.
        code: u32,
        /// Driver text.
        message: Option<String>,
    },
    /// ECC errors: added to the volatile and aggregate counters.
    EccErrors {
        /// Corrected (single-bit) errors to add.
        corrected: u64,
        /// Uncorrected (double-bit) errors to add.
        uncorrected: u64,
    },
    /// Temperature moving linearly to a target.
    Temperature {
        /// Target, °C.
        celsius: u32,
        /// How long the ramp takes; zero is a step.
        over: Duration,
        /// Throttle reasons once the target is reached.
        throttle_reasons: Option<Vec<String>>,
    },
    /// The GPU falls off the bus: it leaves `gpus` for `lost_gpus`.
    GpuLost,
    /// The driver sets a recovery action.
    RecoveryAction {
        /// NVML's numeric value.
        code: u32,
    },
    /// A JSON merge patch applied to the GPU's API entry.
    Update {
        /// The patch.
        set: Value,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    node: NodeSpec,
    #[serde(default)]
    gpu_defaults: Option<Value>,
    gpus: Vec<Value>,
    #[serde(default)]
    events: Vec<RawEvent>,
    #[serde(default)]
    pods: Vec<ScenarioPod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvent {
    after: u64,
    #[serde(default)]
    xid: Option<RawXid>,
    #[serde(default)]
    ecc_errors: Option<RawEcc>,
    #[serde(default)]
    temperature: Option<RawTemperature>,
    #[serde(default)]
    gpu_lost: Option<RawGpu>,
    #[serde(default)]
    recovery_action: Option<RawRecovery>,
    #[serde(default)]
    update: Option<RawUpdate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawXid {
    gpu: u32,
    code: u32,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEcc {
    gpu: u32,
    #[serde(default)]
    corrected: u64,
    #[serde(default)]
    uncorrected: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTemperature {
    gpu: u32,
    celsius: u32,
    #[serde(default)]
    over: u64,
    #[serde(default)]
    throttle_reasons: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGpu {
    gpu: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRecovery {
    gpu: u32,
    code: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUpdate {
    gpu: u32,
    set: Value,
}

impl Scenario {
    /// Read and validate a scenario file; errors name the file and the problem.
    pub fn load(path: &Path) -> Result<Scenario, BackendError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BackendError::ScenarioRead { path: path.to_path_buf(), source })?;
        Scenario::parse(&text, path)
    }

    /// Parse and validate scenario YAML; `path` only names the source in errors.
    pub fn parse(yaml: &str, path: &Path) -> Result<Scenario, BackendError> {
        let invalid = |problem: String| BackendError::ScenarioInvalid { path: path.to_path_buf(), problem };
        let raw: RawScenario = serde_saphyr::from_str(yaml).map_err(|e| invalid(e.to_string()))?;
        Scenario::from_raw(raw).map_err(invalid)
    }

    fn from_raw(raw: RawScenario) -> Result<Scenario, String> {
        if raw.gpus.is_empty() {
            return Err("`gpus` is empty; a scenario needs at least one GPU".into());
        }
        let mut gpus = Vec::with_capacity(raw.gpus.len());
        for (i, entry) in raw.gpus.into_iter().enumerate() {
            let mut merged = raw.gpu_defaults.clone().unwrap_or_else(|| Value::Object(Default::default()));
            merge_patch(&mut merged, &entry);
            let gpu = gpu_from_value(merged).map_err(|e| format!("gpus[{i}]: {e}"))?;
            gpus.push(gpu);
        }
        gpus.sort_by_key(|g| g.index);
        let mut indexes = BTreeSet::new();
        let mut uuids = BTreeSet::new();
        for gpu in &gpus {
            if !indexes.insert(gpu.index) {
                return Err(format!("two GPUs have index {}", gpu.index));
            }
            if gpu.uuid.is_empty() || !uuids.insert(gpu.uuid.clone()) {
                return Err(format!("GPU {} needs a uuid of its own (got {:?})", gpu.index, gpu.uuid));
            }
        }

        let mut events = Vec::with_capacity(raw.events.len());
        for (i, e) in raw.events.into_iter().enumerate() {
            let event = event_from_raw(e).map_err(|problem| format!("events[{i}]: {problem}"))?;
            if !indexes.contains(&event.gpu) {
                return Err(format!("events[{i}]: there is no GPU with index {}", event.gpu));
            }
            if let EventKind::Update { set } = &event.kind {
                if set.get("index").is_some() {
                    return Err(format!("events[{i}]: `update` cannot change a GPU's index"));
                }
                // Try the patch on the initial GPU so a bad field fails at load, not in the middle of a demo.
                let gpu = gpus.iter().find(|g| g.index == event.gpu).cloned().unwrap_or_default();
                apply_update(&gpu, set).map_err(|e| format!("events[{i}]: update: {e}"))?;
            }
            events.push(event);
        }
        events.sort_by_key(|e| e.after);
        for (i, pod) in raw.pods.iter().enumerate() {
            if let Some(missing) = pod.gpus.iter().find(|g| !indexes.contains(g)) {
                return Err(format!(
                    "pods[{i}] ({}/{}): there is no GPU with index {missing}",
                    pod.namespace, pod.name
                ));
            }
            if pod.namespace.is_empty() || pod.name.is_empty() {
                return Err(format!("pods[{i}]: a pod needs a namespace and a name"));
            }
        }
        Ok(Scenario { description: raw.description, node: raw.node, gpus, events, pods: raw.pods })
    }

    /// The node as it is `elapsed` after the start; `started` dates what the timeline sets (recovery actions).
    pub fn state_at(&self, elapsed: Duration, started: Timestamp) -> NodeSnapshot {
        let mut gpus = self.gpus.clone();
        let mut lost_gpus = Vec::new();
        for event in self.events.iter().take_while(|e| e.after <= elapsed) {
            let Some(pos) = gpus.iter().position(|g| g.index == event.gpu) else {
                continue; // already lost
            };
            let gpu = &mut gpus[pos];
            match &event.kind {
                EventKind::Xid { .. } => {}
                EventKind::EccErrors { corrected, uncorrected } => {
                    let ecc = gpu.ecc.get_or_insert_with(|| EccCounters { enabled: true, ..EccCounters::default() });
                    for (counter, add) in [
                        (&mut ecc.volatile_corrected, corrected),
                        (&mut ecc.aggregate_corrected, corrected),
                        (&mut ecc.volatile_uncorrected, uncorrected),
                        (&mut ecc.aggregate_uncorrected, uncorrected),
                    ] {
                        *counter = Some(counter.unwrap_or(0).saturating_add(*add));
                    }
                }
                EventKind::Temperature { celsius, over, throttle_reasons } => {
                    let from = gpu.temperature_celsius.unwrap_or(*celsius);
                    let into = elapsed.saturating_sub(event.after);
                    let done = over.is_zero() || into >= *over;
                    gpu.temperature_celsius = Some(if done {
                        *celsius
                    } else {
                        let fraction = into.as_secs_f64() / over.as_secs_f64();
                        (f64::from(from) + (f64::from(*celsius) - f64::from(from)) * fraction).round() as u32
                    });
                    if done && throttle_reasons.is_some() {
                        gpu.throttle_reasons = throttle_reasons.clone();
                    }
                }
                EventKind::GpuLost => {
                    let gone = gpus.remove(pos);
                    lost_gpus.push(LostGpu { index: gone.index, uuid: Some(gone.uuid), pci_bus_id: gone.pci_bus_id });
                }
                EventKind::RecoveryAction { code } => {
                    gpu.recovery_action = Some(RecoveryActionStatus {
                        code: *code,
                        action: RecoveryAction::from_code(*code).name().to_owned(),
                        source: XidSource::Nvml,
                        time: started.checked_add(event.after).ok().map(Time),
                    });
                }
                EventKind::Update { set } => match apply_update(gpu, set) {
                    Ok(updated) => *gpu = updated,
                    Err(e) => tracing::warn!(gpu = event.gpu, error = %e, "scenario update does not apply; skipped"),
                },
            }
        }
        NodeSnapshot {
            driver_version: self.node.driver_version.clone(),
            cuda_driver_version: self.node.cuda_driver_version.clone(),
            nvml_version: self.node.nvml_version.clone(),
            gpus,
            unsupported_fields: self.node.unsupported_fields.iter().cloned().collect(),
            lost_gpus,
            field_errors: Default::default(),
            allocations: (!self.pods.is_empty()).then(|| self.allocations_at(elapsed)),
        }
    }

    /// The pods holding GPUs `elapsed` after the start, as the kubelet would report them.
    pub fn allocations_at(&self, elapsed: Duration) -> Vec<Allocation> {
        let secs = elapsed.as_secs();
        let mut out: Vec<Allocation> = self
            .pods
            .iter()
            .filter(|p| p.after <= secs && p.until.is_none_or(|until| secs < until))
            .flat_map(|p| {
                p.gpus.iter().filter_map(move |index| {
                    let gpu = self.gpus.iter().find(|g| g.index == *index)?;
                    Some(Allocation {
                        namespace: p.namespace.clone(),
                        pod: p.name.clone(),
                        container: p.container.clone().unwrap_or_else(|| "main".into()),
                        resource: p.resource.clone().unwrap_or_else(|| WHOLE_GPU_RESOURCE.into()),
                        device_ids: vec![p.device_id.clone().unwrap_or_else(|| gpu.uuid.clone())],
                        dra: false,
                    })
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The XIDs of the timeline, in order, as the XID channel delivers them.
    pub fn xid_events(&self, started: Timestamp) -> Vec<NvmlXidEvent> {
        self.events
            .iter()
            .filter_map(|event| {
                let EventKind::Xid { code, message } = &event.kind else { return None };
                let gpu = self.gpus.iter().find(|g| g.index == event.gpu);
                Some(NvmlXidEvent {
                    code: *code,
                    gpu_uuid: gpu.map(|g| g.uuid.clone()),
                    pci_bus_id: gpu.and_then(|g| g.pci_bus_id.clone()),
                    time: started.checked_add(event.after).unwrap_or(started),
                    message: message.clone(),
                })
            })
            .collect()
    }
}

fn event_from_raw(raw: RawEvent) -> Result<TimedEvent, String> {
    let after = Duration::from_secs(raw.after);
    let mut kinds: Vec<(u32, EventKind)> = Vec::new();
    if let Some(x) = raw.xid {
        kinds.push((x.gpu, EventKind::Xid { code: x.code, message: x.message }));
    }
    if let Some(e) = raw.ecc_errors {
        kinds.push((e.gpu, EventKind::EccErrors { corrected: e.corrected, uncorrected: e.uncorrected }));
    }
    if let Some(t) = raw.temperature {
        let over = Duration::from_secs(t.over);
        kinds.push((t.gpu, EventKind::Temperature { celsius: t.celsius, over, throttle_reasons: t.throttle_reasons }));
    }
    if let Some(g) = raw.gpu_lost {
        kinds.push((g.gpu, EventKind::GpuLost));
    }
    if let Some(r) = raw.recovery_action {
        kinds.push((r.gpu, EventKind::RecoveryAction { code: r.code }));
    }
    if let Some(u) = raw.update {
        kinds.push((u.gpu, EventKind::Update { set: u.set }));
    }
    match kinds.len() {
        1 => {
            let (gpu, kind) = kinds.remove(0);
            Ok(TimedEvent { after, gpu, kind })
        }
        n => Err(format!(
            "needs exactly one of xid, eccErrors, temperature, gpuLost, recoveryAction, update (found {n})"
        )),
    }
}

/// A GPU entry from its JSON form: bus id normalised, and no key that `GpuInfo` would silently drop.
fn gpu_from_value(value: Value) -> Result<GpuInfo, String> {
    let mut gpu: GpuInfo = serde_json::from_value(value.clone()).map_err(|e| locate_error(&value, e))?;
    let echo = serde_json::to_value(&gpu).map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    unknown_keys(&value, &echo, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(format!("unknown field(s) {}; fields are the API's GpuInfo in camelCase", unknown.join(", ")));
    }
    if let Some(raw) = gpu.pci_bus_id.take() {
        let normal = PciBusId::parse(&raw).map_err(|e| format!("pciBusId: {e}"))?;
        gpu.pci_bus_id = Some(normal.to_string());
    }
    Ok(gpu)
}

/// serde_json names no field in its errors; find the top-level field that fails on its own and name it.
fn locate_error(value: &Value, error: serde_json::Error) -> String {
    let Some(fields) = value.as_object() else { return error.to_string() };
    for (key, field) in fields {
        let mut alone = serde_json::Map::new();
        alone.insert("index".into(), Value::from(0));
        alone.insert("uuid".into(), Value::from("GPU-probe"));
        alone.insert(key.clone(), field.clone());
        if let Err(e) = serde_json::from_value::<GpuInfo>(Value::Object(alone)) {
            return format!("{key}: {e}");
        }
    }
    error.to_string()
}

/// Keys present (non-null) in `given` but absent from `echo` (the typed value serialised back): typos.
fn unknown_keys(given: &Value, echo: &Value, at: &str, out: &mut Vec<String>) {
    match (given, echo) {
        (Value::Object(given), Value::Object(echo)) => {
            for (key, value) in given {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match echo.get(key) {
                    Some(inner) => unknown_keys(value, inner, &path, out),
                    None if !value.is_null() => out.push(format!("`{path}`")),
                    None => {}
                }
            }
        }
        (Value::Array(given), Value::Array(echo)) => {
            for (i, (g, e)) in given.iter().zip(echo).enumerate() {
                unknown_keys(g, e, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn apply_update(gpu: &GpuInfo, set: &Value) -> Result<GpuInfo, String> {
    let mut value = serde_json::to_value(gpu).map_err(|e| e.to_string())?;
    merge_patch(&mut value, set);
    gpu_from_value(value)
}

/// GPUs and events from a scenario, on a clock.
#[derive(Debug)]
pub struct SimulatedBackend {
    scenario: Arc<Scenario>,
    clock: Arc<dyn Clock>,
    started: Timestamp,
}

impl SimulatedBackend {
    /// A simulation of `scenario` starting now on `clock`.
    pub fn new(scenario: Scenario, clock: Arc<dyn Clock>) -> SimulatedBackend {
        let started = clock.now();
        SimulatedBackend { scenario: Arc::new(scenario), clock, started }
    }

    /// A simulation of the scenario file at `path`, on the wall clock.
    pub fn from_file(path: &Path) -> Result<SimulatedBackend, BackendError> {
        Ok(SimulatedBackend::new(Scenario::load(path)?, Arc::new(SystemClock)))
    }

    /// The scenario being played.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// When the simulation started (time zero of the timeline).
    pub fn started(&self) -> Timestamp {
        self.started
    }

    fn elapsed(&self) -> Duration {
        Duration::try_from(self.clock.now().duration_since(self.started)).unwrap_or(Duration::ZERO)
    }
}

impl GpuBackend for SimulatedBackend {
    fn kind(&self) -> Backend {
        Backend::Simulated
    }

    fn snapshot(&mut self) -> Result<NodeSnapshot, BackendError> {
        Ok(self.scenario.state_at(self.elapsed(), self.started))
    }

    fn start_xid_events(&mut self, capacity: usize) -> Result<XidEvents, BackendError> {
        let (tx, receiver) = mpsc::channel(capacity.max(1));
        let pending = self.scenario.xid_events(self.started);
        let clock = Arc::clone(&self.clock);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("simulated-xid-events".into())
            .spawn(move || play_xids(pending, clock.as_ref(), &tx, &thread_stop))
            .map_err(|source| BackendError::EventThreadSpawn { source })?;
        Ok(XidEvents { receiver, thread: EventThread::new(stop, handle) })
    }
}

/// Send each XID once the clock reaches its time; like NVML's thread, keep the channel open until stopped.
fn play_xids(pending: Vec<NvmlXidEvent>, clock: &dyn Clock, tx: &mpsc::Sender<NvmlXidEvent>, stop: &AtomicBool) {
    let mut pending = pending.into_iter().peekable();
    while !stop.load(Ordering::Relaxed) && !tx.is_closed() {
        match pending.peek() {
            Some(next) if clock.now() >= next.time => {
                if let Some(event) = pending.next()
                    && !send_until_stopped(tx, event, stop)
                {
                    return;
                }
            }
            Some(next) => {
                let wait = Duration::try_from(next.time.duration_since(clock.now())).unwrap_or(Duration::ZERO);
                std::thread::sleep(wait.min(EVENT_POLL));
            }
            None => std::thread::sleep(EVENT_POLL),
        }
    }
}

/// The scenarios shipped with the probe, under `node-probe/scenarios/`.
pub const SHIPPED_SCENARIOS: [&str; 5] =
    ["healthy-8x-h100.yaml", "healthy-8x-h100-2.yaml", "xid79-h100.yaml", "ecc-rising-a100.yaml", "mig-a100.yaml"];

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const START: Timestamp = Timestamp::UNIX_EPOCH;

    fn shipped_scenario_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
    }

    fn scenario(yaml: &str) -> Scenario {
        match Scenario::parse(yaml, Path::new("test.yaml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(yaml: &str) -> String {
        match Scenario::parse(yaml, Path::new("broken.yaml")) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    const TWO_GPUS: &str = r#"
node: { driverVersion: "570.86.15", cudaDriverVersion: "12.8", nvmlVersion: "12.570.86.15" }
gpuDefaults:
  productName: NVIDIA A100-SXM4-80GB
  temperatureCelsius: 40
  ecc: { enabled: true, volatileCorrected: 0, volatileUncorrected: 0, aggregateCorrected: 2, aggregateUncorrected: 0 }
gpus:
  - { index: 0, uuid: GPU-aaaaaaaa-0000-0000-0000-000000000000, pciBusId: "00000000:07:00.0" }
  - { index: 1, uuid: GPU-bbbbbbbb-0000-0000-0000-000000000000, pciBusId: "0000:0F:00.0" }
events:
  - after: 60
    temperature: { gpu: 1, celsius: 90, over: 60, throttleReasons: [HwThermalSlowdown] }
  - after: 10
    eccErrors: { gpu: 0, corrected: 5 }
  - after: 30
    eccErrors: { gpu: 0, corrected: 5, uncorrected: 1 }
  - after: 90
    xid: { gpu: 0, code: 79, message: "GPU has fallen off the bus." }
  - after: 90
    gpuLost: { gpu: 0 }
  - after: 100
    recoveryAction: { gpu: 1, code: 2 }
  - after: 110
    update: { gpu: 1, set: { remappedRows: { correctable: 0, uncorrectable: 1, pending: true, failure: false } } }
"#;

    fn at(s: &Scenario, secs: u64) -> NodeSnapshot {
        s.state_at(Duration::from_secs(secs), START)
    }

    #[test]
    fn scenario_pods_hold_their_gpus_between_after_and_until() {
        let yaml = TWO_GPUS.replacen(
            "gpus:\n",
            "pods:\n  - { namespace: ml, name: train-0, gpus: [0, 1], after: 10, until: 20 }\n  - { namespace: ml, name: \
             infer, container: server, gpus: [1], deviceId: \"MIG-1234\", resource: nvidia.com/mig-1g.10gb }\ngpus:\n",
            1,
        );
        let s = scenario(&yaml);
        let held = |secs| -> Vec<(String, String)> {
            at(&s, secs).allocations.unwrap_or_default().into_iter().map(|a| (a.pod, a.device_ids.concat())).collect()
        };
        assert_eq!(held(0), [("infer".to_string(), "MIG-1234".to_string())]);
        let busy = held(10);
        assert_eq!(busy.len(), 3, "train-0 on both GPUs, infer on its MIG device: {busy:?}");
        assert!(busy.contains(&("train-0".into(), "GPU-aaaaaaaa-0000-0000-0000-000000000000".into())));
        assert_eq!(held(20).len(), 1, "train-0 stopped at 20 s");
        let bad = TWO_GPUS.replacen("gpus:\n", "pods:\n  - { namespace: ml, name: x, gpus: [7] }\ngpus:\n", 1);
        let e = Scenario::parse(&bad, Path::new("bad.yaml")).expect_err("GPU 7 does not exist").to_string();
        assert!(e.contains("pods[0] (ml/x): there is no GPU with index 7"), "{e}");
        assert_eq!(at(&scenario(TWO_GPUS), 0).allocations, None, "no pods listed: the kubelet is asked");
    }

    #[test]
    fn gpu_defaults_merge_under_each_gpu_and_bus_ids_are_normalised() {
        let s = scenario(TWO_GPUS);
        let snap = at(&s, 0);
        assert_eq!(snap.driver_version.as_deref(), Some("570.86.15"));
        assert_eq!(snap.gpus.len(), 2);
        assert_eq!(snap.gpus[0].product_name.as_deref(), Some("NVIDIA A100-SXM4-80GB"));
        assert_eq!(snap.gpus[0].pci_bus_id.as_deref(), Some("0000:07:00.0"));
        assert_eq!(snap.gpus[1].pci_bus_id.as_deref(), Some("0000:0f:00.0"));
        assert_eq!(snap.gpus[1].temperature_celsius, Some(40));
    }

    #[test]
    fn ecc_errors_accumulate_on_volatile_and_aggregate_counts() {
        let s = scenario(TWO_GPUS);
        let ecc = |secs| at(&s, secs).gpus[0].ecc.clone().unwrap_or_default();
        assert_eq!(ecc(9).volatile_corrected, Some(0));
        assert_eq!(ecc(10).volatile_corrected, Some(5));
        let later = ecc(30);
        assert_eq!(
            (
                later.volatile_corrected,
                later.aggregate_corrected,
                later.volatile_uncorrected,
                later.aggregate_uncorrected
            ),
            (Some(10), Some(12), Some(1), Some(1))
        );
    }

    #[test]
    fn temperature_ramps_linearly_then_throttles_at_the_target() {
        let s = scenario(TWO_GPUS);
        let gpu1 = |secs| at(&s, secs).gpus.into_iter().find(|g| g.index == 1).unwrap_or_default();
        assert_eq!(gpu1(59).temperature_celsius, Some(40));
        assert_eq!(gpu1(60).temperature_celsius, Some(40));
        assert_eq!(gpu1(90).temperature_celsius, Some(65));
        assert_eq!(gpu1(90).throttle_reasons, None);
        assert_eq!(gpu1(120).temperature_celsius, Some(90));
        assert_eq!(gpu1(120).throttle_reasons, Some(vec!["HwThermalSlowdown".to_owned()]));
    }

    #[test]
    fn a_lost_gpu_leaves_gpus_and_is_listed_with_its_identity() {
        let s = scenario(TWO_GPUS);
        assert!(at(&s, 89).lost_gpus.is_empty());
        let snap = at(&s, 90);
        assert_eq!(snap.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            snap.lost_gpus,
            vec![LostGpu {
                index: 0,
                uuid: Some("GPU-aaaaaaaa-0000-0000-0000-000000000000".into()),
                pci_bus_id: Some("0000:07:00.0".into()),
            }]
        );
    }

    #[test]
    fn recovery_action_and_updates_apply_at_their_time() {
        let s = scenario(TWO_GPUS);
        assert_eq!(at(&s, 99).gpus[0].recovery_action, None);
        let action = at(&s, 100).gpus[0].recovery_action.clone().unwrap_or_default();
        assert_eq!((action.code, action.action.as_str(), action.source), (2, "NodeReboot", XidSource::Nvml));
        assert_eq!(action.time, Some(Time(START.checked_add(Duration::from_secs(100)).unwrap_or(START))));
        assert_eq!(at(&s, 109).gpus[0].remapped_rows, None);
        let rows = at(&s, 110).gpus[0].remapped_rows.clone().unwrap_or_default();
        assert_eq!((rows.uncorrectable, rows.pending), (1, true));
    }

    #[test]
    fn snapshot_follows_an_injected_clock() {
        let clock = Arc::new(ManualClock::new(START));
        let mut backend = SimulatedBackend::new(scenario(TWO_GPUS), clock.clone());
        assert_eq!(backend.kind(), Backend::Simulated);
        assert_eq!(backend.snapshot().map(|s| s.gpus.len()).ok(), Some(2));
        clock.advance(Duration::from_secs(95));
        let snap = backend.snapshot().unwrap_or_default();
        assert_eq!((snap.gpus.len(), snap.lost_gpus.len()), (1, 1));
    }

    #[test]
    fn simulated_xids_arrive_on_the_channel_when_the_clock_reaches_them() {
        let clock = Arc::new(ManualClock::new(START));
        let mut backend = SimulatedBackend::new(scenario(TWO_GPUS), clock.clone());
        let mut events = match backend.start_xid_events(8) {
            Ok(events) => events,
            Err(e) => panic!("{e}"),
        };
        std::thread::sleep(EVENT_POLL * 3);
        assert!(events.receiver.try_recv().is_err(), "nothing is due at t=0");
        clock.advance(Duration::from_secs(90));
        let event = events.receiver.blocking_recv().unwrap_or_else(|| panic!("channel closed"));
        assert_eq!(event.code, 79);
        assert_eq!(event.gpu_uuid.as_deref(), Some("GPU-aaaaaaaa-0000-0000-0000-000000000000"));
        assert_eq!(event.pci_bus_id.as_deref(), Some("0000:07:00.0"));
        assert_eq!(event.message.as_deref(), Some("GPU has fallen off the bus."));
        assert_eq!(event.time, START.checked_add(Duration::from_secs(90)).unwrap_or(START));
        assert!(events.thread.is_running());
        assert!(events.thread.stop().is_ok());
    }

    #[test]
    fn malformed_scenarios_name_the_file_and_the_problem() {
        let cases = [
            ("gpus: [", "broken.yaml"),
            ("gpus: []", "at least one GPU"),
            ("gpus: [{ index: 0, uuid: GPU-a, temperatureCelcius: 40 }]", "`temperatureCelcius`"),
            ("gpus: [{ index: 0, uuid: GPU-a, memory: { totalMib: 1, usedMb: 2 } }]", "`memory.usedMb`"),
            ("gpus: [{ index: 0, uuid: GPU-a, pciBusId: 3b }]", "pciBusId: not a PCI bus id"),
            ("gpus: [{ index: 0, uuid: GPU-a, temperatureCelsius: hot }]", "temperatureCelsius: invalid type"),
            ("gpus: [{ index: 0, uuid: GPU-a, ecc: { enabled: 3 } }]", "ecc: invalid type"),
            ("gpus: [{ index: 0 }]", "missing field `uuid`"),
            ("gpus: [{ index: 0, uuid: GPU-a }, { index: 0, uuid: GPU-b }]", "two GPUs have index 0"),
            ("gpus: [{ index: 0, uuid: GPU-a }, { index: 1, uuid: GPU-a }]", "uuid of its own"),
            (
                "gpus: [{ index: 0, uuid: GPU-a }]\nevents: [{ after: 1, xid: { gpu: 4, code: 79 } }]",
                "no GPU with index 4",
            ),
            ("gpus: [{ index: 0, uuid: GPU-a }]\nevents: [{ after: 1 }]", "exactly one of"),
            (
                "gpus: [{ index: 0, uuid: GPU-a }]\nevents: [{ after: 1, xid: { gpu: 0, code: 79 }, gpuLost: { gpu: 0 } }]",
                "found 2",
            ),
            (
                "gpus: [{ index: 0, uuid: GPU-a }]\nevents: [{ after: 1, update: { gpu: 0, set: { tempC: 1 } } }]",
                "`tempC`",
            ),
            (
                "gpus: [{ index: 0, uuid: GPU-a }]\nevents: [{ after: 1, update: { gpu: 0, set: { index: 3 } } }]",
                "index",
            ),
            ("gpus: [{ index: 0, uuid: GPU-a }]\nsurprise: 1", "surprise"),
        ];
        for (yaml, needle) in cases {
            let text = parse_err(yaml);
            assert!(text.contains("broken.yaml"), "no file name in: {text}");
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
    }

    #[test]
    fn unreadable_scenario_file_names_the_path() {
        let err = Scenario::load(Path::new("/nonexistent/scenario.yaml")).expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/scenario.yaml"), "{err}");
    }

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = shipped_scenario_dir();
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|name| name.ends_with(".yaml"))
            .collect();
        found.sort();
        let mut shipped = SHIPPED_SCENARIOS.map(str::to_owned).to_vec();
        shipped.sort();
        assert_eq!(found, shipped, "SHIPPED_SCENARIOS must list every file in {}", dir.display());
        for name in SHIPPED_SCENARIOS {
            let s = Scenario::load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            let snap = s.state_at(Duration::ZERO, START);
            assert_eq!(snap.driver_version.as_deref().map(|v| v.starts_with("570.")), Some(true), "{name}");
            assert_eq!(snap.cuda_driver_version.as_deref(), Some("12.8"), "{name}");
            for gpu in &snap.gpus {
                assert!(gpu.uuid.starts_with("GPU-") && gpu.uuid.len() == 40, "{name}: uuid {}", gpu.uuid);
                assert!(gpu.pci_bus_id.is_some() && gpu.product_name.is_some(), "{name}: gpu {}", gpu.index);
            }
        }
    }

    #[test]
    fn healthy_h100_scenario_has_eight_700w_gpus_and_no_events() {
        let s = Scenario::load(&shipped_scenario_dir().join("healthy-8x-h100.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.gpus.len(), 8);
        assert!(s.events.is_empty());
        for gpu in &s.gpus {
            assert_eq!(gpu.product_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
            assert_eq!(gpu.power_limit_watts, Some(700));
        }
    }

    #[test]
    fn xid79_scenario_loses_a_gpu_after_its_xid() {
        let s = Scenario::load(&shipped_scenario_dir().join("xid79-h100.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let xids = s.xid_events(START);
        let xid79 = xids.iter().find(|x| x.code == 79).unwrap_or_else(|| panic!("no XID 79"));
        let at_xid = Duration::try_from(xid79.time.duration_since(START)).unwrap_or_default();
        let after = s.state_at(at_xid, START);
        assert_eq!(after.lost_gpus.len(), 1);
        assert_eq!(after.lost_gpus[0].uuid, xid79.gpu_uuid);
        assert_eq!(after.gpus.len(), 7);
    }

    #[test]
    fn ecc_rising_scenario_counts_go_up() {
        let s = Scenario::load(&shipped_scenario_dir().join("ecc-rising-a100.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let total = |snap: &NodeSnapshot| -> u64 {
            snap.gpus.iter().filter_map(|g| g.ecc.as_ref()?.volatile_corrected).sum::<u64>()
        };
        let end = s.events.last().map(|e| e.after).unwrap_or_default();
        assert!(total(&s.state_at(end, START)) > total(&s.state_at(Duration::ZERO, START)));
        assert!(s.gpus.iter().all(|g| g.power_limit_watts == Some(400)));
    }

    #[test]
    fn mig_scenario_has_mig_enabled_gpus() {
        let s = Scenario::load(&shipped_scenario_dir().join("mig-a100.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let mig: Vec<_> = s.gpus.iter().filter_map(|g| g.mig.clone()).collect();
        assert!(mig.iter().any(|m| m.enabled && m.device_count.unwrap_or(0) > 0));
    }
}
