//! MCP resources: each GpuNodeStatus as `gpuscope://nodes/{node}` (other clusters than the default:
//! `gpuscope://clusters/{cluster}/nodes/{node}`) and the XID catalog as `gpuscope://xid-catalog`.

use gpuscope_crds::xid;
use serde::Serialize;

/// URI of the XID catalog.
pub const XID_CATALOG_URI: &str = "gpuscope://xid-catalog";
/// URI template of a node in the default cluster.
pub const NODE_TEMPLATE: &str = "gpuscope://nodes/{node}";
/// URI template of a node in a named cluster.
pub const CLUSTER_NODE_TEMPLATE: &str = "gpuscope://clusters/{cluster}/nodes/{node}";

/// What a resource URI names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceId {
    /// The XID catalog.
    XidCatalog,
    /// A GpuNodeStatus: (cluster or default, node).
    Node {
        /// `None`: the default cluster.
        cluster: Option<String>,
        /// Node name.
        node: String,
    },
}

/// Parse a resource URI; `None` when it is not one of ours.
pub fn parse(uri: &str) -> Option<ResourceId> {
    if uri == XID_CATALOG_URI {
        return Some(ResourceId::XidCatalog);
    }
    let valid = |s: &str| !s.is_empty() && !s.contains('/');
    if let Some(node) = uri.strip_prefix("gpuscope://nodes/") {
        return valid(node).then(|| ResourceId::Node { cluster: None, node: node.to_string() });
    }
    let rest = uri.strip_prefix("gpuscope://clusters/")?;
    let (cluster, node) = rest.split_once("/nodes/")?;
    (valid(cluster) && valid(node))
        .then(|| ResourceId::Node { cluster: Some(cluster.to_string()), node: node.to_string() })
}

/// The URI of `node` in `cluster` (`default`: whether it is the default cluster).
pub fn node_uri(cluster: &str, default: bool, node: &str) -> String {
    if default { format!("gpuscope://nodes/{node}") } else { format!("gpuscope://clusters/{cluster}/nodes/{node}") }
}

#[derive(Serialize)]
struct Catalog {
    revision: &'static str,
    source: &'static str,
    codes: &'static [xid::XidInfo],
}

/// The XID catalog as JSON: revision, source and every row.
pub fn xid_catalog_json() -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&Catalog {
        revision: xid::CATALOG_REVISION,
        source: xid::CATALOG_SOURCE,
        codes: xid::catalog(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_for_default_and_named_clusters() {
        assert_eq!(parse("gpuscope://xid-catalog"), Some(ResourceId::XidCatalog));
        assert_eq!(parse("gpuscope://nodes/n1"), Some(ResourceId::Node { cluster: None, node: "n1".into() }));
        assert_eq!(
            parse("gpuscope://clusters/prod/nodes/n1"),
            Some(ResourceId::Node { cluster: Some("prod".into()), node: "n1".into() })
        );
        for bad in ["gpuscope://nodes/", "gpuscope://nodes/a/b", "file:///etc/passwd", "gpuscope://clusters/x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(node_uri("prod", true, "n1"), "gpuscope://nodes/n1");
        assert_eq!(node_uri("lab", false, "n1"), "gpuscope://clusters/lab/nodes/n1");
    }

    #[test]
    fn catalog_resource_lists_every_code() {
        let json: serde_json::Value = serde_json::from_str(&xid_catalog_json().expect("json")).expect("parse");
        assert_eq!(json["codes"].as_array().map(Vec::len), Some(xid::catalog().len()));
        assert_eq!(json["codes"][78]["code"], 79);
    }
}
