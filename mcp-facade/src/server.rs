//! The MCP server: six read-only tools over the cache, two that need no cluster (a kernel log explained, one XID
//! code explained), three SRE prompts, the GpuNodeStatus objects and the XID catalog as resources. Every tool call
//! is timed and counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{ToolCallContext, schema_for_output};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptResult, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router, tool, tool_handler, tool_router,
};

use crate::answer::ToolAnswer;
use crate::clusters::Clusters;
use crate::error::ToolError;
use crate::matching::{MAX_SUGGESTIONS, close_matches};
use crate::metrics::{Metrics, Outcome};
use crate::prompts;
use crate::resources::{self, CLUSTER_NODE_TEMPLATE, NODE_TEMPLATE, ResourceId, XID_CATALOG_URI};
use crate::snapshot::Snapshot;
use crate::tools::allocation::{self, Allocation, AllocationArgs};
use crate::tools::describe::{self, DescribeArgs, NodeDescription};
use crate::tools::explain::{self, ExplainXidArgs, XidExplainAnswer};
use crate::tools::fleet::{self, FleetArgs, FleetSummary};
use crate::tools::health::{self, HealthArgs, HealthReport};
use crate::tools::inventory::{self, Inventory, InventoryArgs};
use crate::tools::kernel_log::{self, KernelLogAnalysis, KernelLogArgs};
use crate::tools::pod_failure::{self, PodFailure, PodFailureArgs};
use crate::tools::xids::{self, XidAnalysis, XidArgs};

/// How long a tool call waits for a cache that is still syncing before it answers "warming up".
const WARMUP_WAIT: Duration = Duration::from_secs(5);
/// Resources per `resources/list` page.
const RESOURCE_PAGE: usize = 500;

const INSTRUCTIONS: &str = "gpuscope answers questions about the NVIDIA GPUs of Kubernetes clusters from a watch \
cache of GpuNodeStatus objects, Nodes and GPU pods; it is read-only. Start with get_fleet_summary for an overview, \
get_gpu_health for what is wrong and what to do, analyze_xid_errors for XID errors, describe_gpu_node for one node, \
get_gpu_inventory for hardware, get_pod_gpu_allocation for which pods hold which GPUs, explain_pod_gpu_failure for \
\"my job failed, was it the GPU?\". Every answer leads with a verdict \
and an action; lists are cut to `limit` and say which filter narrows them. Pass `cluster` to ask a cluster other \
than the default. analyze_kernel_log explains a kernel log the user pastes (dmesg, journalctl -k, syslog, a support \
bundle): which GPU, which XID, what NVIDIA says it means and what to do first; with node_name it adds what the \
cluster knows about that node. explain_xid explains one XID code. Those two work without a cluster.";

const INSTRUCTIONS_NO_CLUSTER: &str = "gpuscope explains NVIDIA GPU errors. This server runs without a cluster: \
analyze_kernel_log explains a kernel log the user pastes (dmesg, journalctl -k, syslog, a support bundle): which \
GPU, which XID, what NVIDIA says it means and what to do first; explain_xid explains one XID code. The cluster \
tools (get_fleet_summary, get_gpu_health, ...) are not listed: no cluster is connected.";

/// The tools that answer without a cluster (all `--no-cluster` lists).
const OFFLINE_TOOLS: [&str; 2] = ["analyze_kernel_log", "explain_xid"];

/// The MCP handler. Cheap to clone: the streamable HTTP transport makes one per request.
#[derive(Clone)]
pub struct Facade {
    clusters: Arc<Clusters>,
    metrics: Metrics,
    tool_router: Arc<ToolRouter<Facade>>,
    prompt_router: Arc<PromptRouter<Facade>>,
}

impl Facade {
    /// A handler over these clusters, counting into `metrics`.
    pub fn new(clusters: Clusters, metrics: Metrics) -> Facade {
        let mut tool_router = Self::tool_router();
        if clusters.is_empty() {
            // Without a cluster only the tools that read what the caller gives them can answer: list only those.
            let cluster_tools: Vec<String> = tool_router
                .list_all()
                .into_iter()
                .map(|t| t.name.to_string())
                .filter(|name| !OFFLINE_TOOLS.contains(&name.as_str()))
                .collect();
            for name in cluster_tools {
                tool_router.remove_route(&name);
            }
        }
        tool_router.map.values_mut().for_each(|route| crate::schema::standardize_tool(&mut route.attr));
        Facade {
            clusters: Arc::new(clusters),
            metrics,
            tool_router: Arc::new(tool_router),
            prompt_router: Arc::new(Self::prompt_router()),
        }
    }

