//! The facade's Prometheus metrics (`gpuscope_mcp_*`): tool calls by tool and outcome, their latency, and the
//! size of each cache.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a tool call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer.
    Ok,
    /// A tool error the caller can act on (`isError: true`): bad argument, unknown node, cache warming up.
    ToolError,
    /// A JSON-RPC error: unknown tool, internal failure.
    ProtocolError,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::ProtocolError => "protocol_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cluster: String,
    kind: String,
}

#[derive(Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // Tool calls are cache lookups: 50 µs .. ~0.8 s.
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.5, 11))
    }
}

/// Handles to every metric; cheap to clone (each is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    calls: Family<CallLabels, Counter>,
    latency: Family<ToolLabels, Histogram, LatencyBuckets>,
    cache_objects: Family<CacheLabels, Gauge>,
    watch_errors: Family<CacheLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(LatencyBuckets),
            cache_objects: Family::default(),
            watch_errors: Family::default(),
        };
        registry.register("gpuscope_mcp_tool_calls", "MCP tool calls by tool and outcome", m.calls.clone());
        registry.register(
            "gpuscope_mcp_tool_call_duration_seconds",
            "Time to answer an MCP tool call, by tool",
            m.latency.clone(),
        );
        registry.register(
            "gpuscope_mcp_cache_objects",
            "Objects in the facade's cache, by cluster and kind",
            m.cache_objects.clone(),
        );
        registry.register(
            "gpuscope_mcp_watch_errors",
            "Watch failures (each retried with backoff while the cache keeps serving)",
            m.watch_errors.clone(),
        );
        m
    }

    /// Metrics registered nowhere, for tests and offline tools.
    pub fn unregistered() -> Metrics {
        Metrics::register(&mut Registry::default())
    }

    /// Count one tool call and its latency.
    pub fn tool_call(&self, tool: &str, outcome: Outcome, elapsed: Duration) {
        self.calls.get_or_create(&CallLabels { tool: tool.to_string(), outcome: outcome.as_str().to_string() }).inc();
        self.latency.get_or_create(&ToolLabels { tool: tool.to_string() }).observe(elapsed.as_secs_f64());
    }

    /// Set how many objects of `kind` the cache of `cluster` holds.
    pub fn cache_size(&self, cluster: &str, kind: &str, objects: usize) {
        let labels = CacheLabels { cluster: cluster.to_string(), kind: kind.to_string() };
        self.cache_objects.get_or_create(&labels).set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Count a watch failure.
    pub fn watch_error(&self, cluster: &str, kind: &str) {
        self.watch_errors.get_or_create(&CacheLabels { cluster: cluster.to_string(), kind: kind.to_string() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_latency_and_cache_sizes_are_exposed_with_labels() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.tool_call("get_gpu_health", Outcome::Ok, Duration::from_micros(300));
        m.tool_call("get_gpu_health", Outcome::ToolError, Duration::from_micros(80));
        m.cache_size("prod", "GpuNodeStatus", 12);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains(r#"gpuscope_mcp_tool_calls_total{tool="get_gpu_health",outcome="ok"} 1"#), "{text}");
        assert!(text.contains(r#"gpuscope_mcp_tool_calls_total{tool="get_gpu_health",outcome="tool_error"} 1"#));
        assert!(text.contains(r#"gpuscope_mcp_tool_call_duration_seconds_count{tool="get_gpu_health"} 2"#), "{text}");
        assert!(text.contains(r#"gpuscope_mcp_cache_objects{cluster="prod",kind="GpuNodeStatus"} 12"#), "{text}");
    }
}
