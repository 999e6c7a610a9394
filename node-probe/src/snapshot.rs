//! `gpuscope-probe snapshot`: read the GPUs once (NVML or a scenario) and print the status the probe would write,
//! with what the driver could not report, without an API server. What an SRE validating a node runs first.
//!
//! The status is built by the same code as the probe's writes ([`probe_status`]); only the XID history is left
//! out, because the snapshot reads no kernel log (`gpuscope-mcp analyze-log` explains one).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use clap::{Args as _, CommandFactory as _, FromArgMatches as _, ValueEnum};
use gpuscope_crds::gpu_node_status::{Backend, GpuNodeStatusStatus};
use gpuscope_runtime::logging::LogArgs;
use serde::Serialize;

use crate::app::{Args, BackendKind};
use gpuscope_crds::gpu_node_status::DataSource;

/// Listed when the kernel log cannot be read.
const KERNEL_LOG_FIELD: &str = DataSource::KernelLog.unsupported_field();
/// Listed when NVML cannot deliver XID events.
const NVML_EVENTS_FIELD: &str = DataSource::NvmlEvents.unsupported_field();
use crate::backend::{BackendError, DEFAULT_NVML_LIBRARY, GpuBackend, NodeSnapshot, NvmlBackend, NvmlConfig};
use crate::backend::{SimulatedBackend, XidEvents};
use crate::report::{NodeReport, probe_status};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run as the node's probe.
    Run(Box<Args>),
    /// `gpuscope-probe snapshot`.
    Snapshot(SnapshotArgs),
}

/// The subcommand's name.
pub const SUBCOMMAND: &str = "snapshot";

/// The probe's command line with the `snapshot` subcommand, which needs none of the running probe's required
/// flags (`--node-name`). Built by hand around the derived [`Args`] so that those stay plain, required values.
pub fn command() -> clap::Command {
    Args::command().subcommand_negates_reqs(true).subcommand(SnapshotArgs::augment_args(clap::Command::new(SUBCOMMAND)))
}

/// Parse `std::env::args`, exiting with clap's message (and status 2) on a bad command line, as `Parser::parse`.
pub fn parse_command_line() -> Invocation {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parse a command line (the first item is the program name).
pub fn parse_from<I, T>(argv: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut matches = command().try_get_matches_from(argv)?;
    match matches.remove_subcommand() {
        Some((name, mut sub)) if name == SUBCOMMAND => {
            SnapshotArgs::from_arg_matches_mut(&mut sub).map(Invocation::Snapshot)
        }
        _ => Args::from_arg_matches_mut(&mut matches).map(|a| Invocation::Run(Box::new(a))),
    }
}

/// Read the GPUs once (NVML or a scenario) and print the GpuNodeStatus status the probe would write, with the
/// fields the driver did not support; needs no API server.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Where GPU data comes from: the driver (nvml) or a scenario file (simulated).
    #[arg(long, value_enum, default_value_t = BackendKind::Nvml, env = "GPUSCOPE_BACKEND")]
    pub backend: BackendKind,
    /// Path of the NVML library (the loader's search path applies to a bare file name).
    #[arg(long, default_value = DEFAULT_NVML_LIBRARY, env = "GPUSCOPE_NVML_LIBRARY")]
    pub nvml_library: PathBuf,
    /// Scenario file for `--backend simulated` (see node-probe/scenarios/).
    #[arg(long, env = "GPUSCOPE_SCENARIO", required_if_eq("backend", "simulated"))]
    pub scenario: Option<PathBuf>,
    /// Kernel log the probe would follow; the snapshot only checks that it can be opened.
    #[arg(long, default_value = "/dev/kmsg", env = "GPUSCOPE_KMSG_PATH")]
    pub kmsg_path: PathBuf,
    /// The probe would not read the kernel log (it is then listed as unsupported).
    #[arg(long)]
    pub no_kmsg: bool,
    /// File holding the node's boot id.
    #[arg(long, default_value = "/proc/sys/kernel/random/boot_id")]
    pub boot_id_file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub log: LogArgs,
}

/// How the snapshot is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// YAML, as `kubectl get -o yaml` prints a status.
    Yaml,
    /// JSON, pretty-printed.
    Json,
}

/// What the snapshot prints: the status and what is missing from it, and why.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Where the data came from.
    pub source: Source,
    /// The probe's fields of the GpuNodeStatus status, as it would write them (without the XID history).
    pub status: GpuNodeStatusStatus,
    /// Fields the driver or NVML library did not support: omitted from `status.gpus[]` and the node fields (also
    /// listed in `status.unsupportedFields`, with the XID sources that could not be opened).
    pub unsupported_by_driver: Vec<String>,
    /// XID sources the probe could not open, with the reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailable_xid_sources: BTreeMap<String, String>,
    /// Fields that failed for another reason (permission, driver error), with NVML's message.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub field_errors: BTreeMap<String, String>,
    /// GPUs NVML counts but reports as lost (fallen off the bus): not in `status.gpus`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_gpus: Vec<LostGpuView>,
}

