//! The probe's only conversations with the API server: make sure its GpuNodeStatus exists (owned by its Node,
//! so it goes when the Node goes), apply the probe's status fields, and renew its Lease.

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{GpuNodeStatusStatus, PROBE_FIELD_MANAGER, XidHistory};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

/// Why talking to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The Node named by NODE_NAME / --node-name does not exist.
    #[error("Node {0:?} does not exist: set NODE_NAME from the downward API (spec.nodeName) or pass --node-name")]
    NoSuchNode(String),
    /// A request failed (unreachable server, forbidden, conflict...).
    #[error("{what} failed: {source}")]
    Request {
        /// What the probe was doing.
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

impl ApiError {
    /// A short label for the error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::NoSuchNode(_) => "no_such_node",
            ApiError::Request { source: kube::Error::Api(s), .. } if s.code == 403 => "forbidden",
            ApiError::Request { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            ApiError::Request { source: kube::Error::Api(_), .. } => "api",
            ApiError::Request { .. } => "unreachable",
        }
    }
}

fn request(what: &'static str) -> impl FnOnce(kube::Error) -> ApiError {
    move |source| ApiError::Request { what, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A reference to `node` as owner, so garbage collection removes what the probe created with the Node.
async fn node_owner(client: &kube::Client, node: &str) -> Result<OwnerReference, ApiError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let found = nodes.get_opt(node).await.map_err(request("reading the Node"))?;
    let found = found.ok_or_else(|| ApiError::NoSuchNode(node.to_string()))?;
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: found.metadata.uid.unwrap_or_default(),
        ..Default::default()
    })
}

/// Make sure the node's GpuNodeStatus exists; returns the XID history it already carries (a probe without its
/// spool adopts it rather than wiping it).
pub async fn ensure_object(client: &kube::Client, node: &str) -> Result<Option<XidHistory>, ApiError> {
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    match api.get_opt(node).await.map_err(request("reading the GpuNodeStatus"))? {
        Some(existing) => Ok(existing.status.and_then(|s| s.xids)),
        None => {
            let owner = node_owner(client, node).await?;
            let mut obj = GpuNodeStatus::new(node, Default::default());
            obj.metadata.owner_references = Some(vec![owner]);
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(None),
                // Another probe instance (a rolling update) created it meanwhile: fine.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(request("creating the GpuNodeStatus")(e)),
            }
        }
    }
}

/// Apply the probe's status fields (and only those) under the probe's field manager.
pub async fn apply_status(client: &kube::Client, node: &str, status: &GpuNodeStatusStatus) -> Result<usize, ApiError> {
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let body = crate::report::apply_body(node, status);
    let bytes = serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0);
    let params = PatchParams::apply(PROBE_FIELD_MANAGER).force();
    match api.patch_status(node, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(bytes),
        Err(e) if is_not_found(&e) => {
            // Deleted under us (or never created): recreate, then apply once more.
            ensure_object(client, node).await?;
            api.patch_status(node, &params, &Patch::Apply(&body)).await.map_err(request("applying status"))?;
            Ok(bytes)
        }
        Err(e) => Err(request("applying status")(e)),
    }
}

/// The probe's liveness Lease for `node`.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace the probe runs in (Leases are namespaced).
    pub namespace: String,
    /// Who holds it (the pod name, or the node name).
    pub holder: String,
    /// How long a renewal is valid; the operator's heartbeat timeout should be larger.
    pub duration_seconds: i32,
}

/// The Lease's name for `node`.
pub fn lease_name(node: &str) -> String {
    format!("gpuscope-probe-{node}")
}

/// Renew (or create) the Lease. The first call also sets an owner reference to the Node.
pub async fn renew_lease(
    client: &kube::Client,
    node: &str,
    settings: &LeaseSettings,
    owner: Option<&OwnerReference>,
) -> Result<(), ApiError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let now = MicroTime(jiff::Timestamp::now());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(node)),
            namespace: Some(settings.namespace.clone()),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.holder.clone()),
            lease_duration_seconds: Some(settings.duration_seconds),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    let mut body =
        serde_json::to_value(&lease).map_err(|e| request("encoding the Lease")(kube::Error::SerdeError(e)))?;
    body["apiVersion"] = "coordination.k8s.io/v1".into();
    body["kind"] = "Lease".into();
    api.patch(&lease_name(node), &PatchParams::apply(PROBE_FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(request("renewing the Lease"))?;
    Ok(())
}

/// The owner reference for the node's Lease (read once at start).
pub async fn lease_owner(client: &kube::Client, node: &str) -> Result<OwnerReference, ApiError> {
    node_owner(client, node).await
}
