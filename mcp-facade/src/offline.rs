//! Offline mode: serve the same tools from exported objects, no cluster needed (post-mortems, air-gapped
//! support). Accepts what `kubectl get gns -o yaml` writes (a List), single objects, multi-document YAML and
//! JSON, with GpuNodeStatus, Node and Pod objects in any mix.

use std::path::{Path, PathBuf};

use gpuscope_crds::GpuNodeStatus;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::Value;

use crate::cache::ClusterCache;

/// Why an export could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML or JSON.
    #[error("{path} is not YAML or JSON: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// An object is of a kind the facade does not serve, or malformed.
    #[error("{path}, object {index}: {message}")]
    Object {
        /// The file.
        path: PathBuf,
        /// Position of the object in the file (0-based, lists flattened).
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// Objects read from exports.
#[derive(Debug, Default)]
pub struct Export {
    /// GpuNodeStatus objects.
    pub statuses: Vec<GpuNodeStatus>,
    /// Nodes.
    pub nodes: Vec<Node>,
    /// Pods (non-GPU pods are dropped when the cache is built).
    pub pods: Vec<Pod>,
}

impl Export {
    /// Read every file into one export.
    pub fn load(paths: &[PathBuf]) -> Result<Export, OfflineError> {
        let mut export = Export::default();
        for path in paths {
            let text =
                std::fs::read_to_string(path).map_err(|source| OfflineError::Read { path: path.clone(), source })?;
            export.add_text(path, &text)?;
        }
        Ok(export)
    }

    /// Add the objects in one file's text.
    pub fn add_text(&mut self, path: &Path, text: &str) -> Result<(), OfflineError> {
        let documents: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| OfflineError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let mut objects = Vec::new();
        for doc in documents.into_iter().filter(|d| !d.is_null()) {
            match doc.get("items").and_then(Value::as_array) {
                Some(items) => objects.extend(items.iter().cloned()),
                None => objects.push(doc),
            }
        }
        for (index, object) in objects.into_iter().enumerate() {
            let fail = |message: String| OfflineError::Object { path: path.to_path_buf(), index, message };
            let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            match kind.as_str() {
                "GpuNodeStatus" => self.statuses.push(serde_json::from_value(object).map_err(|e| fail(e.to_string()))?),
                "Node" => self.nodes.push(serde_json::from_value(object).map_err(|e| fail(e.to_string()))?),
                "Pod" => self.pods.push(serde_json::from_value(object).map_err(|e| fail(e.to_string()))?),
                "" => return Err(fail("has no kind; export with kubectl get ... -o yaml".to_string())),
                other => {
                    return Err(fail(format!("kind {other} is not served; give GpuNodeStatus, Node or Pod objects")));
                }
            }
        }
        Ok(())
    }

    /// A ready cache named `cluster` over these objects.
    pub fn into_cache(self, cluster: &str) -> ClusterCache {
        ClusterCache::from_objects(cluster, self.statuses, self.nodes, self.pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GNS_LIST: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: gpuscope.dev/v1alpha1
  kind: GpuNodeStatus
  metadata:
    name: gpu-1
    managedFields:
    - manager: gpuscope-probe
  spec: {}
  status:
    gpuCount: 8
    health: Unhealthy
- apiVersion: gpuscope.dev/v1alpha1
  kind: GpuNodeStatus
  metadata: {name: gpu-2}
  spec: {}
"#;

    const NODES_AND_PODS: &str = r#"apiVersion: v1
kind: Node
metadata: {name: gpu-1}
status:
  allocatable: {nvidia.com/gpu: "8"}
---
apiVersion: v1
kind: Pod
metadata: {name: train, namespace: ml}
spec:
  nodeName: gpu-1
  containers:
  - name: main
    resources: {limits: {nvidia.com/gpu: "2"}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ml}
spec:
  containers: [{name: main}]
"#;

    #[test]
    fn kubectl_lists_and_multi_document_yaml_load_into_a_ready_cache() {
        let mut export = Export::default();
        export.add_text(Path::new("fleet.yaml"), GNS_LIST).expect("gns list");
        export.add_text(Path::new("k8s.yaml"), NODES_AND_PODS).expect("nodes and pods");
        assert_eq!((export.statuses.len(), export.nodes.len(), export.pods.len()), (2, 1, 2));
        let cache = export.into_cache("post-mortem");
        assert!(cache.is_ready());
        assert_eq!(cache.sizes(), (2, 1, 1), "the CPU-only pod is dropped");
        let snap = cache.snapshot(jiff::Timestamp::now());
        let gpu1 = snap.status("gpu-1").expect("gpu-1");
        let whole = gpu1.unpack().expect("unpack");
        assert!(whole.metadata.managed_fields.is_none(), "stripped like watched objects");
        assert_eq!(gpu1.facts.gpu_count, Some(8));
        assert_eq!(whole.status.as_ref().and_then(|s| s.gpu_count), Some(8));
    }

    #[test]
    fn foreign_kinds_and_garbage_are_clear_errors() {
        let mut export = Export::default();
        let e = export
            .add_text(Path::new("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
            .expect_err("configmap");
        assert_eq!(
            e.to_string(),
            "cm.yaml, object 0: kind ConfigMap is not served; give GpuNodeStatus, Node or Pod objects"
        );
        let e = export.add_text(Path::new("bad.yaml"), "kind: [unclosed").expect_err("garbage");
        assert!(e.to_string().starts_with("bad.yaml is not YAML or JSON"), "{e}");
        let e = export
            .add_text(Path::new("g.json"), r#"{"kind":"GpuNodeStatus","apiVersion":"gpuscope.dev/v1alpha1","metadata":{"name":"x"},"spec":{},"status":{"gpuCount":"many"}}"#)
            .expect_err("bad field");
        assert!(e.to_string().contains("g.json, object 0"), "{e}");
        assert!(Export::load(&[PathBuf::from("/nonexistent/fleet.yaml")]).is_err());
    }
}
