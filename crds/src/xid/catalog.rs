//! NVIDIA's XID catalog, row by row.
//!
//! The rows follow NVIDIA's page "Analyzing Xid Errors with the Xid Catalog" ([`CATALOG_SOURCE`]), the catalog for
//! Ampere and newer GPUs, as read on 2026-11-25. The page prints no revision or date ([`CATALOG_REVISION`]). It has
//! one row for every code from 1 to 172, including the codes it marks "Unused" on A100 and newer (most of what
//! Volta and older GPUs used), so every row here comes from that page and none from the archive catalog. The rows
//! were read from a stored text copy of the page whose opening rows match NVIDIA's page as published.
//!
//! What is NVIDIA's and what is ours:
//! - NVIDIA's, copied as printed: code, mnemonic, description, the A100 / H100 / B100 / GB200 columns, both
//!   resolution buckets and the "Xid 154 linkage" text.
//! - Ours: `class` (where the fault most likely sits, from the mnemonic and NVIDIA's trigger text),
//!   `recommended_action` (NVIDIA's buckets and trigger text in one or two sentences) and `device_plugin_note`.
//!   `severity` is never written by hand: [`row`] derives it from NVIDIA's immediate action with
//!   [`Severity::of_immediate_action`].
//! - Cells that name no single [`ResolutionBucket`]: 45's investigatory "Solo: RESTART_FM Not Solo: IGNORE
//!   (follow other Xid)" is `SoloRestartFm`, printed whole; 154's "N/A Informational only regarding another Xid",
//!   the unused codes' "N/A; Unused" and blank cells (142, 162–172) are `NotApplicable`.
//! - For 144–150 the page's second table decodes the subcode and error status into IGNORE, RESET_GPU or
//!   "follow XID 154"; the row keeps NVIDIA's `WORKFLOW_NVLINK5_ERR` and the action says what the decode decides.

use super::ResolutionBucket::*;
use super::XidClass::*;
use super::{AppliesTo, ResolutionBucket, Severity, XidClass, XidInfo};

/// The catalog revision the rows follow.
pub const CATALOG_REVISION: &str =
    "NVIDIA Xid catalog page as read 2026-11-25 (no revision printed; 172 rows, codes 1-172)";
/// Where the rows come from.
pub const CATALOG_SOURCE: &str = "https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html";

// The "Applies to" column combinations the page uses.
const ALL: AppliesTo = AppliesTo::ALL;
const NONE: AppliesTo = AppliesTo::NONE;
const A100_ONLY: AppliesTo = AppliesTo { a100: true, h100: false, b100: false, gb200: false };
const H100_ONLY: AppliesTo = AppliesTo { a100: false, h100: true, b100: false, gb200: false };
const GB200_ONLY: AppliesTo = AppliesTo { a100: false, h100: false, b100: false, gb200: true };
const A100_H100: AppliesTo = AppliesTo { a100: true, h100: true, b100: false, gb200: false };
const A100_TO_B100: AppliesTo = AppliesTo { a100: true, h100: true, b100: true, gb200: false };
const H100_ON: AppliesTo = AppliesTo { a100: false, h100: true, b100: true, gb200: true };
const BLACKWELL: AppliesTo = AppliesTo { a100: false, h100: false, b100: true, gb200: true };

// The "Xid 154 linkage" texts, as the page prints them.
const R565: &str = "CUDA 12.7; GPU driver R565";
const R570: &str = "CUDA 12.7; GPU driver R570";
const R575: &str = "CUDA 12.9; GPU driver R575";
const AT_INTRODUCTION: &str = "yes; support with Xid introduction";

// Actions shared by several rows with the same buckets.
const UNUSED_ACTION: &str = "NVIDIA lists this code as unused on A100 and newer, so seeing it is abnormal. Collect \
                             nvidia-bug-report and contact NVIDIA support.";
const ENGINE_ACTION: &str = "Restart the application that used the engine; the GPU stays usable. If it repeats on the \
                             same GPU, collect nvidia-bug-report and contact NVIDIA support.";
const PUSH_BUFFER_ACTION: &str = "Restart the application; the GPU stays usable. If it repeats, check the application \
                                  and its CUDA version: it likely passed bad data or used methods wrongly (the log \
                                  line may carry its pid).";
const IGNORE_CONTACT_ACTION: &str = "No action needed; the GPU stays usable. If it repeats, collect nvidia-bug-report \
                                     and contact NVIDIA support.";
const GSP_ACTION: &str = "Drain the GPU and reset it; the GSP firmware failed or stopped answering. If it persists, \
                          power-cycle the node and follow NVIDIA's GPU debug guidelines.";
const NO_BUCKET_YET_ACTION: &str = "The catalog gives no recovery step yet; follow the recovery action XID 154 \
                                    reports, if any. If it repeats, collect nvidia-bug-report and contact NVIDIA \
                                    support.";

/// One row: NVIDIA's columns, then our class and recommended action. Severity follows the immediate action.
#[allow(clippy::too_many_arguments)]
const fn row(
    code: u32,
    mnemonic: &'static str,
    description: &'static str,
    applies_to: AppliesTo,
    immediate_action: ResolutionBucket,
    investigatory_action: ResolutionBucket,
    class: XidClass,
    recommended_action: &'static str,
) -> XidInfo {
    XidInfo {
        code,
        mnemonic,
        description,
        applies_to,
        immediate_action,
        investigatory_action,
        class,
        severity: Severity::of_immediate_action(immediate_action),
        recommended_action,
        xid154_linkage: None,
        device_plugin_note: None,
        known: true,
    }
}

/// A code the page marks "Unused" and applicable to none of A100 / H100 / B100 / GB200: CONTACT_SUPPORT, "N/A;
/// Unused".
const fn unused(code: u32, mnemonic: &'static str, class: XidClass) -> XidInfo {
    row(code, mnemonic, "Unused", NONE, ContactSupport, NotApplicable, class, UNUSED_ACTION)
}

