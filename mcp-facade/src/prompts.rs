//! The SRE workflows offered as MCP prompts, with the predecessor's names and arguments: each tells the
//! assistant which tools to call, in which order, and how to report.

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `gpu-health-check`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckArgs {
    /// Node to check; omit for the whole fleet.
    pub node: Option<String>,
}

/// Arguments of `diagnose-xid-errors`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XidDiagnosisArgs {
    /// Node to diagnose; omit for the whole fleet.
    pub node: Option<String>,
    /// How far back to look: a duration ("2h", "7d") or an RFC 3339 time; omit for all retained history.
    pub time_range: Option<String>,
}

/// Arguments of `gpu-triage`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageArgs {
    /// The node to triage (required).
    pub node: String,
    /// Incident or ticket id to carry into the report.
    pub incident_id: Option<String>,
}

const READ_ONLY: &str = "The gpuscope tools are read-only and answer from a cache of the cluster's GpuNodeStatus \
objects; each answer leads with a verdict and an action. Data from a node whose probe is not reporting \
(probe: stale or missing) may be old: say so wherever it matters.";

/// The `gpu-health-check` prompt text.
pub fn health_check(args: &HealthCheckArgs) -> String {
    match args.node.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(node) => format!(
            "Check the health of the GPUs on Kubernetes node {node}.\n\n{READ_ONLY}\n\n\
             1. Call get_gpu_health with node_name=\"{node}\".\n\
             2. Call describe_gpu_node with node_name=\"{node}\" for the GPUs, conditions, XIDs and the pods on them.\n\
             3. If XIDs appear, call analyze_xid_errors with node_name=\"{node}\" and since=\"24h\".\n\n\
             Report: one line with the verdict (healthy, or what is wrong), then per problem GPU: index, UUID, health, \
             reason and the recommended action, then the pods affected. End with the actions in order of urgency."
        ),
        None => format!(
            "Check the health of the GPU fleet.\n\n{READ_ONLY}\n\n\
             1. Call get_fleet_summary.\n\
             2. Call get_gpu_health (raise limit only if the problem list was cut).\n\
             3. For each Unhealthy node among the top offenders (at most 5), call describe_gpu_node.\n\
             4. If XIDs are involved, call analyze_xid_errors with since=\"24h\" and look at its patterns.\n\n\
             Report: one line with the verdict (N of M nodes need action), a table of problems (node, GPU, health, \
             reason, action), stale probes, then the actions in order of urgency."
        ),
    }
}

/// The `diagnose-xid-errors` prompt text.
pub fn xid_diagnosis(args: &XidDiagnosisArgs) -> String {
    let node = args.node.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let since = args.time_range.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let mut call = String::from("analyze_xid_errors");
    let mut params = Vec::new();
    if let Some(n) = node {
        params.push(format!("node_name=\"{n}\""));
    }
    if let Some(t) = since {
        params.push(format!("since=\"{t}\""));
    }
    if !params.is_empty() {
        call.push_str(&format!(" with {}", params.join(" and ")));
    }
    let scope = match (node, since) {
        (Some(n), Some(t)) => format!("on node {n} over {t}"),
        (Some(n), None) => format!("on node {n}"),
        (None, Some(t)) => format!("across the fleet over {t}"),
        (None, None) => "across the fleet".to_string(),
    };
    format!(
        "Diagnose the NVIDIA XID errors {scope}.\n\n{READ_ONLY}\n\n\
         1. Call {call}.\n\
         2. Read patterns first: same_code_many_nodes means a shared cause (driver or firmware rollout, NVLink \
         fabric, power) rather than bad GPUs; repeating_gpu points at one GPU (or one workload, for application XIDs).\n\
         3. For the most severe code, call describe_gpu_node on up to 3 affected nodes to see GPU verdicts, ECC and \
         remapping counters and the pods on them.\n\
         4. If a workload is suspected, call get_pod_gpu_allocation with node_name for those nodes.\n\n\
         Report: the verdict, then per code its meaning, class, severity, where it occurred and NVIDIA's recommended \
         action; the patterns and what they imply; and what to do now versus what to watch."
    )
}

/// The `gpu-triage` prompt text.
pub fn triage(args: &TriageArgs) -> String {
    let node = args.node.trim();
    let incident = args
        .incident_id
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| format!(" for incident {i}"))
        .unwrap_or_default();
    format!(
        "Triage GPU node {node}{incident}.\n\n{READ_ONLY}\n\n\
         1. Call describe_gpu_node with node_name=\"{node}\" and include_k8s_metadata=true.\n\
         2. Call analyze_xid_errors with node_name=\"{node}\" and since=\"24h\".\n\
         3. Call get_pod_gpu_allocation with node_name=\"{node}\" to see which workloads are affected.\n\
         4. If the node looks fine, call get_gpu_health without node_name to see whether the problem is wider.\n\n\
         Report in incident form{incident}: summary (one line), impact (pods and namespaces on the node's GPUs), \
         evidence (verdicts and reasons, XIDs with their catalog meaning, conditions, probe freshness), the \
         recommended action (none, restart the job, reset the GPU, drain and reboot, RMA) and whether to cordon the \
         node now."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_names_the_tools_for_node_and_fleet() {
        let node = health_check(&HealthCheckArgs { node: Some("gpu-7".into()) });
        assert!(node.contains("get_gpu_health with node_name=\"gpu-7\""), "{node}");
        assert!(node.contains("describe_gpu_node"));
        let fleet = health_check(&HealthCheckArgs::default());
        assert!(fleet.contains("get_fleet_summary") && !fleet.contains("node_name=\""), "{fleet}");
    }

    #[test]
    fn xid_diagnosis_passes_node_and_time_range_as_tool_arguments() {
        let text = xid_diagnosis(&XidDiagnosisArgs { node: Some("gpu-7".into()), time_range: Some("6h".into()) });
        assert!(text.contains("analyze_xid_errors with node_name=\"gpu-7\" and since=\"6h\""), "{text}");
        assert!(text.contains("on node gpu-7 over 6h"));
        assert!(xid_diagnosis(&XidDiagnosisArgs::default()).contains("1. Call analyze_xid_errors.\n"));
    }

    #[test]
    fn triage_carries_the_incident_id() {
        let text = triage(&TriageArgs { node: "gpu-7".into(), incident_id: Some("INC-42".into()) });
        assert!(text.starts_with("Triage GPU node gpu-7 for incident INC-42."), "{text}");
        assert!(text.contains("get_pod_gpu_allocation with node_name=\"gpu-7\""));
    }
}
