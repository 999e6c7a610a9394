//! NVIDIA XID errors: the catalog (code → meaning, NVIDIA's resolution buckets, our class and severity) and
//! the driver's recovery action (XID 154 / NVML field 230).
//!
//! The facts come from NVIDIA's public XID catalog; [`CATALOG_REVISION`] names the revision the table follows.
//! Everything that needs to know "what does XID N mean" asks [`lookup`], so the probe, the operator and the
//! facade never disagree.

mod catalog;
pub mod line;
pub mod nvlink5;
mod recovery;
pub mod rules;

use std::fmt;

use serde::Serialize;

pub use catalog::{CATALOG_REVISION, CATALOG_SOURCE};
pub use recovery::RecoveryAction;

/// A resolution bucket from NVIDIA's catalog: what to do now (immediate) or what to look at next
/// (investigatory). Serialized as NVIDIA spells it ([`ResolutionBucket::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResolutionBucket {
    /// Nothing to do; the GPU stays healthy.
    Ignore,
    /// Restart the application that hit the error; the GPU stays usable.
    RestartApp,
    /// Reset the GPU (`nvidia-smi -r`) once its processes are gone.
    ResetGpu,
    /// Restart bare metal: reboot the node.
    RestartBm,
    /// Restart the virtual machine.
    RestartVm,
    /// Restart the NVIDIA Fabric Manager.
    RestartFm,
    /// Check cooling, power and seating of the board.
    CheckMechanicals,
    /// Update driver, firmware or VBIOS.
    UpdateSwfw,
    /// Open a case with NVIDIA (RMA flow).
    ContactSupport,
    /// Check the application or the CUDA version it uses.
    CheckAppCuda,
    /// Investigate the software stack (driver, firmware, system software).
    InvestigateSw,
    /// Investigate the user's software.
    InvestigateSwUser,
    /// Investigate link signal integrity (cables, connectors, retimers).
    InvestigateLinkSi,
    /// Check the unified-memory (UVM) driver.
    CheckUvm,
    /// Report on its own only when no other XID explains it (sympathetic report).
    SympatheticReportSolo,
    /// Ignore: a sympathetic report of another error.
    IgnoreSympathetic,
    /// NVIDIA's XID 137 flow (illegal NVLink peer access).
    Xid137Flow,
    /// NVIDIA's XID 13 workflow (graphics engine exception).
    WorkflowXid13,
    /// NVIDIA's XID 31 workflow (MMU fault).
    WorkflowXid31,
    /// NVIDIA's XID 45 workflow (preemptive cleanup).
    WorkflowXid45,
    /// XID 45's investigatory cell: restart Fabric Manager when it comes alone, else follow the other XID.
    SoloRestartFm,
    /// NVIDIA's XID 48 workflow (double-bit ECC).
    WorkflowXid48,
    /// NVIDIA's NVLink error workflow (XID 74).
    WorkflowNvlinkErr,
    /// NVIDIA's NVLink 5 error workflow (XIDs 144–150): the subcode decides.
    WorkflowNvlink5Err,
    /// The driver's recovery action (XID 154) decides.
    Xid154,
    /// The catalog gives no bucket (unused code, or not yet assigned).
    NotApplicable,
}

impl ResolutionBucket {
    /// The bucket's name as NVIDIA's catalog prints it (e.g. `RESET_GPU`).
    pub fn as_str(self) -> &'static str {
        use ResolutionBucket::*;
        match self {
            Ignore => "IGNORE",
            RestartApp => "RESTART_APP",
            ResetGpu => "RESET_GPU",
            RestartBm => "RESTART_BM",
            RestartVm => "RESTART_VM",
            RestartFm => "RESTART_FM",
            CheckMechanicals => "CHECK_MECHANICALS",
            UpdateSwfw => "UPDATE_SWFW",
            ContactSupport => "CONTACT_SUPPORT",
            CheckAppCuda => "CHECK_APP/CUDA",
            InvestigateSw => "INVESTIGATE_SW",
            InvestigateSwUser => "INVESTIGATE_SW_USER",
            InvestigateLinkSi => "INVESTIGATE_LINK_SI",
            CheckUvm => "CHECK_UVM",
            SympatheticReportSolo => "SYMPATHETIC_REPORT_SOLO",
            IgnoreSympathetic => "IGNORE (sympathetic)",
            Xid137Flow => "XID_137_FLOW",
            WorkflowXid13 => "WORKFLOW_XID_13",
            WorkflowXid31 => "WORKFLOW_XID_31",
            WorkflowXid45 => "WORKFLOW_XID_45",
            SoloRestartFm => "Solo: RESTART_FM; Not solo: IGNORE (follow the other XID)",
            WorkflowXid48 => "WORKFLOW_XID_48",
            WorkflowNvlinkErr => "WORKFLOW_NVLINK_ERR",
            WorkflowNvlink5Err => "WORKFLOW_NVLINK5_ERR",
            Xid154 => "XID_154",
            NotApplicable => "N/A",
        }
    }
}