/// An engine exception (copy engine, NVDEC, NVJPG, OFA) the page buckets as RESTART_APP / CONTACT_SUPPORT.
const fn engine(code: u32, mnemonic: &'static str, description: &'static str, applies_to: AppliesTo) -> XidInfo {
    row(code, mnemonic, description, applies_to, RestartApp, ContactSupport, Application, ENGINE_ACTION)
}

/// An NVLink 5 error (144–150): both buckets are WORKFLOW_NVLINK5_ERR, on B100 and GB200, linked to XID 154 from
/// R565.
const fn nvlink5(code: u32, mnemonic: &'static str, description: &'static str, action: &'static str) -> XidInfo {
    row(code, mnemonic, description, BLACKWELL, WorkflowNvlink5Err, WorkflowNvlink5Err, NvlinkFabric, action)
        .linkage(R565)
}

impl XidInfo {
    /// Records the catalog's "Xid 154 linkage" cell.
    const fn linkage(self, linkage: &'static str) -> XidInfo {
        XidInfo { xid154_linkage: Some(linkage), ..self }
    }

    /// Records where NVIDIA's k8s-device-plugin treats the code differently from the catalog.
    const fn device_plugin(self, note: &'static str) -> XidInfo {
        XidInfo { device_plugin_note: Some(note), ..self }
    }
}