    /// The clusters served.
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    async fn snapshot(&self, cluster: Option<&str>) -> Result<Snapshot, ToolError> {
        let cache = self.clusters.get(cluster)?;
        if !cache.wait_ready(WARMUP_WAIT).await {
            return Err(ToolError::NotReady { cluster: cache.name().to_string() });
        }
        Ok(cache.snapshot(Timestamp::now()))
    }
}

#[tool_router]
impl Facade {
    #[tool(
        description = "GPU inventory: GPUs per node (model, UUID, memory, driver/CUDA, MIG, utilization, temperature, \
                       power) for one node (node_name) or one GPU (gpu), or the whole fleet as one row per node with \
                       totals by model and driver version. Use it for 'what hardware do we have'.",
        annotations(title = "GPU inventory", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<Inventory>()
    )]
    async fn get_gpu_inventory(
        &self,
        Parameters(args): Parameters<InventoryArgs>,
    ) -> Result<ToolAnswer<Inventory>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        inventory::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "GPU health: the operator's verdicts (Healthy, Degraded, Unhealthy, Unknown) and conditions, \
                       worst first, each with its reasons and the recommended action; counts of nodes, GPUs and probe \
                       freshness. Fleet-wide, or one node (node_name) or GPU (gpu). Use it for 'is anything wrong and \
                       what do I do'.",
        annotations(title = "GPU health", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<HealthReport>()
    )]
    async fn get_gpu_health(
        &self,
        Parameters(args): Parameters<HealthArgs>,
    ) -> Result<ToolAnswer<HealthReport>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        health::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "XID error analysis: the XID history with NVIDIA's catalog meaning, class, severity and \
                       recommended action; counts by code and node; flags patterns (the same GPU repeating a code; \
                       one code on many nodes at once, which points at a driver, fabric or power cause). Filter by \
                       node_name, gpu, code, severity (info/warning/critical) and since ('2h' or an RFC 3339 time); with \
                       since, counts are what is provably inside the window, and at_least marks a lower bound (a \
                       history that began before the window).",
        annotations(title = "XID error analysis", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<XidAnalysis>()
    )]
    async fn analyze_xid_errors(
        &self,
        Parameters(args): Parameters<XidArgs>,
    ) -> Result<ToolAnswer<XidAnalysis>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        xids::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "Everything about one GPU node in one answer: GPUs with verdicts, telemetry and error \
                       counters, health conditions, probe freshness, recent XIDs explained, and the Kubernetes side \
                       (Node conditions, taints, cordon, allocatable vs allocated GPUs, the pods holding them). \
                       Requires node_name.",
        annotations(title = "Describe a GPU node", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<NodeDescription>()
    )]
    async fn describe_gpu_node(
        &self,
        Parameters(args): Parameters<DescribeArgs>,
    ) -> Result<ToolAnswer<NodeDescription>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        describe::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "Which pods hold GPUs and on which nodes: totals, per namespace and per node (held vs \
                       allocatable), pods on unhealthy GPUs and nodes first. Each pod lists the exact GPUs (index, \
                       UUID, verdict) it holds where the probe reads the kubelet's binding (binding: exact), else its \
                       requests (binding: requested). Filter by namespace and node_name.",
        annotations(title = "Pod GPU allocation", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<Allocation>()
    )]
    async fn get_pod_gpu_allocation(
        &self,
        Parameters(args): Parameters<AllocationArgs>,
    ) -> Result<ToolAnswer<Allocation>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        allocation::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "Was it the hardware? For a pod that failed, restarted or is gone (namespace, pod; optional \
                       since), a verdict first: hardware (a GPU fault on one of its GPUs around its termination), \
                       likely application (only application-class XIDs such as 13/31/43), or no GPU evidence; then \
                       its GPUs, the XIDs on them with times relative to the container's exit, NVIDIA's meaning and \
                       action, and the other pods the same fault hit. A deleted pod is explained from the XID \
                       records that name it. Use it for 'my job failed, was it the GPU?'.",
        annotations(title = "Explain a pod's GPU failure", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<PodFailure>()
    )]
    async fn explain_pod_gpu_failure(
        &self,
        Parameters(args): Parameters<PodFailureArgs>,
    ) -> Result<ToolAnswer<PodFailure>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        pod_failure::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "One-screen fleet overview: nodes and GPUs by health and model, probe freshness, GPU \
                       allocation, XID hot spots, the top offenders with their actions, and stale probes. The best \
                       first call.",
        annotations(title = "GPU fleet summary", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<FleetSummary>()
    )]
    async fn get_fleet_summary(
        &self,
        Parameters(args): Parameters<FleetArgs>,
    ) -> Result<ToolAnswer<FleetSummary>, ToolError> {
        let snap = self.snapshot(args.cluster.as_deref()).await?;
        fleet::answer(&snap, &args).map(ToolAnswer)
    }

    #[tool(
        description = "Explain a kernel log pasted or exported from anywhere (dmesg in any time format, journalctl \
                       -k, syslog, /dev/kmsg, a support bundle, lines from a chat; at most 8 MiB): per GPU (PCI bus \
                       id, UUID when the log names it) each NVIDIA XID with count, first and last time, process, \
                       NVIDIA's meaning and actions, and the verdict the operator's default rules give; the worst \
                       verdict and the one action to take first lead. NVSwitch SXids, companion lines and lines not \
                       understood are listed apart. Give node_name to join with that node's GpuNodeStatus (GPU \
                       index and UUID, current verdict, whether the cluster already recorded each XID). Works \
                       without a cluster.",
        annotations(title = "Analyze a kernel log", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<KernelLogAnalysis>()
    )]
    async fn analyze_kernel_log(
        &self,
        Parameters(args): Parameters<KernelLogArgs>,
    ) -> Result<ToolAnswer<KernelLogAnalysis>, ToolError> {
        let snap = match args.node_name {
            Some(_) => Some(self.snapshot(args.cluster.as_deref()).await?),
            None => None,
        };
        // Up to 8 MiB of text is tens of milliseconds of CPU: keep it off the async workers.
        tokio::task::spawn_blocking(move || kernel_log::answer(snap.as_ref(), &args))
            .await
            .map_err(|e| ToolError::Internal(format!("the analysis did not finish: {e}")))?
            .map(ToolAnswer)
    }

    #[tool(
        description = "Explain one NVIDIA XID code: NVIDIA's catalog entry (meaning, immediate and investigatory \
                       action, class, severity), the rule the operator applies and the verdict it gives for one \
                       occurrence, for repeats, and per recovery action (XID 154). With a cluster connected, also \
                       which nodes have the code in their XID history, most recent first. Unknown codes get the \
                       catalog's unknown entry. Works without a cluster.",
        annotations(title = "Explain an XID code", read_only_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<XidExplainAnswer>()
    )]
    async fn explain_xid(
        &self,
        Parameters(args): Parameters<ExplainXidArgs>,
    ) -> Result<ToolAnswer<XidExplainAnswer>, ToolError> {
        if args.cluster.is_none() && self.clusters.is_empty() {
            return explain::answer(None, &args).map(ToolAnswer);
        }
        match self.snapshot(args.cluster.as_deref()).await {
            Ok(snap) => explain::answer(Some(&snap), &args).map(ToolAnswer),
            // The catalog answer needs no cluster: give it, and say why the node list is missing.
            Err(ToolError::NotReady { cluster }) => {
                let mut answer = explain::answer(None, &args)?;
                answer.note = Some(format!(
                    "cluster \"{cluster}\" is still syncing with the API server: nodes_with_code is left out; retry \
                     in a few seconds"
                ));
                answer.cluster = Some(cluster);
                Ok(ToolAnswer(answer))
            }
            Err(e) => Err(e),
        }
    }
}