impl Serialize for ResolutionBucket {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for ResolutionBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the fault most likely sits: our summary of NVIDIA's trigger text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum XidClass {
    /// The user application faulted; the GPU stays usable.
    Application,
    /// The driver, GSP or other firmware faulted.
    DriverFirmware,
    /// GPU memory: ECC, row remapping, page retirement.
    GpuMemory,
    /// The PCIe bus or the GPU's attachment to it.
    PcieBus,
    /// NVLink, NVSwitch, C2C or the fabric.
    NvlinkFabric,
    /// Informational: records an event, or reports on another XID.
    Informational,
}

impl XidClass {
    /// Human-readable name, e.g. "GPU memory".
    pub fn label(self) -> &'static str {
        match self {
            XidClass::Application => "application",
            XidClass::DriverFirmware => "driver/firmware",
            XidClass::GpuMemory => "GPU memory",
            XidClass::PcieBus => "PCIe bus",
            XidClass::NvlinkFabric => "NVLink/fabric",
            XidClass::Informational => "informational",
        }
    }
}

/// How urgent an XID is on its own, derived from NVIDIA's immediate action ([`Severity::of_immediate_action`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Nothing to do (IGNORE, informational).
    Info,
    /// The application must restart; the GPU stays usable (RESTART_APP and its workflows).
    Warning,
    /// The GPU or node needs a reset, reboot or vendor attention.
    Critical,
}

impl Severity {
    /// The severity NVIDIA's immediate action implies: nothing to do is `Info`, restarting the application is
    /// `Warning`, anything that needs the GPU reset, the node rebooted or a vendor is `Critical`. NVLink 5
    /// errors (144–150) depend on their subcode and count as `Warning` until it is parsed.
    pub const fn of_immediate_action(action: ResolutionBucket) -> Severity {
        use ResolutionBucket::*;
        match action {
            Ignore | IgnoreSympathetic | WorkflowXid45 | SoloRestartFm | Xid154 => Severity::Info,
            RestartApp
            | WorkflowXid13
            | WorkflowXid31
            | WorkflowNvlink5Err
            | CheckAppCuda
            | NotApplicable
            | SympatheticReportSolo
            | Xid137Flow
            | CheckUvm
            | InvestigateSwUser => Severity::Warning,
            ResetGpu | RestartBm | RestartVm | RestartFm | CheckMechanicals | UpdateSwfw | ContactSupport
            | InvestigateSw | InvestigateLinkSi | WorkflowXid48 | WorkflowNvlinkErr => Severity::Critical,
        }
    }

    /// Lower-case name used in APIs and tool arguments (`info`, `warning`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GPU families the catalog lists a code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliesTo {
    /// Ampere data-center GPUs (A100).
    pub a100: bool,
    /// Hopper (H100).
    pub h100: bool,
    /// Blackwell (B100).
    pub b100: bool,
    /// Grace Blackwell (GB200).
    pub gb200: bool,
}

impl AppliesTo {
    /// Every family in the catalog.
    pub const ALL: AppliesTo = AppliesTo { a100: true, h100: true, b100: true, gb200: true };
    /// None: the catalog marks the code unused on Ampere and newer.
    pub const NONE: AppliesTo = AppliesTo { a100: false, h100: false, b100: false, gb200: false };
}

/// One row of the XID catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct XidInfo {
    /// The XID number.
    pub code: u32,
    /// NVIDIA's mnemonic, e.g. `GPU_HAS_FALLEN_OFF_THE_BUS`.
    pub mnemonic: &'static str,
    /// NVIDIA's short description, e.g. "GPU has fallen off the bus".
    pub description: &'static str,
    /// GPU families the catalog lists it for.
    pub applies_to: AppliesTo,
    /// NVIDIA's immediate action.
    pub immediate_action: ResolutionBucket,
    /// NVIDIA's investigatory action (what to look at next).
    pub investigatory_action: ResolutionBucket,
    /// Where the fault most likely sits.
    pub class: XidClass,
    /// How urgent it is on its own.
    pub severity: Severity,
    /// What an SRE should do, in one or two sentences (from NVIDIA's trigger text and buckets).
    pub recommended_action: &'static str,
    /// Driver release from which XID 154 accompanies this code, when the catalog says so.
    pub xid154_linkage: Option<&'static str>,
    /// Where NVIDIA's Kubernetes device plugin treats the code differently from the catalog.
    pub device_plugin_note: Option<&'static str>,
    /// False for a code the catalog does not know: the entry is a placeholder.
    pub known: bool,
}

/// The catalog entry for `code`; a code the catalog does not list gets an "unknown XID" entry (never a panic).
pub fn lookup(code: u32) -> XidInfo {
    catalog::CATALOG
        .binary_search_by_key(&code, |row| row.code)
        .ok()
        .and_then(|i| catalog::CATALOG.get(i).copied())
        .unwrap_or_else(|| unknown(code))
}

/// Every row of the catalog, ordered by code.
pub fn catalog() -> &'static [XidInfo] {
    catalog::CATALOG
}