/// Every row of the catalog, sorted by code (the lookup binary-searches it).
#[rustfmt::skip]
pub(super) static CATALOG: &[XidInfo] = &[
    unused(1, "ROBUST_CHANNEL_FIFO_ERROR_FIFO_METHOD", Application),
    unused(2, "ROBUST_CHANNEL_FIFO_ERROR_SW_METHOD", Application),
    unused(3, "ROBUST_CHANNEL_FIFO_ERROR_UNK_METHOD", Application),
    unused(4, "ROBUST_CHANNEL_FIFO_ERROR_CHANNEL_BUSY", Application),
    unused(5, "ROBUST_CHANNEL_FIFO_ERROR_RUNOUT_OVERFLOW", Application),
    unused(6, "ROBUST_CHANNEL_FIFO_ERROR_PARSE_ERR", Application),
    unused(7, "ROBUST_CHANNEL_FIFO_ERROR_PTE_ERR", Application),
    row(8, "ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT", "GPU stopped processing", ALL,
        RestartApp, ContactSupport, DriverFirmware,
        "Restart the application; the GPU stopped processing its work but stays usable. If it repeats on the same \
         GPU, collect nvidia-bug-report and contact NVIDIA support."),
    unused(9, "ROBUST_CHANNEL_GR_ERROR_INSTANCE", Application),
    unused(10, "ROBUST_CHANNEL_GR_ERROR_SINGLE_STEP", Application),
    row(11, "ROBUST_CHANNEL_GR_ERROR_MISSING_HW", "Invalid or corrupted push buffer stream", ALL,
        RestartApp, CheckAppCuda, Application, PUSH_BUFFER_ACTION),
    unused(12, "ROBUST_CHANNEL_GR_ERROR_SW_METHOD", Application),
    row(13, "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY", "Graphics Engine Exception", ALL,
        RestartApp, WorkflowXid13, Application,
        "Restart the application; XID 13 is usually its own out-of-bounds access or illegal instruction, so debug it \
         with compute-sanitizer memcheck or cuda-gdb. If it repeats on the same GPC and TPC across applications, run \
         DCGM diagnostics and then field diagnostics."),
    // Described as "Unused", yet the page marks it for all four GPUs; the trigger text says it is injected.
    row(14, "ROBUST_CHANNEL_FAKE_ERROR", "Unused", ALL,
        Ignore, ContactSupport, Informational,
        "Nothing to do: the error was faked or injected from userspace, e.g. by a test. Find out who injected it if \
         nobody meant to."),
    unused(15, "ROBUST_CHANNEL_SCANLINE_TIMEOUT", DriverFirmware),
    // The page prints CONTACT_SUPPORT in both bucket columns of this row.
    row(16, "ROBUST_CHANNEL_VBLANK_CALLBACK_TIMEOUT", "Unused", NONE,
        ContactSupport, ContactSupport, DriverFirmware, UNUSED_ACTION),
    unused(17, "ROBUST_CHANNEL_PARAMETER_ERROR", Application),
    unused(18, "ROBUST_CHANNEL_BUS_MASTER_TIMEOUT_ERROR", PcieBus),
    unused(19, "ROBUST_CHANNEL_DISP_MISSED_NOTIFIER", DriverFirmware),
    unused(20, "ROBUST_CHANNEL_MPEG_ERROR_SW_METHOD", Application),
    unused(21, "ROBUST_CHANNEL_ME_ERROR_SW_METHOD", Application),
    unused(22, "ROBUST_CHANNEL_VP_ERROR_SW_METHOD", Application),
    unused(23, "ROBUST_CHANNEL_RC_LOGGING_ENABLED", Informational),
    unused(24, "ROBUST_CHANNEL_GR_SEMAPHORE_TIMEOUT", Application),
    row(25, "ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY", "Invalid or illegal push buffer stream", ALL,
        RestartApp, CheckAppCuda, Application, PUSH_BUFFER_ACTION),
    unused(26, "ROBUST_CHANNEL_FIFO_ERROR_FBISTATE_TIMEOUT", DriverFirmware),
    unused(27, "ROBUST_CHANNEL_VP_ERROR", Application),
    unused(28, "ROBUST_CHANNEL_VP2_ERROR", Application),
    unused(29, "ROBUST_CHANNEL_BSP_ERROR", Application),
    unused(30, "ROBUST_CHANNEL_BAD_ADDR_ACCESS", Application),
    row(31, "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "GPU memory page fault", ALL,
        RestartApp, WorkflowXid31, Application,
        "Restart the application; an MMU fault is usually an illegal address access in its code, so debug it with \
         compute-sanitizer memcheck or cuda-gdb. If faults repeat on the same GPU across applications, run DCGM \
         diagnostics and then field diagnostics."),
    row(32, "ROBUST_CHANNEL_PBDMA_ERROR", "Invalid or corrupted push buffer stream", ALL,
        RestartApp, CheckAppCuda, PcieBus,
        "Restart the application. If it repeats, check the PCIe link first (NVIDIA attributes this mostly to PCIe \
         quality, not the application), then the application and its CUDA version."),
    unused(33, "ROBUST_CHANNEL_SEC_ERROR", Application),
    unused(34, "ROBUST_CHANNEL_MSVLD_ERROR", Application),
    unused(35, "ROBUST_CHANNEL_MSPDEC_ERROR", Application),
    unused(36, "ROBUST_CHANNEL_MSPPP_ERROR", Application),
    row(37, "ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD", "Driver firmware error", ALL,
        Ignore, CheckAppCuda, DriverFirmware,
        "No action needed; the GPU stays usable. If it repeats, check the application and its CUDA version for \
         methods the firmware does not implement."),
    row(38, "ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT", "Driver firmware error", ALL,
        Ignore, ContactSupport, DriverFirmware, IGNORE_CONTACT_ACTION),
    engine(39, "ROBUST_CHANNEL_CE0_ERROR", "Copy Engine Exception", ALL),
    engine(40, "ROBUST_CHANNEL_CE1_ERROR", "Copy Engine Exception", ALL),
    engine(41, "ROBUST_CHANNEL_CE2_ERROR", "Copy Engine Exception", ALL),
    unused(42, "ROBUST_CHANNEL_VIC_ERROR", Application),
    row(43, "ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR", "GPU stopped processing", ALL,
        Ignore, ContactSupport, Application,
        "No action needed: the application hit a software-induced fault and was terminated, and the GPU stays \
         healthy. Look at the application if it keeps happening."),
    row(44, "ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW", "Graphics Engine fault during context switch", ALL,
        Ignore, ContactSupport, Application, IGNORE_CONTACT_ACTION),
    row(45, "ROBUST_CHANNEL_PREEMPTIVE_REMOVAL",
        "Preemptive cleanup, due to previous errors – Most likely to see when running multiple cuda applications \
         and hitting a DBE", ALL,
        WorkflowXid45, SoloRestartFm, Informational,
        "Nothing to do on its own: the driver tore down an application that was aborted (Ctrl-C, kill, GPU reset) or \
         hit by another XID, so follow that XID. If it appears alone and repeats, restart Fabric Manager."),
    row(46, "ROBUST_CHANNEL_GPU_TIMEOUT_ERROR", "GPU stopped processing", ALL,
        ResetGpu, ContactSupport, DriverFirmware,
        "Drain the GPU and reset it (nvidia-smi -r); it stopped processing. If it recurs after the reset, collect \
         nvidia-bug-report and contact NVIDIA support."),
    unused(47, "ROBUST_CHANNEL_NVENC0_ERROR", Application),
    row(48, "ROBUST_CHANNEL_GPU_ECC_DBE", "Double Bit ECC Error", ALL,
        WorkflowXid48, WorkflowXid48, GpuMemory,
        "Drain the GPU and reset it to clear the uncorrectable ECC error (drain and reset when XID 63 or 64 \
         accompany it). For framebuffer errors follow XID 63/64; for SRAM errors run field diagnostics if the SRAM \
         threshold flag is set.")
        .linkage(R565),
    unused(49, "SILENT_RUNNING_CONSTANT_LEVEL_SET_BY_REGISTRY", DriverFirmware),
    unused(50, "SILENT_RUNNING_LEVEL_TRANSITION_DUE_TO_RC_ERROR", DriverFirmware),
    unused(51, "SILENT_RUNNING_STRESS_TEST_FAILURE", DriverFirmware),
    unused(52, "SILENT_RUNNING_LEVEL_TRANS_DUE_TO_TEMP_RISE", DriverFirmware),
    unused(53, "SILENT_RUNNING_TEMP_REDUCED_CLOCKING", DriverFirmware),
    row(54, "SILENT_RUNNING_PWR_REDUCED_CLOCKING", "Auxiliary power is not connected to the GPU board", A100_TO_B100,
        CheckMechanicals, ContactSupport, PcieBus,
        "Check that the board's auxiliary power cables are connected and the GPU is seated securely. If it persists, \
         contact NVIDIA support."),
    unused(55, "SILENT_RUNNING_TEMPERATURE_READ_ERROR", DriverFirmware),
    unused(56, "DISPLAY_CHANNEL_EXCEPTION", DriverFirmware),
    unused(57, "FB_LINK_TRAINING_FAILURE_ERROR", GpuMemory),
    unused(58, "FB_MEMORY_ERROR", GpuMemory),
    unused(59, "PMU_ERROR", DriverFirmware),
    row(60, "ROBUST_CHANNEL_SEC2_ERROR", "Video processor exception", ALL,
        RestartApp, InvestigateSw, DriverFirmware,
        "Restart the application. If it repeats, investigate the user and NVIDIA software involved (the log line may \
         carry the pid)."),
    unused(61, "PMU_BREAKPOINT", DriverFirmware),
    row(62, "PMU_HALT_ERROR", "Internal micro-controller halt (newer drivers)", ALL,
        ResetGpu, ContactSupport, DriverFirmware,
        "Drain the GPU and reset it; an internal micro-controller halted. If it recurs, collect nvidia-bug-report \
         and contact NVIDIA support.")
        .linkage(R565),
    row(63, "INFOROM_DRAM_RETIREMENT_EVENT", "GPU memory remapping event", ALL,
        Ignore, Ignore, GpuMemory,
        "Nothing to do now: a row remap (page retirement on older GPUs) was recorded and takes effect at the next GPU \
         reset. Reset the GPU when convenient and watch for XID 64.")
        .linkage(R565),
    row(64, "INFOROM_DRAM_RETIREMENT_FAILURE", "GPU memory remapping failure", ALL,
        ResetGpu, ContactSupport, GpuMemory,
        "Drain the GPU and reset it; the memory row remap or page retirement could not be recorded. If it recurs, \
         contact NVIDIA support about replacing the GPU.")
        .linkage(R565),
    unused(65, "ROBUST_CHANNEL_NVENC1_ERROR", Application),
    row(66, "ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION", "Illegal access by driver", ALL,
        Ignore, InvestigateSw, DriverFirmware,
        "No action needed; the GPU stays usable. If it repeats, investigate the user and NVIDIA software behind the \
         illegal access."),
    row(67, "ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION", "Illegal access by driver", ALL,
        Ignore, ContactSupport, DriverFirmware, IGNORE_CONTACT_ACTION),
    engine(68, "ROBUST_CHANNEL_NVDEC0_ERROR", "NVDEC0 Exception", ALL),
    row(69, "ROBUST_CHANNEL_GR_CLASS_ERROR", "Graphics Engine class error", ALL,
        RestartApp, CheckAppCuda, Application,
        "Restart the application; the graphics engine rejected its class or method. If it repeats, check the \
         application and its CUDA version."),
    engine(70, "ROBUST_CHANNEL_CE3_ERROR", "CE3: Unknown Error", ALL),
    engine(71, "ROBUST_CHANNEL_CE4_ERROR", "CE4: Unknown Error", ALL),
    engine(72, "ROBUST_CHANNEL_CE5_ERROR", "CE5: Unknown Error", ALL),
    unused(73, "ROBUST_CHANNEL_NVENC2_ERROR", Application),
    row(74, "NVLINK_ERROR", "NVLINK Error", A100_H100,
        WorkflowNvlinkErr, ContactSupport, NvlinkFabric,
        "Drain the GPU and reset it (or reboot the node) to clear the NVLink error, and decode its register fields \
         per NVIDIA's NVLink workflow. The fault may sit at the other end of the link; if resets do not clear it, \
         check the link connections and contact support.")
        .linkage(R565),
    engine(75, "ROBUST_CHANNEL_CE6_ERROR", "CE6: Unknown Error", ALL),
    engine(76, "ROBUST_CHANNEL_CE7_ERROR", "CE7: Unknown Error", ALL),
    engine(77, "ROBUST_CHANNEL_CE8_ERROR", "CE8: Unknown Error", ALL),
    row(78, "VGPU_START_ERROR", "vGPU Start Error", ALL,
        UpdateSwfw, UpdateSwfw, DriverFirmware,
        "Update the host and guest drivers and firmware: the vGPU cannot start because the guest driver is \
         incompatible with the host or the vGPU type is unsupported. The vGPU stays unusable until that is fixed."),
    row(79, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS", "GPU has fallen off the bus", ALL,
        RestartBm, ContactSupport, PcieBus,
        "Drain the node and reboot it; the GPU is not reachable over PCIe. If it recurs, check the system event and \
         kernel PCI logs, the PCIe slot, risers and power, and open an RMA case.")
        .linkage(R565),
    row(80, "PBDMA_PUSHBUFFER_CRC_MISMATCH", "Corrupted data sent to GPU", A100_H100,
        RestartApp, CheckAppCuda, PcieBus,
        "Restart the application. If it repeats, check the application and its CUDA version, then the PCIe path and \
         system memory that carried the corrupted data."),
    unused(81, "ROBUST_CHANNEL_VGA_SUBSYSTEM_ERROR", DriverFirmware),
    engine(82, "ROBUST_CHANNEL_NVJPG0_ERROR", "NVJPG0 Error", ALL),
    engine(83, "ROBUST_CHANNEL_NVDEC1_ERROR", "NVDEC1 Error", ALL),
    engine(84, "ROBUST_CHANNEL_NVDEC2_ERROR", "NVDEC2 Error", ALL),
    engine(85, "ROBUST_CHANNEL_CE9_ERROR", "CE9: Unknown Error", ALL),
    engine(86, "ROBUST_CHANNEL_OFA0_ERROR", "OFA Exception", ALL),
    unused(87, "NVTELEMETRY_DRIVER_REPORT", Informational),
    engine(88, "ROBUST_CHANNEL_NVDEC3_ERROR", "NVDEC3 Error", ALL),
    engine(89, "ROBUST_CHANNEL_NVDEC4_ERROR", "NVDEC4 Error", ALL),
    unused(90, "LTC_ERROR", GpuMemory),
    unused(91, "RESERVED_XID", Informational),
    row(92, "EXCESSIVE_SBE_INTERRUPTS", "High single-bit ECC error rate", ALL,
        Ignore, ContactSupport, GpuMemory,
        "No immediate action; single-bit errors are corrected. If the rate stays high, watch the ECC and row-remap \
         counters and contact NVIDIA support."),
    row(93, "INFOROM_ERASE_LIMIT_EXCEEDED", "Non-fatal violation of provisioned InfoROM wear limit", A100_ONLY,
        Ignore, ContactSupport, DriverFirmware,
        "No action needed for running work: the InfoROM wear limit provisioned with nvflash was reached. Clear it \
         with nvflash --elsessionclear and contact NVIDIA support if that does not help."),
    row(94, "ROBUST_CHANNEL_CONTAINED_ERROR", "Contained memory error", ALL,
        RestartApp, IgnoreSympathetic, GpuMemory,
        "Restart only the application that hit the contained memory error; other applications are unaffected. Reset \
         the GPU when convenient (XID 45 accompanies this).")
        .linkage(R565)
        .device_plugin("NVIDIA's k8s-device-plugin marks the GPU unhealthy on XID 94, while the catalog contains it \
                        to one application (RESTART_APP) and the GPU stays usable."),
    row(95, "ROBUST_CHANNEL_UNCONTAINED_ERROR", "Uncontained memory error", ALL,
        ResetGpu, IgnoreSympathetic, GpuMemory,
        "Drain the GPU and reset it before restarting applications; the uncontained memory error affected more than \
         one. Handle any accompanying ECC XIDs first and contact NVIDIA support if it recurs.")
        .linkage(R565),
    engine(96, "ROBUST_CHANNEL_NVDEC5_ERROR", "NVDEC5 Error", H100_ON),
    engine(97, "ROBUST_CHANNEL_NVDEC6_ERROR", "NVDEC6 Error", H100_ON),
    engine(98, "ROBUST_CHANNEL_NVDEC7_ERROR", "NVDEC7 Error", H100_ON),
    engine(99, "ROBUST_CHANNEL_NVJPG1_ERROR", "NVJPG1 Error", H100_ON),
    engine(100, "ROBUST_CHANNEL_NVJPG2_ERROR", "NVJPG2 Error", H100_ON),
    engine(101, "ROBUST_CHANNEL_NVJPG3_ERROR", "NVJPG3 Error", H100_ON),
    engine(102, "ROBUST_CHANNEL_NVJPG4_ERROR", "NVJPG4 Error", H100_ON),
    engine(103, "ROBUST_CHANNEL_NVJPG5_ERROR", "NVJPG5 Error", H100_ON),
    engine(104, "ROBUST_CHANNEL_NVJPG6_ERROR", "NVJPG6 Error", H100_ON),
    engine(105, "ROBUST_CHANNEL_NVJPG7_ERROR", "NVJPG7 Error", H100_ON),
    row(106, "SMBPBI_TEST_MESSAGE", "SMBPBI Test Message", ALL,
        Ignore, Ignore, Informational,
        "Nothing to do: this is an SMBPBI (out-of-band management) test message."),
    row(107, "SMBPBI_TEST_MESSAGE_SILENT", "SMBPBI Test Message Silent", ALL,
        Ignore, Ignore, Informational,
        "Nothing to do: this is a silent SMBPBI (out-of-band management) test message."),
    // Described as "Unused", yet the page marks it for all four GPUs with the XID 137 flow.
    row(108, "NVLINK_REMOTE_TRANSLATION_ERROR", "Unused", ALL,
        Ignore, Xid137Flow, Application,
        "No action on the GPU; NVIDIA marks this code unused. If it appears, debug the application's NVLink \
         peer-to-peer accesses as for XID 137."),
    row(109, "ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR", "Context Switch Timeout Error", ALL,
        ResetGpu, ContactSupport, DriverFirmware,
        "Drain the GPU and reset it; a context switch timed out. If it recurs, collect nvidia-bug-report and contact \
         NVIDIA support.")
        .linkage(R570)
        .device_plugin("NVIDIA's k8s-device-plugin skips XID 109 as an application error (since 2025-02) and keeps \
                        the GPU allocatable, while the catalog says RESET_GPU."),
    row(110, "SEC_FAULT_ERROR", "Security Fault Error", H100_ON,
        ResetGpu, InvestigateSw, DriverFirmware,
        "Drain the GPU and reset it; a security fault is rare without a hardware failure. If it persists, revert \
         recent hardware changes, cold-reset the system and contact the hardware vendor.")
        .linkage(R565),
    unused(111, "BUNDLE_ERROR_EVENT", Application),
    unused(112, "DISP_SUPERVISOR_ERROR", DriverFirmware),
    unused(113, "DP_LT_FAILURE", DriverFirmware),
    unused(114, "HEAD_RG_UNDERFLOW", DriverFirmware),
    unused(115, "CORE_CHANNEL_REGS", DriverFirmware),
    unused(116, "WINDOW_CHANNEL_REGS", DriverFirmware),
    unused(117, "CURSOR_CHANNEL_REGS", DriverFirmware),
    unused(118, "HEAD_REGS", DriverFirmware),
    row(119, "GSP_RPC_TIMEOUT", "GSP RPC Timeout", ALL,
        ResetGpu, InvestigateSw, DriverFirmware, GSP_ACTION),
    row(120, "GSP_ERROR", "GSP Error", ALL,
        ResetGpu, InvestigateSw, DriverFirmware, GSP_ACTION)
        .linkage(R565),
    row(121, "C2C_ERROR", "C2C Error", GB200_ONLY,
        Ignore, ContactSupport, NvlinkFabric,
        "No immediate action: the C2C link to the Grace CPU saw corrected errors with no operational impact. Reset \
         the GPU at a service window to retrain the link; repeated reports may need a newer VBIOS."),
    unused(122, "SPI_PMU_RPC_READ_FAIL", DriverFirmware),
    unused(123, "SPI_PMU_RPC_WRITE_FAIL", DriverFirmware),
    unused(124, "SPI_PMU_RPC_ERASE_FAIL", DriverFirmware),
    unused(125, "INFOROM_FS_ERROR", DriverFirmware),
    engine(126, "ROBUST_CHANNEL_CE10_ERROR", "CE10: Unknown Error", BLACKWELL),
    engine(127, "ROBUST_CHANNEL_CE11_ERROR", "CE11: Unknown Error", BLACKWELL),
    engine(128, "ROBUST_CHANNEL_CE12_ERROR", "CE12: Unknown Error", BLACKWELL),
    engine(129, "ROBUST_CHANNEL_CE13_ERROR", "CE13: Unknown Error", BLACKWELL),
    engine(130, "ROBUST_CHANNEL_CE14_ERROR", "CE14: Unknown Error", BLACKWELL),
    engine(131, "ROBUST_CHANNEL_CE15_ERROR", "CE15: Unknown Error", BLACKWELL),
    engine(132, "ROBUST_CHANNEL_CE16_ERROR", "CE16: Unknown Error", BLACKWELL),
    engine(133, "ROBUST_CHANNEL_CE17_ERROR", "CE17: Unknown Error", BLACKWELL),
    engine(134, "ROBUST_CHANNEL_CE18_ERROR", "CE18: Unknown Error", BLACKWELL),
    engine(135, "ROBUST_CHANNEL_CE19_ERROR", "CE19: Unknown Error", BLACKWELL),
    row(136, "ALI_TRAINING_FAIL", "Link Training Failed", H100_ONLY,
        ResetGpu, InvestigateLinkSi, NvlinkFabric,
        "Drain the GPU and reset it; NVLink training failed. If it recurs, investigate the link's signal integrity \
         (cables, connectors, transceivers).")
        .linkage(R565),
    row(137, "NVLINK_PRIV_ERR", "NVLink Privilege Error", ALL,
        Ignore, Xid137Flow, Application,
        "No action on the GPU: an application made an illegal NVLink peer-to-peer access. Debug it with \
         compute-sanitizer memcheck or cuda-gdb and file a bug if that is inconclusive."),
    unused(138, "ROBUST_CHANNEL_DLA_ERROR", Application),
    engine(139, "ROBUST_CHANNEL_OFA1_ERROR", "OFA1 Error", BLACKWELL),
    row(140, "UNRECOVERABLE_ECC_ERROR_ESCAPE", "ECC Unrecovered Error", ALL,
        ResetGpu, ContactSupport, GpuMemory,
        "Drain the GPU and reset it; an uncorrectable memory error escaped page offlining and row remapping. If it \
         persists, contact the hardware vendor."),
    row(141, "ROBUST_CHANNEL_FAST_PATH_ERROR", "CUDA Fast Path Error", H100_ON,
        Ignore, ContactSupport, DriverFirmware, IGNORE_CONTACT_ACTION),
    // The page leaves the investigatory cell blank.
    row(142, "ROBUST_CHANNEL_NVENC3_ERROR", "NVENC3 Error", GB200_ONLY,
        ContactSupport, NotApplicable, Application,
        "Collect nvidia-bug-report and contact NVIDIA support; the catalog gives no other step for this encoder \
         error."),
    row(143, "GPU_INIT_ERROR", "GPU Initialization Error", H100_ON,
        ResetGpu, ContactSupport, DriverFirmware,
        "Drain the GPU and reset it; it failed to initialise. If it recurs, contact NVIDIA support.")
        .linkage(R575),
    nvlink5(144, "NVLINK_SAW_ERROR", "NVLINK: SAW Error",
        "Decode the error status with NVIDIA's XID 144-150 table: SAW_MVB statuses 0x2 and 0x10 are fatal (reset the \
         GPU, contact support), the others are non-fatal (ignore; some lead to XID 48 or 94)."),
    nvlink5(145, "NVLINK_RLW_ERROR", "NVLINK: RLW Error",
        "Decode the subcode and error status with NVIDIA's XID 144-150 table: fatal statuses need a GPU reset and a \
         support case, RLW_REMAP and RLW_SRC_TRACK ones follow XID 154 (else restart the application), the rest are \
         ignored."),
    nvlink5(146, "NVLINK_TLW_ERROR", "NVLINK: TLW Error",
        "Decode the error status with NVIDIA's XID 144-150 table: status 0x4 is fatal (reset the GPU, contact \
         support), 0x2 leads to XID 48 or poisoned data, the others can be ignored."),
    nvlink5(147, "NVLINK_TREX_ERROR", "NVLINK: TREX Error",
        "Ignore it: NVIDIA's XID 144-150 table lists TREX statuses as non-fatal. NVIDIA says it should not occur in \
         production, so contact support if it repeats."),
    nvlink5(148, "NVLINK_NVLPW_CTRL_ERROR", "NVLINK: NVLPW_CTRL Error",
        "Ignore it: NVIDIA's XID 144-150 table lists its only status as non-fatal. Contact support if it repeats."),
    nvlink5(149, "NVLINK_NETIR_ERROR", "NVLINK: NETIR Error",
        "Decode the subcode with NVIDIA's XID 144-150 table: a NETIR link-down is link-fatal, so drain and reset the \
         GPU, then investigate the link, cables or peer device as the table says. BER events are non-fatal (check \
         link signal integrity and cables)."),
    nvlink5(150, "NVLINK_MSE_ERROR", "NVLINK: MSE Error",
        "Drain the GPU and reset it: NVIDIA's XID 144-150 table lists MSE errors as fatal firmware faults. Contact \
         NVIDIA support if it recurs."),
    row(151, "ROBUST_CHANNEL_KEY_ROTATION_ERROR", "Key rotation Error", H100_ON,
        RestartVm, ContactSupport, DriverFirmware,
        "Restart the VM that owns the GPU; a confidential-computing key rotation failed. If it recurs, contact NVIDIA \
         support."),
    row(152, "ROBUST_CHANNEL_DLA_SMMU_ERROR", "DLA SMMU Error", NONE,
        Ignore, ContactSupport, Application, IGNORE_CONTACT_ACTION),
    row(153, "ROBUST_CHANNEL_DLA_TIMEOUT", "DLA timeout Error", NONE,
        Ignore, ContactSupport, DriverFirmware, IGNORE_CONTACT_ACTION),
    row(154, "GPU_RECOVERY_ACTION_CHANGED", "GPU Recovery Action Changed", ALL,
        ResolutionBucket::Xid154, NotApplicable, Informational,
        "Act on the recovery action it names (none, drain P2P, drain and reset, GPU reset, node reboot); it sums up \
         what the XIDs it accompanies need. Resolve those XIDs too."),
    row(155, "NVLINK_SW_DEFINED_ERROR", "NVLINK: SW Defined Error", BLACKWELL,
        ResetGpu, InvestigateSwUser, NvlinkFabric,
        "Reset the GPU; an NVLink was taken down on purpose (including to sleep). Find out which software or user did \
         it if nobody meant to.")
        .linkage(R565),
    row(156, "RESOURCE_RETIREMENT_EVENT", "Resource Retirement Event", H100_ON,
        ResetGpu, Ignore, GpuMemory,
        "Reset the GPU to apply the resource retirement that was recorded; nothing further to investigate.")
        .linkage(R565),
    row(157, "RESOURCE_RETIREMENT_FAILURE", "Resource Retirement Failure", H100_ON,
        Ignore, ContactSupport, GpuMemory,
        "Workloads may keep running, but no repair resources are left and the same XID may return. Contact NVIDIA \
         support."),
    row(158, "GPU_FATAL_TIMEOUT", "GPU Fatal Timeout", ALL,
        ResetGpu, ContactSupport, DriverFirmware,
        "Drain the GPU and reset it; the GPU hit a fatal timeout. If it recurs, contact NVIDIA support.")
        .linkage(AT_INTRODUCTION),
    row(159, "ROBUST_CHANNEL_CHI_NON_DATA_ERROR", "CHI Non-Data Error", BLACKWELL,
        CheckUvm, SympatheticReportSolo, NvlinkFabric,
        "If UVM or vGPU is in use, reset the GPU; otherwise ignore it. It accompanies other errors on C2C-connected \
         GPUs: fix those first and report it only if it appears alone.")
        .linkage(AT_INTRODUCTION),
    row(160, "CHANNEL_RETIREMENT_EVENT", "Channel Retirement Event", BLACKWELL,
        Ignore, InvestigateSw, DriverFirmware,
        "No immediate action; the driver retired a channel. If it repeats, investigate the user and NVIDIA \
         software.")
        .linkage(R575),
    row(161, "CHANNEL_RETIREMENT_FAILURE", "Channel Retirement Failure", BLACKWELL,
        Ignore, InvestigateSw, DriverFirmware,
        "No immediate action; the driver could not retire a channel. If it repeats, investigate the user and NVIDIA \
         software.")
        .linkage(R575),
    // 162-172: the page leaves both bucket cells blank; the actions come from its trigger text.
    row(162, "PSHC_REENGAGED", "Power Smoothing HW Circuitry capability reengaged", BLACKWELL,
        NotApplicable, NotApplicable, Informational,
        "Nothing to do: the power-smoothing hardware capability is available again."),
    row(163, "PSHC_DISENGAGED", "Power Smoothing HW Circuitry capability disengaged", BLACKWELL,
        NotApplicable, NotApplicable, Informational,
        "No GPU reset is needed. If power smoothing is wanted, resolve the thermal events; if it was disabled by a \
         timeout, reload the driver or reset the GPU."),
    row(164, "PSHC_LOW_LIFETIME", "Power Smoothing HW Circuitry low lifetime reached", BLACKWELL,
        NotApplicable, NotApplicable, Informational,
        "Monitor power swings and plan to replace the GPU if power smoothing is required; it will be disabled \
         soon. Decide whether the swings are acceptable."),
    row(165, "PSHC_ZERO_LIFETIME", "Power Smoothing HW Circuitry lifetime exhausted", BLACKWELL,
        NotApplicable, NotApplicable, Informational,
        "Power smoothing is disabled and power swings will occur: make sure the datacenter power can absorb them. \
         Replace the GPU if power smoothing is required."),
    row(166, "NVLINK_SECURE_CRYPTO_ERR",
        "CC traffic seen prior to link properly being configured for encrypted traffic", BLACKWELL,
        NotApplicable, NotApplicable, NvlinkFabric,
        "Confidential-computing mode only: encrypted NVLink traffic arrived before the link was set up for it. The \
         catalog gives no recovery step yet; contact NVIDIA support if it repeats."),
    row(167, "PCIE_FATAL_TIMEOUT", "PCIE_FATAL_TIMEOUT", H100_ON,
        NotApplicable, NotApplicable, PcieBus,
        "The catalog gives no recovery step yet; follow the recovery action XID 154 reports, if any. If it repeats, \
         check the PCIe link and contact NVIDIA support."),
    row(168, "REDUCED_GPU_MEMORY_CAPACITY", "Errors found in WPR (write protected region)", ALL,
        NotApplicable, NotApplicable, GpuMemory,
        "Enable ECC so row remapping can repair the memory, or retry the boot with a shifted write-protected region. \
         It should only occur with ECC disabled."),
    row(169, "SEC2_HALT_ERROR", "Internal micro-controller halt", H100_ON,
        NotApplicable, NotApplicable, DriverFirmware, NO_BUCKET_YET_ACTION),
    row(170, "NVLINK_SECURE_OTHER", "Interrupt seen in CC mode", BLACKWELL,
        NotApplicable, NotApplicable, NvlinkFabric,
        "Confidential-computing mode only: an NVLink security interrupt was raised. The catalog gives no recovery \
         step yet; contact NVIDIA support if it repeats."),
    row(171, "UNCORRECTABLE_DRAM_ERROR",
        "Additional to Xid 48 providing more details on particulars of fault to differentiate DRAM/SRAM", ALL,
        NotApplicable, NotApplicable, GpuMemory,
        "Handle it with the XID 48 it accompanies: the uncorrectable error hit DRAM, so follow the XID 63/64 \
         guidance."),
    row(172, "UNCORRECTABLE_SRAM_ERROR",
        "Additional to Xid 48 providing more details on particulars of fault to differentiate DRAM/SRAM", ALL,
        NotApplicable, NotApplicable, GpuMemory,
        "Handle it with the XID 48 it accompanies: the uncorrectable error hit SRAM, so run field diagnostics if the \
         SRAM error threshold flag is set."),
];