/// The backend a snapshot read.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `nvml` or `simulated`.
    pub backend: Backend,
    /// The NVML library loaded (nvml) or the scenario file read (simulated).
    pub path: PathBuf,
}

/// A lost GPU, as printed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LostGpuView {
    /// NVML index.
    pub index: u32,
    /// UUID, when read before the loss showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// PCI bus id, when read before the loss showed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
}

/// Why no snapshot could be taken. Each message names the library or file it tried.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The backend could not be opened (the message names the library or scenario path and how to fix it).
    #[error(transparent)]
    Open(BackendError),
    /// The backend opened but reading the GPUs failed.
    #[error("reading the GPUs through {path} failed: {source}")]
    Read {
        /// The NVML library or scenario file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: BackendError,
    },
    /// The snapshot could not be printed.
    #[error("cannot print the snapshot as {format:?}: {detail}")]
    Print {
        /// The format asked for.
        format: OutputFormat,
        /// The serializer's message.
        detail: String,
    },
}

/// Take the snapshot `args` describes (blocking: NVML initialisation can take seconds per GPU).
pub fn take(args: &SnapshotArgs) -> Result<Snapshot, SnapshotError> {
    let (mut backend, path): (Box<dyn GpuBackend>, PathBuf) = match args.backend {
        BackendKind::Nvml => {
            let config = NvmlConfig { library_path: args.nvml_library.clone() };
            (Box::new(NvmlBackend::open(config).map_err(SnapshotError::Open)?), args.nvml_library.clone())
        }
        BackendKind::Simulated => {
            let path = args.scenario.clone().unwrap_or_default();
            (Box::new(SimulatedBackend::from_file(&path).map_err(SnapshotError::Open)?), path)
        }
    };
    let read = backend.snapshot().map_err(|source| SnapshotError::Read { path: path.clone(), source })?;
    let mut unavailable = BTreeMap::new();
    if args.no_kmsg {
        unavailable.insert(KERNEL_LOG_FIELD.to_string(), "--no-kmsg".to_string());
    } else if let Err(e) = File::open(&args.kmsg_path) {
        unavailable.insert(KERNEL_LOG_FIELD.to_string(), format!("cannot open {}: {e}", args.kmsg_path.display()));
    }
    if let Err(reason) = check_xid_events(backend.as_mut()) {
        unavailable.insert(NVML_EVENTS_FIELD.to_string(), reason);
    }
    let boot_id = crate::kmsg_source::read_boot_id(&args.boot_id_file);
    Ok(assemble(backend.kind(), path, read, unavailable, boot_id, jiff::Timestamp::now()))
}

/// Whether the backend can deliver XID events: started, then stopped at once.
fn check_xid_events(backend: &mut dyn GpuBackend) -> Result<(), String> {
    let XidEvents { receiver, thread } = backend.start_xid_events(1).map_err(|e| e.to_string())?;
    drop(receiver);
    thread.stop().map_err(|e| e.to_string())
}

/// The snapshot of one reading: the status the probe's own code builds from it, and the notes beside it.
pub fn assemble(
    backend: Backend,
    path: PathBuf,
    read: NodeSnapshot,
    unavailable_xid_sources: BTreeMap<String, String>,
    boot_id: Option<String>,
    now: jiff::Timestamp,
) -> Snapshot {
    let unsupported_by_driver: Vec<String> = read.unsupported_fields.iter().cloned().collect();
    let mut unsupported: BTreeSet<String> = read.unsupported_fields;
    unsupported.extend(unavailable_xid_sources.keys().cloned());
    let report = NodeReport {
        driver_version: read.driver_version,
        cuda_driver_version: read.cuda_driver_version,
        nvml_version: read.nvml_version,
        gpus: read.gpus,
        unsupported_fields: unsupported,
        backend,
        boot_id,
        ..NodeReport::default()
    };
    let lost_gpus = read
        .lost_gpus
        .into_iter()
        .map(|l| LostGpuView { index: l.index, uuid: l.uuid, pci_bus_id: l.pci_bus_id })
        .collect();
    Snapshot {
        source: Source { backend, path },
        status: probe_status(&report, now),
        unsupported_by_driver,
        unavailable_xid_sources,
        field_errors: read.field_errors,
        lost_gpus,
    }
}

