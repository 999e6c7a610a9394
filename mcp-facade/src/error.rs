//! What a tool call can get wrong, phrased so the caller (often an assistant) knows what to do next.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

/// A tool call that cannot be answered: reported as an `isError` tool result, never as an empty success.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// An argument is well-typed but not acceptable (bad duration, limit out of range, ...).
    #[error("invalid argument `{argument}`: {message}")]
    InvalidArgument {
        /// The argument's name as the tool's schema spells it.
        argument: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// No GPU node of that name in the cluster.
    #[error(
        "no GPU node named \"{name}\" in cluster \"{cluster}\" ({known} GPU nodes known).{} Call get_fleet_summary or \
         get_gpu_inventory without node_name to see the nodes.",
        suggestion(.close)
    )]
    UnknownNode {
        /// The cluster searched.
        cluster: String,
        /// The name asked for.
        name: String,
        /// Known names that look like it.
        close: Vec<String>,
        /// How many GPU nodes the cluster has.
        known: usize,
    },
    /// No GPU with that index or UUID where it was looked for.
    #[error("no GPU \"{gpu}\" {where_}.{}{} Pass an index (0, 1, ...) with node_name, or a full or leading part of a \
             UUID (\"GPU-5a4c...\").", suggestion(.close), available_gpus(.available))]
    UnknownGpu {
        /// The selector asked for.
        gpu: String,
        /// Where it was looked for ("on node n1", "in cluster c").
        where_: String,
        /// GPUs whose UUID looks like the one asked for, with their node (bounded).
        close: Vec<String>,
        /// The GPUs that exist there (bounded; empty fleet-wide, where they are too many to list).
        available: Vec<String>,
    },
    /// No cluster of that name is configured.
    #[error("no cluster named \"{name}\"; this server knows: {}.{} Omit `cluster` for the default ({}).",
            .known.join(", "), suggestion(.close), .known.first().map(String::as_str).unwrap_or("none"))]
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// Every configured cluster, default first.
        known: Vec<String>,
        /// Known names that look like it.
        close: Vec<String>,
    },
    /// The cache has not finished its first list from the API server.
    #[error("the cache of cluster \"{cluster}\" is still syncing with the API server; retry in a few seconds")]
    NotReady {
        /// The cluster whose cache is warming up.
        cluster: String,
    },
    /// The facade runs with `--no-cluster`: there is nothing to ask.
    #[error(
        "no cluster connected; start gpuscope-mcp with a kubeconfig (or --context) or --from-file to ask about a \
         cluster. analyze_kernel_log (without node_name) and explain_xid work without one."
    )]
    NoCluster,
    /// The tool's own work failed unexpectedly (a bug, not the caller's fault).
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

fn suggestion(close: &[String]) -> String {
    if close.is_empty() { String::new() } else { format!(" Did you mean: {}?", close.join(", ")) }
}

fn available_gpus(available: &[String]) -> String {
    if available.is_empty() { String::new() } else { format!(" GPUs there: {}.", available.join(", ")) }
}

/// Longest name Kubernetes accepts (a DNS subdomain); longer input is refused before any matching.
pub const MAX_NAME_LEN: usize = 253;

/// `text` cut to 80 characters for an error message, so a huge argument is not echoed back.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Refuse a name longer than Kubernetes allows, naming the argument.
pub fn check_name_len(argument: &'static str, name: &str) -> Result<(), ToolError> {
    if name.len() > MAX_NAME_LEN {
        return Err(ToolError::invalid(
            argument,
            format!("is {} characters long; Kubernetes names have at most {MAX_NAME_LEN}", name.len()),
        ));
    }
    Ok(())
}

impl ToolError {
    /// Shorthand for [`ToolError::InvalidArgument`].
    pub fn invalid(argument: &'static str, message: impl Into<String>) -> ToolError {
        ToolError::InvalidArgument { argument, message: message.into() }
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.to_string())]).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_node_names_the_close_matches_and_the_way_out() {
        let e = ToolError::UnknownNode {
            cluster: "prod".into(),
            name: "gpu-nod-1".into(),
            close: vec!["gpu-node-1".into(), "gpu-node-11".into()],
            known: 12,
        };
        let text = e.to_string();
        assert!(text.contains("\"gpu-nod-1\""), "{text}");
        assert!(text.contains("12 GPU nodes known"), "{text}");
        assert!(text.contains("Did you mean: gpu-node-1, gpu-node-11?"), "{text}");
        assert!(text.contains("get_fleet_summary"), "{text}");
    }

    #[test]
    fn unknown_cluster_lists_the_known_ones_and_the_default() {
        let e = ToolError::UnknownCluster {
            name: "stagin".into(),
            known: vec!["prod".into(), "staging".into()],
            close: vec!["staging".into()],
        };
        assert_eq!(
            e.to_string(),
            "no cluster named \"stagin\"; this server knows: prod, staging. Did you mean: staging? Omit `cluster` for the \
             default (prod)."
        );
    }

    #[test]
    fn huge_arguments_are_refused_and_never_echoed_whole() {
        let long = "x".repeat(10_000);
        let e = check_name_len("node_name", &long).expect_err("too long").to_string();
        assert_eq!(e, "invalid argument `node_name`: is 10000 characters long; Kubernetes names have at most 253");
        assert_eq!(clip(&long).len(), 83);
        assert_eq!(clip("short"), "short");
        assert!(check_name_len("node_name", "gpu-node-1").is_ok());
    }

    #[test]
    fn no_cluster_says_how_to_connect_one_and_what_still_works() {
        let text = ToolError::NoCluster.to_string();
        assert!(text.starts_with("no cluster connected; start gpuscope-mcp with a kubeconfig"), "{text}");
        assert!(text.contains("--from-file") && text.contains("analyze_kernel_log"), "{text}");
    }

    #[test]
    fn tool_errors_become_is_error_results() {
        let result = ToolError::invalid("limit", "must be between 1 and 200").into_call_tool_result();
        let Ok(CallToolResponse::Complete(result)) = result else { panic!("expected a complete result") };
        assert_eq!(result.is_error, Some(true));
        let text = result.content[0].as_text().map(|t| t.text.clone()).unwrap_or_default();
        assert_eq!(text, "invalid argument `limit`: must be between 1 and 200");
    }
}