#[cfg(test)]
mod tests {
    use crate::xid::{AppliesTo, ResolutionBucket, Severity, XidClass, catalog, lookup};

    #[test]
    fn every_code_from_1_to_172_has_a_row() {
        let codes: Vec<u32> = catalog().iter().map(|r| r.code).collect();
        assert_eq!(codes, (1..=172).collect::<Vec<u32>>());
        assert!(catalog().iter().all(|r| r.known));
    }

    #[test]
    fn xid_63_is_a_recorded_remap_not_a_failure() {
        let event = lookup(63);
        assert_eq!(event.mnemonic, "INFOROM_DRAM_RETIREMENT_EVENT");
        assert_eq!(
            (event.immediate_action, event.investigatory_action),
            (ResolutionBucket::Ignore, ResolutionBucket::Ignore)
        );
        assert_eq!(event.severity, Severity::Info);
        let failure = lookup(64);
        assert_eq!(failure.mnemonic, "INFOROM_DRAM_RETIREMENT_FAILURE");
        assert_eq!(failure.investigatory_action, ResolutionBucket::ContactSupport);
        assert_eq!(failure.severity, Severity::Critical);
    }

    #[test]
    fn contained_94_restarts_the_app_and_uncontained_95_resets_the_gpu() {
        let contained = lookup(94);
        assert_eq!(contained.severity, Severity::Warning);
        assert_eq!(contained.investigatory_action, ResolutionBucket::IgnoreSympathetic);
        assert!(contained.device_plugin_note.is_some(), "the device plugin marks the GPU unhealthy on 94");
        let uncontained = lookup(95);
        assert_eq!(uncontained.severity, Severity::Critical);
        assert_eq!(uncontained.class, XidClass::GpuMemory);
    }