fn unknown(code: u32) -> XidInfo {
    XidInfo {
        code,
        mnemonic: "UNKNOWN",
        description: "Unknown XID: not in the catalog this build follows",
        applies_to: AppliesTo::NONE,
        immediate_action: ResolutionBucket::NotApplicable,
        investigatory_action: ResolutionBucket::ContactSupport,
        class: XidClass::Informational,
        severity: Severity::Warning,
        recommended_action: "Look the code up in NVIDIA's current XID catalog (docs.nvidia.com/deploy/xid-errors); \
                             a newer driver may have added it. Watch whether it repeats.",
        xid154_linkage: None,
        device_plugin_note: None,
        known: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_by_code_without_duplicates() {
        let codes: Vec<u32> = catalog().iter().map(|r| r.code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted, "lookup binary-searches the catalog: keep it sorted and unique");
    }

    #[test]
    fn catalog_covers_the_codes_the_system_relies_on() {
        let required = [
            8, 13, 31, 32, 43, 45, 46, 48, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 109, 110, 119, 120, 121, 136, 137,
            140, 143, 144, 145, 146, 147, 148, 149, 150, 151, 154, 155, 156, 157, 158,
        ];
        for code in required {
            let row = lookup(code);
            assert!(row.known, "XID {code} missing from the catalog");
            assert_eq!(row.code, code);
            assert!(!row.mnemonic.is_empty() && !row.description.is_empty(), "XID {code} lacks text");
            assert!(!row.recommended_action.is_empty(), "XID {code} lacks a recommended action");
        }
    }

    #[test]
    fn unknown_code_gets_a_placeholder_not_a_panic() {
        let row = lookup(9_999);
        assert!(!row.known);
        assert_eq!(row.code, 9_999);
        assert_eq!(row.mnemonic, "UNKNOWN");
        assert_eq!(lookup(u32::MAX).code, u32::MAX);
    }

    #[test]
    fn catalog_follows_nvidia_not_folklore() {
        // 63 is a *recorded* remap (informational), 64 the failure to record one.
        assert_eq!(lookup(63).immediate_action, ResolutionBucket::Ignore);
        assert_eq!(lookup(64).immediate_action, ResolutionBucket::ResetGpu);
        assert_eq!(lookup(64).class, XidClass::GpuMemory);
        // 94 is contained: only the application restarts. 95 is not.
        assert_eq!(lookup(94).immediate_action, ResolutionBucket::RestartApp);
        assert_eq!(lookup(95).immediate_action, ResolutionBucket::ResetGpu);
        // 31 is an MMU fault, usually the application.
        assert_eq!(lookup(31).class, XidClass::Application);
        // 79 needs a node reboot; it is a bus problem.
        assert_eq!(lookup(79).immediate_action, ResolutionBucket::RestartBm);
        assert_eq!(lookup(79).class, XidClass::PcieBus);
        assert_eq!(lookup(79).severity, Severity::Critical);
        // The device plugin ignores 109; the catalog says reset the GPU. We record the disagreement.
        assert_eq!(lookup(109).immediate_action, ResolutionBucket::ResetGpu);
        assert!(lookup(109).device_plugin_note.is_some());
        assert_eq!(lookup(154).immediate_action, ResolutionBucket::Xid154);
        assert_eq!(lookup(45).immediate_action, ResolutionBucket::WorkflowXid45);
    }

    #[test]
    fn every_bucket_is_printed_and_serialized_as_nvidia_spells_it() {
        let spelled = |b: ResolutionBucket| (b.as_str(), serde_json::to_value(b).ok());
        for (bucket, nvidia) in [
            (ResolutionBucket::WorkflowXid13, "WORKFLOW_XID_13"),
            (ResolutionBucket::Xid154, "XID_154"),
            (ResolutionBucket::NotApplicable, "N/A"),
            (ResolutionBucket::CheckAppCuda, "CHECK_APP/CUDA"),
            (ResolutionBucket::IgnoreSympathetic, "IGNORE (sympathetic)"),
            (ResolutionBucket::WorkflowNvlink5Err, "WORKFLOW_NVLINK5_ERR"),
        ] {
            assert_eq!(spelled(bucket), (nvidia, Some(serde_json::Value::from(nvidia))));
        }
        // XID 45's investigatory cell whole, not cut to one of its halves.
        assert_eq!(
            lookup(45).investigatory_action.as_str(),
            "Solo: RESTART_FM; Not solo: IGNORE (follow the other XID)"
        );
        let row = serde_json::to_value(lookup(13)).expect("json");
        assert_eq!(row["immediateAction"], "RESTART_APP");
        assert_eq!(row["investigatoryAction"], "WORKFLOW_XID_13");
    }

    #[test]
    fn severity_follows_the_immediate_action() {
        for row in catalog() {
            assert_eq!(row.severity, Severity::of_immediate_action(row.immediate_action), "XID {}", row.code);
        }
        assert_eq!(lookup(13).severity, Severity::Warning);
        assert_eq!(lookup(43).severity, Severity::Info);
        assert_eq!(lookup(48).severity, Severity::Critical);
        assert_eq!(lookup(74).severity, Severity::Critical);
    }
}
