//! What to do about a health reason, for answers that must lead with an action. The operator's own message on a
//! verdict wins when it has one; these are the fallbacks, one per reason in `gpuscope_crds::health::reason`.

use gpuscope_crds::health::reason;

/// The recommended action for `reason` on `node`.
pub fn for_reason(reason: &str, node: &str) -> String {
    match reason {
        reason::XID_FALLEN_OFF_BUS => format!(
            "Drain {node} and reboot it: a GPU fell off the PCIe bus (XID 79). If it happens again, reseat or RMA the GPU."
        ),
        reason::XID_CRITICAL => format!(
            "Drain the GPU's workloads on {node} and reset the GPU or reboot the node, as the XID's catalog action says \
             (analyze_xid_errors with node_name={node} shows the code)."
        ),
        reason::XID_RATE => format!(
            "Find the workload that keeps hitting application XIDs on {node} (analyze_xid_errors) and restart or fix \
             it; the GPU itself stays usable."
        ),
        reason::RECOVERY_ACTION_REQUIRED => {
            format!("Drain {node} and do what the driver's recovery action asks (GPU reset or node reboot).")
        }
        reason::UNCORRECTABLE_ECC => format!(
            "Drain and reset the GPU on {node}; if uncorrectable ECC errors keep rising after the reset, RMA the GPU."
        ),
        reason::ROW_REMAP_FAILURE => {
            format!("Drain {node} and RMA the GPU: row remapping failed, it has no spare rows left.")
        }
        reason::ROW_REMAP_PENDING => {
            format!("Reset the GPU on {node} at the next convenient drain so the pending row remap takes effect.")
        }
        reason::RETIRED_PAGES => format!("Plan to replace the GPU on {node}: it has retired too many memory pages."),
        reason::RETIRED_PAGES_PENDING => {
            format!("Reset the GPU on {node} at the next drain so the pending page retirement takes effect.")
        }
        reason::CORRECTABLE_ECC => {
            format!(
                "Watch the GPU on {node}: corrected ECC errors are high, its memory is wearing; plan a replacement."
            )
        }
        reason::OVERHEATING => {
            format!(
                "Check cooling on {node} now (fans, airflow, inlet temperature): a GPU is above its critical temperature."
            )
        }
        reason::THERMAL_THROTTLING | reason::TEMPERATURE_HIGH => {
            format!("Check cooling and airflow on {node}: a GPU runs hot or throttles, which slows its jobs.")
        }
        reason::GPU_MISSING => format!(
            "Reboot {node}: NVML no longer sees one of its GPUs. If it stays missing, check seating and power, then RMA."
        ),
        reason::XID_NVLINK => format!(
            "Check the NVLink/NVSwitch fabric of {node} (cables, fabric manager): the fault may sit at either end of the link."
        ),
        reason::XID_POLICY_OVERRIDE => {
            format!("Look at the XID the health policy flags on {node} (analyze_xid_errors with node_name={node}).")
        }
        reason::PROBE_STALE => format!(
            "The probe on {node} stopped reporting, so its GPU data is old: check the node and the gpuscope-probe pod on \
             it (kubectl -n gpuscope-system get pods -o wide --field-selector spec.nodeName={node})."
        ),
        reason::PROBE_MISSING => format!(
            "No probe reports for {node}: check that the gpuscope-probe DaemonSet schedules onto it (node selector, \
             tolerations)."
        ),
        reason::NO_DATA => format!(
            "The probe has reported no GPU data for {node} yet: check the gpuscope-probe pod's log on that node."
        ),
        _ => format!("Inspect {node} with describe_gpu_node (reason {reason})."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_the_operator_uses_has_a_specific_action() {
        let reasons = [
            reason::XID_FALLEN_OFF_BUS,
            reason::XID_CRITICAL,
            reason::XID_RATE,
            reason::RECOVERY_ACTION_REQUIRED,
            reason::UNCORRECTABLE_ECC,
            reason::ROW_REMAP_FAILURE,
            reason::ROW_REMAP_PENDING,
            reason::RETIRED_PAGES,
            reason::RETIRED_PAGES_PENDING,
            reason::CORRECTABLE_ECC,
            reason::OVERHEATING,
            reason::THERMAL_THROTTLING,
            reason::TEMPERATURE_HIGH,
            reason::GPU_MISSING,
            reason::XID_NVLINK,
            reason::XID_POLICY_OVERRIDE,
            reason::PROBE_STALE,
            reason::PROBE_MISSING,
            reason::NO_DATA,
        ];
        for r in reasons {
            let action = for_reason(r, "n1");
            assert!(!action.starts_with("Inspect"), "{r} falls back to the generic action");
            assert!(action.contains("n1"), "{r}: {action}");
        }
        assert_eq!(for_reason("SomethingNew", "n1"), "Inspect n1 with describe_gpu_node (reason SomethingNew).");
    }
}