    #[test]
    fn only_the_device_plugin_disagreements_carry_a_note() {
        let noted: Vec<u32> = catalog().iter().filter(|r| r.device_plugin_note.is_some()).map(|r| r.code).collect();
        assert_eq!(noted, [94, 109]);
    }

    #[test]
    fn nvlink5_errors_apply_to_blackwell_only_and_wait_for_their_subcode() {
        let blackwell = AppliesTo { a100: false, h100: false, b100: true, gb200: true };
        for code in 144..=150 {
            let row = lookup(code);
            assert_eq!(row.applies_to, blackwell, "XID {code}");
            assert_eq!(row.immediate_action, ResolutionBucket::WorkflowNvlink5Err, "XID {code}");
            assert_eq!(row.investigatory_action, ResolutionBucket::WorkflowNvlink5Err, "XID {code}");
            assert_eq!(row.class, XidClass::NvlinkFabric, "XID {code}");
            assert_eq!(row.xid154_linkage, Some("CUDA 12.7; GPU driver R565"), "XID {code}");
        }
        assert_eq!(lookup(74).applies_to, AppliesTo { a100: true, h100: true, b100: false, gb200: false });
        assert_eq!(lookup(74).class, XidClass::NvlinkFabric);
    }

    #[test]
    fn xid_154_linkage_is_recorded_only_where_the_catalog_prints_it() {
        assert_eq!(lookup(48).xid154_linkage, Some("CUDA 12.7; GPU driver R565"));
        assert_eq!(lookup(109).xid154_linkage, Some("CUDA 12.7; GPU driver R570"));
        assert_eq!(lookup(143).xid154_linkage, Some("CUDA 12.9; GPU driver R575"));
        assert_eq!(lookup(158).xid154_linkage, Some("yes; support with Xid introduction"));
        assert_eq!(lookup(119).xid154_linkage, None);
        assert_eq!(lookup(154).xid154_linkage, None);
    }