impl Snapshot {
    /// The snapshot in `format`, ending with a newline.
    pub fn render(&self, format: OutputFormat) -> Result<String, SnapshotError> {
        let print = |detail: String| SnapshotError::Print { format, detail };
        let mut text = match format {
            OutputFormat::Yaml => serde_saphyr::to_string(self).map_err(|e| print(e.to_string()))?,
            OutputFormat::Json => serde_json::to_string_pretty(self).map_err(|e| print(e.to_string()))?,
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }

    /// One line for a person: how many GPUs were read from where, and what is missing.
    pub fn summary(&self) -> String {
        let gpus = self.status.gpus.as_ref().map_or(0, Vec::len);
        let mut line = format!("{gpus} GPU(s) read through {}", describe(self.source.backend, &self.source.path));
        if !self.unsupported_by_driver.is_empty() {
            line.push_str(&format!("; not supported by the driver: {}", self.unsupported_by_driver.join(", ")));
        }
        for (source, why) in &self.unavailable_xid_sources {
            line.push_str(&format!("; {source} unavailable ({why})"));
        }
        if !self.lost_gpus.is_empty() {
            line.push_str(&format!("; {} GPU(s) lost", self.lost_gpus.len()));
        }
        line
    }
}

fn describe(backend: Backend, path: &Path) -> String {
    match backend {
        Backend::Nvml => format!("NVML ({})", path.display()),
        Backend::Simulated => format!("the scenario {}", path.display()),
    }
}

/// `gpuscope-probe snapshot`: print the snapshot on stdout and a one-line summary on stderr.
pub fn run(args: &SnapshotArgs) -> anyhow::Result<()> {
    let snapshot = take(args)?;
    let text = snapshot.render(args.output)?;
    print!("{text}");
    eprintln!("{}", snapshot.summary());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpuscope_crds::gpu_node_status::GpuInfo;

    fn reading() -> NodeSnapshot {
        NodeSnapshot {
            driver_version: Some("535.104.05".into()),
            gpus: vec![GpuInfo {
                index: 0,
                uuid: "GPU-1".into(),
                product_name: Some("Tesla T4".into()),
                ..Default::default()
            }],
            unsupported_fields: ["gpus.remappedRows".to_string(), "gpus.recoveryAction".to_string()].into(),
            lost_gpus: vec![crate::backend::LostGpu { index: 1, uuid: Some("GPU-2".into()), pci_bus_id: None }],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_needs_no_node_name_and_the_probe_still_does() {
        let parsed =
            parse_from(["gpuscope-probe", "snapshot", "--backend", "simulated", "--scenario", "s.yaml", "-o", "json"]);
        match parsed {
            Ok(Invocation::Snapshot(s)) => {
                assert_eq!((s.backend, s.output), (BackendKind::Simulated, OutputFormat::Json));
                assert_eq!(s.scenario.as_deref(), Some(Path::new("s.yaml")));
            }
            other => panic!("expected a snapshot: {other:?}"),
        }
        assert!(
            matches!(parse_from(["gpuscope-probe", "snapshot"]), Ok(Invocation::Snapshot(s)) if s.output == OutputFormat::Yaml)
        );
        assert!(
            matches!(parse_from(["gpuscope-probe", "--node-name", "n1"]), Ok(Invocation::Run(a)) if a.node_name == "n1")
        );
        if std::env::var_os("NODE_NAME").is_none() {
            let e = parse_from(["gpuscope-probe"]).expect_err("the probe needs its node");
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
        let e = parse_from(["gpuscope-probe", "snapshot", "--backend", "simulated"]).expect_err("needs a scenario");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        command().debug_assert();
    }

    #[test]
    fn the_status_is_the_probes_own_with_driver_gaps_and_unopened_xid_sources_listed() {
        let unavailable = BTreeMap::from([(KERNEL_LOG_FIELD.to_string(), "cannot open /dev/kmsg".to_string())]);
        let s = assemble(
            Backend::Nvml,
            "libnvidia-ml.so.1".into(),
            reading(),
            unavailable,
            Some("b1".into()),
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.status.gpu_count, Some(1));
        assert_eq!(s.status.gpu_model.as_deref(), Some("Tesla T4"));
        assert_eq!(s.status.probe.as_ref().and_then(|p| p.boot_id.as_deref()), Some("b1"));
        assert_eq!(s.unsupported_by_driver, ["gpus.recoveryAction", "gpus.remappedRows"]);
        assert_eq!(
            s.status.unsupported_fields.as_deref(),
            Some(&["gpus.recoveryAction".to_string(), "gpus.remappedRows".into(), KERNEL_LOG_FIELD.into()][..])
        );
        assert_eq!(s.lost_gpus.len(), 1);
        assert!(s.status.xids.is_none(), "the snapshot reads no XIDs");
    }

    #[test]
    fn yaml_and_json_carry_the_same_camel_case_fields() {
        let s = assemble(
            Backend::Simulated,
            "s.yaml".into(),
            reading(),
            BTreeMap::new(),
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        let json: serde_json::Value = serde_json::from_str(&s.render(OutputFormat::Json).unwrap()).unwrap();
        let yaml: serde_json::Value = serde_saphyr::from_str(&s.render(OutputFormat::Yaml).unwrap()).unwrap();
        assert_eq!(json, yaml);
        assert_eq!(json["status"]["driverVersion"], "535.104.05");
        assert_eq!(json["unsupportedByDriver"][1], "gpus.remappedRows");
        assert_eq!(json["lostGpus"][0]["uuid"], "GPU-2");
        assert_eq!(json["source"]["backend"], "simulated");
        assert!(json.get("unavailableXidSources").is_none(), "empty maps are left out");
        assert!(s.summary().starts_with("1 GPU(s) read through the scenario s.yaml; not supported by the driver:"));
    }
}