#[prompt_router]
impl Facade {
    /// Check GPU health, fleet-wide or for one node, and report problems with actions.
    #[prompt(
        name = "gpu-health-check",
        description = "Check GPU health (fleet-wide, or one node) and report problems with actions"
    )]
    async fn gpu_health_check(
        &self,
        Parameters(args): Parameters<prompts::HealthCheckArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        prompt_result(prompts::health_check(&args), "GPU health check")
    }

    /// Diagnose XID errors, optionally for one node and time range.
    #[prompt(
        name = "diagnose-xid-errors",
        description = "Diagnose NVIDIA XID errors (optionally one node, a time range)"
    )]
    async fn diagnose_xid_errors(
        &self,
        Parameters(args): Parameters<prompts::XidDiagnosisArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        prompt_result(prompts::xid_diagnosis(&args), "XID error diagnosis")
    }

    /// Triage one GPU node for an incident.
    #[prompt(name = "gpu-triage", description = "Triage one GPU node for an incident and recommend an action")]
    async fn gpu_triage(
        &self,
        Parameters(args): Parameters<prompts::TriageArgs>,
    ) -> Result<GetPromptResult, ErrorData> {
        prompt_result(prompts::triage(&args), "GPU node triage")
    }
}

/// A prompt's text as a user message, or an invalid-params error naming the argument at fault.
fn prompt_result(
    text: Result<String, prompts::PromptArgError>,
    description: &str,
) -> Result<GetPromptResult, ErrorData> {
    match text {
        Ok(text) => {
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).with_description(description))
        }
        Err(e) => Err(ErrorData::invalid_params(e.to_string(), Some(serde_json::json!({ "argument": e.argument() })))),
    }
}

