//! Findings from one GPU's NVML snapshot: memory (ECC, retired pages, row remapping) and thermal.
//!
//! These are the probe's current readings, not events: they hold while the probe reports them and clear when it
//! stops, so nothing here expires by time.

use gpuscope_crds::gpu_node_status::GpuInfo;
use gpuscope_crds::health::{Health, reason};
use gpuscope_crds::policy::EffectivePolicy;

use super::{Category, Finding};

/// Throttle reasons NVML reports for heat (HwSlowdown alone can also be a power brake, so it does not count).
const THERMAL_THROTTLE_REASONS: [&str; 2] = ["HwThermalSlowdown", "SwThermalSlowdown"];

/// Memory findings: uncorrected/corrected ECC, retired pages, row remapping.
pub(super) fn memory(gpu: &GpuInfo, policy: &EffectivePolicy) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(ecc) = &gpu.ecc {
        if let Some(n) = ecc.volatile_uncorrected
            && n > policy.ecc_uncorrected_unhealthy_above
        {
            out.push(finding(
                Health::Unhealthy,
                reason::UNCORRECTABLE_ECC,
                format!(
                    "{n} uncorrected ECC errors since the driver loaded (the policy allows {}). Drain the GPU and \
                     reset it (nvidia-smi -r); if uncorrected errors return after the reset, contact NVIDIA support.",
                    policy.ecc_uncorrected_unhealthy_above
                ),
            ));
        }
        if let (Some(n), Some(limit)) = (ecc.volatile_corrected, policy.ecc_corrected_degraded_above)
            && n > limit
        {
            out.push(finding(
                Health::Degraded,
                reason::CORRECTABLE_ECC,
                format!(
                    "{n} corrected ECC errors since the driver loaded (the policy allows {limit}): memory is wearing. \
                     Watch the row-remap and retired-page counters and plan a GPU reset."
                ),
            ));
        }
    }
    if let Some(pages) = &gpu.retired_pages {
        let total = pages.single_bit_ecc.saturating_add(pages.double_bit_ecc);
        let threshold = if total > policy.retired_pages_unhealthy_above {
            Some((Health::Unhealthy, policy.retired_pages_unhealthy_above))
        } else if total > policy.retired_pages_degraded_above {
            Some((Health::Degraded, policy.retired_pages_degraded_above))
        } else {
            None
        };
        if let Some((health, limit)) = threshold {
            out.push(finding(
                health,
                reason::RETIRED_PAGES,
                format!(
                    "{total} retired pages ({} single-bit, {} double-bit; the policy allows {limit} before {health}). \
                     Run DCGM diagnostics and contact NVIDIA support about replacing the GPU.",
                    pages.single_bit_ecc, pages.double_bit_ecc
                ),
            ));
        }
        if pages.pending
            && let Some(health) = policy.retired_pages_pending.health()
        {
            out.push(finding(
                health,
                reason::RETIRED_PAGES_PENDING,
                "A page retirement waits for the next driver reload or GPU reset: drain the GPU and reset it when \
                 convenient."
                    .into(),
            ));
        }
    }
    if let Some(rows) = &gpu.remapped_rows {
        if rows.failure
            && let Some(health) = policy.row_remap_failure.health()
        {
            out.push(finding(
                health,
                reason::ROW_REMAP_FAILURE,
                format!(
                    "Row remapping failed: no spare rows left ({} correctable, {} uncorrectable remaps). Drain the GPU \
                     and contact NVIDIA support about replacing it.",
                    rows.correctable, rows.uncorrectable
                ),
            ));
        }
        if rows.pending
            && let Some(health) = policy.row_remap_pending.health()
        {
            out.push(finding(
                health,
                reason::ROW_REMAP_PENDING,
                "A row remap waits for the next GPU reset: drain the GPU and reset it (nvidia-smi -r) when convenient."
                    .into(),
            ));
        }
    }
    out.into_iter().map(|f| Finding { category: Category::Memory, ..f }).collect()
}

/// Thermal findings: temperature thresholds and thermal throttling.
pub(super) fn thermal(gpu: &GpuInfo, policy: &EffectivePolicy) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(t) = gpu.temperature_celsius {
        if t >= policy.temperature_critical_celsius {
            out.push(finding(
                Health::Unhealthy,
                reason::OVERHEATING,
                format!(
                    "{t} °C, at or above the policy's critical {} °C. Drain the GPU and check its cooling (fans, \
                     airflow, inlet temperature, heatsink seating).",
                    policy.temperature_critical_celsius
                ),
            ));
        } else if t >= policy.temperature_warning_celsius {
            out.push(finding(
                Health::Degraded,
                reason::TEMPERATURE_HIGH,
                format!(
                    "{t} °C, at or above the policy's warning {} °C. Check the node's cooling and airflow.",
                    policy.temperature_warning_celsius
                ),
            ));
        }
    }
    let throttling: Vec<&str> = THERMAL_THROTTLE_REASONS
        .into_iter()
        .filter(|want| gpu.throttle_reasons.iter().flatten().any(|r| r.eq_ignore_ascii_case(want)))
        .collect();
    if !throttling.is_empty()
        && let Some(health) = policy.thermal_throttling.health()
    {
        out.push(finding(
            health,
            reason::THERMAL_THROTTLING,
            format!(
                "Clocks are throttled for heat ({}). Check the node's cooling and airflow; work on this GPU runs slower.",
                throttling.join(", ")
            ),
        ));
    }
    out.into_iter().map(|f| Finding { category: Category::Thermal, ..f }).collect()
}

fn finding(health: Health, reason: &str, message: String) -> Finding {
    Finding {
        health,
        category: Category::Memory,
        reason: reason.to_string(),
        message,
        node_reboot: false,
        memory_xid: false,
    }
}
