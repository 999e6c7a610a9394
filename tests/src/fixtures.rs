//! Setup steps shared by the end-to-end tests and the benchmarks: install pieces of `config/` as a user would,
//! and create the objects a kubelet would.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::control_plane::{INSTALL_NAMESPACE, workspace_root};
use crate::{ControlPlane, run_ok};

/// Create the install namespace (if missing) and apply `config/rbac/<file>` for each file, idempotently.
pub fn install_rbac(cp: &ControlPlane, files: &[&str]) -> Result<(), String> {
    let _ = run_ok(cp.kubectl().args(["create", "namespace", INSTALL_NAMESPACE]));
    for file in files {
        let path = workspace_root().join("config/rbac").join(file);
        run_ok(cp.kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(path))?;
    }
    Ok(())
}

/// Create a Node (as a kubelet would register it; none runs here). Returns it as stored.
pub async fn create_node(client: &kube::Client, name: &str) -> Result<Node, kube::Error> {
    let node = Node { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await
}