impl Facade {
    /// Every cluster's GpuNodeStatus objects as resources. Waits for caches still syncing, like a tool call, so
    /// a client that lists right after connecting is not handed a list missing every node.
    async fn node_resources(&self) -> Vec<Resource> {
        let mut out = Vec::new();
        for (i, cache) in self.clusters.all().iter().enumerate() {
            if !cache.wait_ready(WARMUP_WAIT).await {
                tracing::warn!(
                    cluster = cache.name(),
                    "resources/list while the cache is still syncing: its nodes are left out"
                );
                continue;
            }
            let snap = cache.snapshot(Timestamp::now());
            for o in snap.statuses() {
                let name = o.name.clone();
                let health = o.facts.health.unwrap_or_default();
                out.push(
                    Resource::new(resources::node_uri(cache.name(), i == 0, &name), name.clone())
                        .with_title(format!("GpuNodeStatus {name} ({})", cache.name()))
                        .with_description(format!(
                            "GPU inventory, telemetry, XID history and health ({health}) of node {name}"
                        ))
                        .with_mime_type("application/json"),
                );
            }
        }
        out
    }

    async fn read_node(&self, cluster: Option<&str>, node: &str, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let cache = self.clusters.get(cluster).map_err(|e| ErrorData::resource_not_found(e.to_string(), None))?;
        // Not "not found": the node may well exist; the cache cannot tell yet.
        if !cache.wait_ready(WARMUP_WAIT).await {
            return Err(ErrorData::internal_error(
                ToolError::NotReady { cluster: cache.name().to_string() }.to_string(),
                Some(serde_json::json!({ "uri": uri })),
            ));
        }
        let snap = cache.snapshot(Timestamp::now());
        let Some(o) = snap.status(node) else {
            let names: Vec<String> = snap.statuses().iter().map(|o| o.name.clone()).collect();
            let close = close_matches(node, names.iter().map(String::as_str), MAX_SUGGESTIONS);
            let hint = if close.is_empty() { String::new() } else { format!(" Did you mean: {}?", close.join(", ")) };
            return Err(ErrorData::resource_not_found(
                format!("no GpuNodeStatus \"{node}\" in cluster \"{}\".{hint}", cache.name()),
                Some(serde_json::json!({ "uri": uri })),
            ));
        };
        let text = o
            .unpack()
            .map_err(|e| e.to_string())
            .and_then(|whole| serde_json::to_string_pretty(&whole).map_err(|e| e.to_string()))
            .map_err(|e| ErrorData::internal_error(format!("cannot serialize {node}: {e}"), None))?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")]))
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for Facade {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_prompts().enable_resources().build())
            .with_server_info(Implementation::new("gpuscope-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(if self.clusters.is_empty() { INSTRUCTIONS_NO_CLUSTER } else { INSTRUCTIONS })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Label by the tool's own name only when it exists, so arbitrary names cannot grow the metric families.
        let tool =
            if self.tool_router.get(&request.name).is_some() { request.name.to_string() } else { "unknown".into() };
        let started = Instant::now();
        // A cluster tool called anyway without a cluster (a client that cached an older list): say why, as a tool
        // error, rather than "tool not found".
        if tool == "unknown" && self.clusters.is_empty() && Self::tool_router().get(&request.name).is_some() {
            self.metrics.tool_call(&request.name, Outcome::ToolError, started.elapsed());
            return rmcp::handler::server::tool::IntoCallToolResult::into_call_tool_result(ToolError::NoCluster);
        }
        let result = self.tool_router.call(ToolCallContext::new(self, request, context)).await;
        let outcome = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => Outcome::ToolError,
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::ProtocolError,
        };
        let elapsed = started.elapsed();
        self.metrics.tool_call(&tool, outcome, elapsed);
        tracing::debug!(tool, ?outcome, elapsed_us = elapsed.as_micros() as u64, "tool call");
        result
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut all = vec![
            Resource::new(XID_CATALOG_URI, "xid-catalog")
                .with_title("NVIDIA XID catalog")
                .with_description(
                    "Every XID code: meaning, class, severity, NVIDIA's resolution buckets, recommended action",
                )
                .with_mime_type("application/json"),
        ];
        all.extend(self.node_resources().await);
        let start = match request.as_ref().and_then(|r| r.cursor.as_deref()) {
            None => 0,
            Some(c) => {
                c.parse::<usize>().map_err(|_| ErrorData::invalid_params(format!("invalid cursor \"{c}\""), None))?
            }
        };
        let end = (start + RESOURCE_PAGE).min(all.len());
        let page: Vec<Resource> = all.get(start..end).map(<[Resource]>::to_vec).unwrap_or_default();
        let mut result = ListResourcesResult::with_all_items(page);
        result.next_cursor = (end < all.len()).then(|| end.to_string());
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let mut templates = vec![
            ResourceTemplate::new(NODE_TEMPLATE, "gpu-node-status")
                .with_title("GpuNodeStatus of a node")
                .with_description("One node's GPU inventory, telemetry, XID history and health, default cluster")
                .with_mime_type("application/json"),
        ];
        if self.clusters.all().len() > 1 {
            templates.push(
                ResourceTemplate::new(CLUSTER_NODE_TEMPLATE, "cluster-gpu-node-status")
                    .with_title("GpuNodeStatus of a node in a named cluster")
                    .with_mime_type("application/json"),
            );
        }
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let result = match resources::parse(uri) {
            Some(ResourceId::XidCatalog) => {
                let text = resources::xid_catalog_json()
                    .map_err(|e| ErrorData::internal_error(format!("cannot serialize the XID catalog: {e}"), None))?;
                ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")])
            }
            Some(ResourceId::Node { cluster, node }) => self.read_node(cluster.as_deref(), &node, uri).await?,
            None => {
                return Err(ErrorData::resource_not_found(
                    format!("unknown resource \"{uri}\"; this server serves {XID_CATALOG_URI} and {NODE_TEMPLATE}"),
                    Some(serde_json::json!({ "uri": uri })),
                ));
            }
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use gpuscope_crds::Health;
    use gpuscope_crds::health::reason;
    use rmcp::RoleClient;
    use rmcp::ServiceExt;
    use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
    use rmcp::service::RunningService;
    use serde_json::{Value, json};

    use super::*;
    use crate::cache::ClusterCache;
    use crate::gpu_resources::fixtures::node;
    use crate::status_fixtures::{healthy, with_verdict};

    async fn connect(facade: Facade) -> RunningService<RoleClient, ()> {
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            if let Ok(running) = facade.serve(server_io).await {
                let _ = running.waiting().await;
            }
        });
        ().serve(client_io).await.expect("client connects")
    }

    fn facade(metrics: Metrics) -> Facade {
        let bad = with_verdict(healthy("gpu-b", 8), 3, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
        let prod = ClusterCache::from_objects("prod", vec![healthy("gpu-a", 8), bad], vec![node("gpu-a", 8)], vec![]);
        let lab = ClusterCache::from_objects("lab", vec![healthy("lab-1", 4)], vec![], vec![]);
        Facade::new(Clusters::new(vec![prod, lab]).expect("clusters"), metrics)
    }

    /// Every string value of a `format` key anywhere in `v`.
    fn formats_in(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("format", Value::String(f)) => out.push(f.clone()),
                _ => formats_in(v, out),
            }),
            Value::Array(a) => a.iter().for_each(|v| formats_in(v, out)),
            _ => {}
        }
    }

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn lists_nine_read_only_tools_with_object_output_schemas_and_three_prompts() {
        let client = connect(facade(Metrics::unregistered())).await;
        let tools = client.list_all_tools().await.expect("tools");
        let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "analyze_kernel_log",
                "analyze_xid_errors",
                "describe_gpu_node",
                "explain_pod_gpu_failure",
                "explain_xid",
                "get_fleet_summary",
                "get_gpu_health",
                "get_gpu_inventory",
                "get_pod_gpu_allocation"
            ]
        );
        for t in &tools {
            assert_eq!(t.annotations.as_ref().and_then(|a| a.read_only_hint), Some(true), "{}", t.name);
            let out = t.output_schema.as_ref().expect("output schema");
            assert_eq!(out.get("type"), Some(&json!("object")), "{}", t.name);
            let props = out.get("properties").and_then(Value::as_object).expect("properties");
            assert!(props.contains_key("verdict") && props.contains_key("action"), "{}", t.name);
            assert_eq!(
                t.input_schema.get("additionalProperties"),
                Some(&json!(false)),
                "{}: deny_unknown_fields",
                t.name
            );
        }
        let health = tools.iter().find(|t| t.name == "get_gpu_health").expect("health");
        let limit = &health.input_schema["properties"]["limit"];
        assert_eq!((limit["minimum"].clone(), limit["maximum"].clone()), (json!(1), json!(200)), "{limit}");
        let node_name = &health.input_schema["properties"]["node_name"];
        assert!(node_name["description"].as_str().is_some_and(|d| d.contains("Node")), "{node_name}");
        let log = tools.iter().find(|t| t.name == "analyze_kernel_log").expect("analyze_kernel_log");
        assert_eq!(log.input_schema["required"], json!(["text"]));
        let text = &log.input_schema["properties"]["text"]["description"];
        assert!(text.as_str().is_some_and(|d| d.contains("at most 8 MiB")), "{text}");
        let explain = tools.iter().find(|t| t.name == "explain_xid").expect("explain_xid");
        assert_eq!(explain.input_schema["required"], json!(["code"]));
        // Standard JSON Schema only: integer widths are bounds, never `format: uint32` and the like.
        let code = &explain.input_schema["properties"]["code"];
        assert_eq!((code["minimum"].clone(), code["format"].clone()), (json!(0), Value::Null), "{code}");
        for t in &tools {
            let schemas = [Some(t.input_schema.as_ref()), t.output_schema.as_deref()];
            let mut formats = Vec::new();
            schemas.into_iter().flatten().for_each(|s| formats_in(&Value::Object(s.clone()), &mut formats));
            formats.retain(|f| !crate::schema::STANDARD_FORMATS.contains(&f.as_str()));
            assert!(formats.is_empty(), "{}: non-standard formats {formats:?}", t.name);
        }
        let prompts = client.list_all_prompts().await.expect("prompts");
        let mut names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["diagnose-xid-errors", "gpu-health-check", "gpu-triage"]);
        let triage = prompts.iter().find(|p| p.name == "gpu-triage").expect("triage");
        let args: Vec<(String, Option<bool>)> =
            triage.arguments.iter().flatten().map(|a| (a.name.clone(), a.required)).collect();
        assert!(
            args.contains(&("node".into(), Some(true))) && args.contains(&("incident_id".into(), Some(false))),
            "{args:?}"
        );
        client.cancel().await.expect("close");
    }

    #[tokio::test]
    async fn tool_calls_answer_structured_and_errors_are_tool_errors() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let client = connect(facade(metrics)).await;
        let r = client
            .call_tool(CallToolRequestParams::new("get_gpu_health").with_arguments(args(json!({}))))
            .await
            .expect("call");
        assert_eq!(r.is_error, Some(false));
        let s = r.structured_content.expect("structured");
        assert_eq!(s["nodes"]["unhealthy"], 1);
        assert_eq!(s["problems"][0]["node"], "gpu-b");
        let summary = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
        assert!(summary.contains("Action: gpu-b GPU 3 (Unhealthy)"), "{summary}");

        let r = client
            .call_tool(CallToolRequestParams::new("get_gpu_inventory").with_arguments(args(json!({"cluster": "lab"}))))
            .await
            .expect("call");
        assert_eq!(r.structured_content.as_ref().map(|s| s["totals"]["gpus"].clone()), Some(json!(4)));

        for (tool, bad, expect) in [
            ("describe_gpu_node", json!({"node_name": "gpu-c"}), "Did you mean: gpu-a, gpu-b?"),
            ("get_gpu_health", json!({"limit": 0}), "invalid argument `limit`"),
            ("analyze_xid_errors", json!({"since": "soon"}), "invalid argument `since`"),
            ("analyze_xid_errors", json!({"severity": "fatal"}), "expected one of info, warning, critical"),
            ("get_gpu_inventory", json!({"node": "gpu-a"}), "unknown field `node`"),
            ("get_gpu_inventory", json!({"limit": "ten"}), "expected a whole number"),
            ("describe_gpu_node", json!({}), "missing field `node_name`"),
            ("get_fleet_summary", json!({"cluster": "prd"}), "no cluster named \"prd\""),
        ] {
            let r = client
                .call_tool(CallToolRequestParams::new(tool).with_arguments(args(bad.clone())))
                .await
                .expect("call");
            assert_eq!(r.is_error, Some(true), "{tool} {bad}");
            let text = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
            assert!(text.contains(expect), "{tool} {bad}: {text}");
        }
        let e = client.call_tool(CallToolRequestParams::new("drop_database")).await.expect_err("unknown tool");
        assert!(e.to_string().contains("tool not found"), "{e}");

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains(r#"gpuscope_mcp_tool_calls_total{tool="get_gpu_health",outcome="ok"} 1"#), "{text}");
        assert!(
            text.contains(r#"gpuscope_mcp_tool_calls_total{tool="describe_gpu_node",outcome="tool_error"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"gpuscope_mcp_tool_calls_total{tool="unknown",outcome="protocol_error"} 1"#), "{text}");
        client.cancel().await.expect("close");
    }

    const XID79: &str = "[  88.800002] NVRM: Xid (PCI:0000:13:00): 79, pid=1234, name=python3, GPU has fallen off \
                         the bus.\n";

    #[tokio::test]
    async fn the_log_tools_answer_with_a_cluster_and_join_the_node() {
        let client = connect(facade(Metrics::unregistered())).await;
        let r = client
            .call_tool(
                CallToolRequestParams::new("analyze_kernel_log")
                    .with_arguments(args(json!({"text": XID79, "node_name": "gpu-a"}))),
            )
            .await
            .expect("call");
        assert_eq!(r.is_error, Some(false));
        let s = r.structured_content.expect("structured");
        assert_eq!(s["verdict"], "Unhealthy: reboot node: XID 79 on 0000:13:00.0");
        assert_eq!((s["cluster"].clone(), s["node"]["name"].clone()), (json!("prod"), json!("gpu-a")));
        assert_eq!(s["report"]["gpus"][0]["index"], 3);
        assert_eq!(s["report"]["gpus"][0]["uuid"], "GPU-gpu-a-3");
        let summary = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
        assert!(
            summary.starts_with("Unhealthy: reboot node: XID 79 on 0000:13:00.0\nAction: Reboot node"),
            "{summary}"
        );

        let r = client
            .call_tool(
                CallToolRequestParams::new("explain_xid").with_arguments(args(json!({"code": 79, "cluster": "lab"}))),
            )
            .await
            .expect("call");
        let s = r.structured_content.expect("structured");
        assert_eq!(s["cluster"], "lab");
        assert_eq!(s["nodes_with_code"]["total_nodes"], 0);
        assert_eq!(s["explanation"]["catalog"]["code"], 79);
        client.cancel().await.expect("close");
    }

    #[tokio::test]
    async fn without_a_cluster_only_the_log_tools_answer() {
        let client = connect(Facade::new(Clusters::none(), Metrics::unregistered())).await;
        let instructions = client.peer_info().and_then(|i| i.instructions.clone()).unwrap_or_default();
        assert!(instructions.contains("runs without a cluster"), "{instructions}");
        let r = client
            .call_tool(CallToolRequestParams::new("analyze_kernel_log").with_arguments(args(json!({"text": XID79}))))
            .await
            .expect("call");
        assert_eq!(r.is_error, Some(false));
        let s = r.structured_content.expect("structured");
        assert_eq!(s["report"]["summary"]["action"], "rebootNode");
        assert!(s.get("cluster").is_none() && s.get("node").is_none(), "{s}");
        let r = client
            .call_tool(CallToolRequestParams::new("explain_xid").with_arguments(args(json!({"code": 13}))))
            .await
            .expect("call");
        let s = r.structured_content.expect("structured");
        assert!(s.get("nodes_with_code").is_none(), "{s}");
        assert_eq!(s["explanation"]["aboveRate"]["health"], "Degraded");

        for (tool, arguments) in [
            ("get_fleet_summary", json!({})),
            ("describe_gpu_node", json!({"node_name": "gpu-a"})),
            ("analyze_kernel_log", json!({"text": XID79, "node_name": "gpu-a"})),
            ("explain_xid", json!({"code": 79, "cluster": "prod"})),
        ] {
            let r = client
                .call_tool(CallToolRequestParams::new(tool).with_arguments(args(arguments.clone())))
                .await
                .expect("call");
            assert_eq!(r.is_error, Some(true), "{tool} {arguments}");
            let text = r.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
            assert!(text.starts_with("no cluster connected; start gpuscope-mcp with a kubeconfig"), "{tool}: {text}");
        }
        let resources = client.list_all_resources().await.expect("resources");
        assert_eq!(resources.len(), 1, "only the XID catalog");
        client.cancel().await.expect("close");
    }

    #[tokio::test]
    async fn prompts_and_resources_are_served() {
        let client = connect(facade(Metrics::unregistered())).await;
        let p = client
            .get_prompt(
                GetPromptRequestParams::new("gpu-triage")
                    .with_arguments(args(json!({"node": "gpu-b", "incident_id": "INC-7"}))),
            )
            .await
            .expect("prompt");
        let text = match &p.messages[0].content {
            rmcp::model::ContentBlock::Text(t) => t.text.clone(),
            other => panic!("unexpected content {other:?}"),
        };
        assert!(text.starts_with("Triage GPU node gpu-b for incident INC-7."), "{text}");
        let e = client
            .get_prompt(
                GetPromptRequestParams::new("gpu-triage").with_arguments(args(json!({"node": "n".repeat(300)}))),
            )
            .await
            .expect_err("an overlong node name is refused");
        let rmcp::ServiceError::McpError(data) = &e else { panic!("expected a JSON-RPC error, got {e:?}") };
        assert_eq!(data.code, rmcp::model::ErrorCode::INVALID_PARAMS);
        assert_eq!(data.message, "prompt argument `node` is 300 characters long; at most 253 are accepted");
        assert_eq!(data.data, Some(json!({"argument": "node"})));

        let resources = client.list_all_resources().await.expect("resources");
        let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "gpuscope://xid-catalog",
                "gpuscope://nodes/gpu-a",
                "gpuscope://nodes/gpu-b",
                "gpuscope://clusters/lab/nodes/lab-1"
            ]
        );
        let r = client.read_resource(ReadResourceRequestParams::new("gpuscope://nodes/gpu-b")).await.expect("read");
        let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &r.contents[0] else { panic!("text") };
        let obj: Value = serde_json::from_str(text).expect("json");
        assert_eq!(obj["status"]["health"], "Unhealthy");
        let e =
            client.read_resource(ReadResourceRequestParams::new("gpuscope://nodes/gpu-x")).await.expect_err("unknown");
        assert!(e.to_string().contains("Did you mean: gpu-a, gpu-b?"), "{e}");
        let templates = client.list_all_resource_templates().await.expect("templates");
        assert_eq!(templates[0].uri_template, "gpuscope://nodes/{node}");
        client.cancel().await.expect("close");
    }
}