    #[test]
    fn xid_154_is_informational_and_defers_to_the_recovery_action() {
        let row = lookup(154);
        assert_eq!(row.immediate_action, ResolutionBucket::Xid154);
        assert_eq!(row.investigatory_action, ResolutionBucket::NotApplicable);
        assert_eq!(row.class, XidClass::Informational);
        assert_eq!(row.severity, Severity::Info);
    }

    #[test]
    fn unused_codes_apply_to_no_gpu_and_ask_for_support() {
        let row = lookup(61);
        assert_eq!(row.mnemonic, "PMU_BREAKPOINT");
        assert_eq!(row.description, "Unused");
        assert_eq!(row.applies_to, AppliesTo::NONE);
        assert_eq!(row.immediate_action, ResolutionBucket::ContactSupport);
        assert_eq!(row.investigatory_action, ResolutionBucket::NotApplicable);
        let unused = catalog().iter().filter(|r| r.description == "Unused" && r.applies_to == AppliesTo::NONE);
        assert_eq!(unused.count(), 61);
    }

    #[test]
    fn fallen_off_the_bus_needs_a_node_reboot_and_is_a_pcie_fault() {
        let row = lookup(79);
        assert_eq!(row.mnemonic, "ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS");
        assert_eq!(row.applies_to, AppliesTo::ALL);
        assert_eq!(row.investigatory_action, ResolutionBucket::ContactSupport);
        assert_eq!(row.class, XidClass::PcieBus);
    }

    #[test]
    fn c2c_errors_are_corrected_and_seen_on_gb200_only() {
        let row = lookup(121);
        assert_eq!(row.applies_to, AppliesTo { a100: false, h100: false, b100: false, gb200: true });
        assert_eq!(row.immediate_action, ResolutionBucket::Ignore);
        assert_eq!(row.severity, Severity::Info);
    }

    #[test]
    fn the_newest_rows_have_no_bucket_yet() {
        for code in 162..=172 {
            let row = lookup(code);
            assert_eq!(row.immediate_action, ResolutionBucket::NotApplicable, "XID {code}");
            assert_eq!(row.investigatory_action, ResolutionBucket::NotApplicable, "XID {code}");
        }
        assert_eq!(lookup(160).immediate_action, ResolutionBucket::Ignore);
    }

    #[test]
    fn every_recommended_action_is_plain_text() {
        for row in catalog() {
            let action = row.recommended_action;
            assert!(action.ends_with('.'), "XID {}: {action}", row.code);
            assert!(!action.contains(['`', '*', '#', '[', '\n']), "XID {}: {action}", row.code);
            assert!(!action.contains("  "), "XID {}: a string continuation left double spaces", row.code);
        }
    }
}
