//! The real `gpuscope-operator` binary, under its own RBAC identity, against the real control plane. The test
//! plays the probe: it applies probe fields with the probe's field manager and renews the probe's Lease.
//!
//! Tests that keep the default policy share one operator on the shared control plane; tests that change the
//! cluster-wide policy, remediate or kill operators get a private control plane.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::PROBE_FIELD_MANAGER;
use gpuscope_tests::control_plane::{INSTALL_NAMESPACE, workspace_root};
use gpuscope_tests::{
    ControlPlane, Identity, Process, eventually, free_port, http_get, metric_value, run_ok, spawn_for_process_lifetime,
    unique_name, workspace_binary,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BOOT_A: &str = "11111111-1111-4111-8111-111111111111";
const BOOT_B: &str = "22222222-2222-4222-8222-222222222222";
const GPU0: &str = "GPU-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

fn install(cp: &ControlPlane) -> Result<(), String> {
    let _ = run_ok(cp.kubectl().args(["create", "namespace", INSTALL_NAMESPACE]));
    for file in ["config/rbac/probe.yaml", "config/rbac/operator.yaml"] {
        run_ok(
            cp.kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(workspace_root().join(file)),
        )?;
    }
    Ok(())
}

fn operator_command(
    cp: &ControlPlane,
    identity: &str,
    listen: SocketAddr,
) -> Result<Command, Box<dyn std::error::Error>> {
    let mut cmd = Command::new(workspace_binary("gpuscope-operator")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Operator))
        .env("RUST_LOG", "info,gpuscope_operator=debug")
        .args(["--namespace", INSTALL_NAMESPACE, "--identity", identity, "--leader-lease-seconds", "4"])
        .arg("--listen")
        .arg(listen.to_string());
    Ok(cmd)
}

/// The shared control plane with one operator running for the whole test process.
pub(crate) fn shared_with_operator() -> Result<&'static ControlPlane, String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let cp = ControlPlane::shared().map_err(|e| e.to_string())?;
    DONE.get_or_init(|| {
        install(cp)?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port().map_err(|e| e.to_string())?));
        let cmd = operator_command(cp, "shared-operator", listen).map_err(|e| e.to_string())?;
        spawn_for_process_lifetime("gpuscope-operator (shared)", cmd, cp.dir().join("operator-shared.log"))
            .map_err(|e| e.to_string())
    })
    .clone()?;
    Ok(cp)
}

/// A node as the probe would report it: one H100 and the given XIDs (code, seconds ago), all logged during the
/// boot `BOOT_A`; `boot_id` is the node's boot now.
async fn report(
    client: &kube::Client,
    node: &str,
    boot_id: &str,
    xids: &[(u32, i64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let xid_boot = BOOT_A;
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(node).await?.is_none() {
        let n = Node { metadata: ObjectMeta { name: Some(node.into()), ..Default::default() }, ..Default::default() };
        nodes.create(&PostParams::default(), &n).await?;
    }
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    if api.get_opt(node).await?.is_none() {
        api.create(&PostParams::default(), &GpuNodeStatus::new(node, Default::default())).await?;
    }
    let now = jiff::Timestamp::now();
    let at = |secs_ago: i64| (now - jiff::SignedDuration::from_secs(secs_ago)).to_string();
    let recent: Vec<_> = xids
        .iter()
        .enumerate()
        .map(|(i, (code, ago))| {
            json!({ "code": code, "time": at(*ago), "pciBusId": "0000:18:00.0", "gpuUuid": GPU0, "source": "kmsg",
                    "bootId": xid_boot, "sequence": i + 1, "message": format!("XID {code} for the test") })
        })
        .collect();
    let totals: Vec<_> = xids
        .iter()
        .map(|(code, ago)| {
            json!({ "code": code, "pciBusId": "0000:18:00.0", "gpuUuid": GPU0, "count": 1, "firstSeen": at(*ago),
                    "lastSeen": at(*ago), "lastBootId": xid_boot, "lastMessage": format!("XID {code} for the test") })
        })
        .collect();
    let body = json!({
        "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": node },
        "status": {
            "probe": { "version": "test", "backend": "simulated", "lastReportTime": now.to_string(), "bootId": boot_id },
            "driverVersion": "570.86.15", "gpuCount": 1, "gpuModel": "NVIDIA H100 80GB HBM3",
            "gpus": [{ "index": 0, "uuid": GPU0, "productName": "NVIDIA H100 80GB HBM3", "pciBusId": "0000:18:00.0",
                       "temperatureCelsius": 40, "throttleReasons": [],
                       "ecc": { "enabled": true, "volatileUncorrected": 0, "volatileCorrected": 0 } }],
            "xids": { "totals": totals, "recent": recent },
        }
    });
    api.patch_status(node, &PatchParams::apply(PROBE_FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    renew_probe_lease(client, node).await?;
    Ok(())
}

async fn renew_probe_lease(client: &kube::Client, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), INSTALL_NAMESPACE);
    let body = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": format!("gpuscope-probe-{node}"), "namespace": INSTALL_NAMESPACE },
        "spec": { "holderIdentity": node, "leaseDurationSeconds": 120,
                  "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string() }
    });
    leases
        .patch(
            &format!("gpuscope-probe-{node}"),
            &PatchParams::apply(PROBE_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(())
}

fn condition<'a>(status: &'a gpuscope_crds::GpuNodeStatusStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

async fn gpu_healthy(api: &Api<GpuNodeStatus>, node: &str) -> Option<Condition> {
    let status = api.get_opt(node).await.ok()??.status?;
    condition(&status, "GPUHealthy").cloned()
}

async fn set_policy(cp: &ControlPlane, spec: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
    let api: Api<gpuscope_crds::policy::GpuHealthPolicy> = Api::all(cp.client().await?);
    let body = json!({ "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuHealthPolicy", "metadata": { "name": "default" }, "spec": spec });
    api.patch("default", &PatchParams::apply("sre").force(), &Patch::Apply(&body)).await?;
    Ok(())
}

#[tokio::test]
async fn xid_79_turns_gpu_healthy_false_on_the_object_and_the_node_with_an_event() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("xid79");
    report(&client, &node, BOOT_A, &[]).await?;
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let healthy = eventually("GPUHealthy True", Duration::from_secs(20), || async {
        gpu_healthy(&api, &node).await.filter(|c| c.status == "True")
    })
    .await?;
    assert_eq!(healthy.reason, "Healthy");

    let written = Instant::now();
    report(&client, &node, BOOT_A, &[(79, 1)]).await?;
    let cond = eventually("GPUHealthy False", Duration::from_secs(10), || async {
        gpu_healthy(&api, &node).await.filter(|c| c.status == "False")
    })
    .await?;
    let took = written.elapsed();
    assert!(took < Duration::from_secs(2), "the condition flipped after {took:?}");
    assert_eq!(cond.reason, "XidFallenOffBus");
    assert!(cond.message.contains("GPU 0"), "names the GPU: {}", cond.message);
    assert!(cond.message.contains("79"), "names the XID: {}", cond.message);
    assert!(cond.message.to_lowercase().contains("reboot"), "says what to do: {}", cond.message);
    assert!(cond.last_transition_time.0 >= healthy.last_transition_time.0);
    let status = api.get(&node).await?.status.ok_or("no status")?;
    assert_eq!(status.health, Some(gpuscope_crds::Health::Unhealthy));

    let nodes: Api<Node> = Api::all(client.clone());
    let node_cond = eventually("the Node condition", Duration::from_secs(10), || async {
        nodes
            .get(&node)
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "GPUHealthy" && c.status == "False")
    })
    .await?;
    assert_eq!(node_cond.reason.as_deref(), Some("XidFallenOffBus"));

    // `default` on current servers; 1.20 keeps Events of cluster-scoped objects in kube-system.
    let events: Api<Event> = Api::all(client);
    let event = eventually("a Warning Event", Duration::from_secs(10), || async {
        events.list(&ListParams::default()).await.ok()?.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(node.as_str())
                && e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("XidFallenOffBus")
        })
    })
    .await?;
    assert!(event.note.unwrap_or_default().contains("79"));
    Ok(())
}

#[tokio::test]
async fn condition_types_the_operator_no_longer_mirrors_are_removed_from_the_node() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("stale");
    report(&client, &node, BOOT_A, &[]).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let has = |types: Vec<String>, t: &str| types.iter().any(|x| x == t);
    let types_of = |nodes: Api<Node>, node: String| async move {
        let n = nodes.get(&node).await.ok()?;
        Some(n.status?.conditions?.into_iter().map(|c| c.type_).collect::<Vec<_>>())
    };
    eventually("GPUHealthy on the Node", Duration::from_secs(20), || async {
        types_of(nodes.clone(), node.clone()).await.filter(|t| has(t.clone(), "GPUHealthy"))
    })
    .await?;
    // An older version mirrored XIDErrors too; someone else owns example.com/Audited.
    let stale = json!({ "status": { "conditions": [
        { "type": "XIDErrors", "status": "True", "reason": "Old", "message": "left over",
          "lastTransitionTime": "2026-01-01T00:00:00Z", "lastHeartbeatTime": "2026-01-01T00:00:00Z" },
        { "type": "example.com/Audited", "status": "True", "reason": "Checked", "message": "not ours",
          "lastTransitionTime": "2026-01-01T00:00:00Z", "lastHeartbeatTime": "2026-01-01T00:00:00Z" } ] } });
    nodes.patch_status(&node, &PatchParams::default(), &Patch::Strategic(stale)).await?;
    renew_probe_lease(&client, &node).await?;
    let types = eventually("XIDErrors removed", Duration::from_secs(20), || async {
        types_of(nodes.clone(), node.clone()).await.filter(|t| !has(t.clone(), "XIDErrors"))
    })
    .await?;
    assert!(has(types.clone(), "GPUHealthy") && has(types, "example.com/Audited"), "only our stale type goes");
    Ok(())
}

#[tokio::test]
async fn an_application_xid_13_alone_keeps_the_gpu_healthy() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("xid13");
    report(&client, &node, BOOT_A, &[(13, 5)]).await?;
    let api: Api<GpuNodeStatus> = Api::all(client);
    // The operator may first see the object before the probe's fields arrive (health Unknown): wait for the
    // evaluation of the probe's data.
    let status = eventually("an evaluation", Duration::from_secs(20), || async {
        api.get_opt(&node).await.ok()??.status.filter(|s| s.health.is_some() && s.recent_xid_count == Some(1))
    })
    .await?;
    assert_eq!(condition(&status, "GPUHealthy").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(status.recent_xid_count, Some(1));
    let xid = condition(&status, "XIDErrors").ok_or("no XIDErrors condition")?;
    assert!(xid.message.contains("13"), "the XID is still reported: {}", xid.message);
    Ok(())
}

#[tokio::test]
async fn a_reboot_clears_xid_79_and_an_unchanged_object_is_not_rewritten() -> TestResult {
    let cp = shared_with_operator()?;
    let client = cp.client().await?;
    let node = unique_name("reboot");
    report(&client, &node, BOOT_A, &[(79, 30)]).await?;
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    eventually("Unhealthy", Duration::from_secs(20), || async {
        gpu_healthy(&api, &node).await.filter(|c| c.status == "False")
    })
    .await?;
    // The node rebooted: the probe reports a new boot id; evidence from the old boot no longer counts.
    report(&client, &node, BOOT_B, &[(79, 30)]).await?;
    eventually("healthy after the reboot", Duration::from_secs(10), || async {
        gpu_healthy(&api, &node).await.filter(|c| c.status == "True")
    })
    .await?;
    // Converged: repeated reconciles (requeues, lease renewals) issue no write.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let version = api.get(&node).await?.metadata.resource_version;
    for _ in 0..3 {
        renew_probe_lease(&client, &node).await?;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(api.get(&node).await?.metadata.resource_version, version, "an unchanged object was rewritten");
    Ok(())
}

#[tokio::test]
async fn policy_remediation_heartbeat_and_leader_failover_on_a_private_cluster() -> TestResult {
    let cp = ControlPlane::start()?;
    cp.apply_crds()?;
    install(&cp)?;
    let client = cp.client().await?;
    set_policy(
        &cp,
        json!({ "heartbeatTimeout": "4s", "remediation": { "mode": "taint", "maxUnavailablePercent": 10 } }),
    )
    .await?;

    // Two replicas: one leads.
    let listen_a = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let listen_b = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut a =
        Process::spawn("operator a", operator_command(&cp, "replica-a", listen_a)?, cp.dir().join("operator-a.log"))?;
    let mut b =
        Process::spawn("operator b", operator_command(&cp, "replica-b", listen_b)?, cp.dir().join("operator-b.log"))?;
    let leader_of = |addr: SocketAddr| async move {
        let (_, body) = http_get(addr, "/metrics").await.ok()?;
        metric_value(&body, "gpuscope_operator_leader")
    };
    let (leader, standby, leader_addr, standby_addr) = eventually("a leader", Duration::from_secs(30), || async {
        match (leader_of(listen_a).await, leader_of(listen_b).await) {
            (Some(1.0), Some(0.0)) => Some(("a", "b", listen_a, listen_b)),
            (Some(0.0), Some(1.0)) => Some(("b", "a", listen_b, listen_a)),
            _ => None,
        }
    })
    .await
    .map_err(|e| format!("{e}\n{}\n{}", a.log_tail(20), b.log_tail(20)))?;
    assert_eq!(leader_of(leader_addr).await, Some(1.0));

    // Twelve nodes fail at once; the budget (10 % of 12, at least 1) lets one be tainted.
    let nodes: Vec<String> = (0..12).map(|i| format!("gpu-{i:02}")).collect();
    for n in &nodes {
        report(&client, n, BOOT_A, &[(79, 1)]).await?;
    }
    let node_api: Api<Node> = Api::all(client.clone());
    let tainted = |api: Api<Node>| async move {
        let list = api.list(&ListParams::default()).await.ok()?;
        Some(
            list.items
                .iter()
                .filter(|n| {
                    n.spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| ts.iter().any(|t| t.key == "gpuscope.dev/gpu-unhealthy"))
                })
                .filter_map(|n| n.metadata.name.clone())
                .collect::<Vec<_>>(),
        )
    };
    let first = eventually("one tainted node", Duration::from_secs(30), || async {
        tainted(node_api.clone()).await.filter(|t| t.len() == 1)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(tainted(node_api.clone()).await.map(|t| t.len()), Some(1), "the budget must hold");

    // Kill the leader: the standby takes over within the Lease duration and keeps serving.
    let (killed, survivor) = if leader == "a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    killed.kill();
    eventually("the standby leads", Duration::from_secs(20), || async {
        (leader_of(standby_addr).await == Some(1.0)).then_some(())
    })
    .await
    .map_err(|e| format!("{e} ({standby} never took over)\n{}", survivor.log_tail(30)))?;

    // The tainted node recovers (reboot): the new leader removes the taint.
    report(&client, &first[0], BOOT_B, &[(79, 1)]).await?;
    eventually("the taint goes", Duration::from_secs(20), || async {
        tainted(node_api.clone()).await.filter(|t| !t.contains(&first[0]))
    })
    .await?;

    // A silent probe: its Lease is not renewed, so ProbeReporting goes Unknown after the 4 s timeout.
    let api: Api<GpuNodeStatus> = Api::all(client.clone());
    let quiet = &nodes[5];
    let cond = eventually("ProbeReporting Unknown", Duration::from_secs(20), || async {
        let status = api.get(quiet).await.ok()?.status?;
        condition(&status, "ProbeReporting").filter(|c| c.status == "Unknown").cloned()
    })
    .await?;
    assert_eq!(cond.reason, "HeartbeatTimeout");

    // An invalid policy is reported and ignored: the taint remediation stays in force.
    set_policy(&cp, json!({ "xidWindow": "forever", "remediation": { "mode": "taint" } })).await?;
    let policies: Api<gpuscope_crds::policy::GpuHealthPolicy> = Api::all(client);
    let status = eventually("the policy marked invalid", Duration::from_secs(20), || async {
        policies.get("default").await.ok()?.status.filter(|s| !s.valid)
    })
    .await?;
    assert!(status.message.unwrap_or_default().contains("xidWindow"));
    survivor.terminate(Duration::from_secs(10));
    Ok(())
}

#[tokio::test]
async fn the_operator_identity_may_do_what_it_needs_and_nothing_more() -> TestResult {
    let cp = shared_with_operator()?;
    let kubeconfig = cp.kubeconfig_for(Identity::Operator);
    let can = |args: &[&str]| gpuscope_tests::can_i(&kubeconfig, args);
    for allowed in [
        &["watch", "gpunodestatuses.gpuscope.dev"][..],
        &["patch", "gpunodestatuses.gpuscope.dev", "--subresource=status"],
        &["patch", "nodes", "--subresource=status"],
        &["patch", "nodes"],
        &["watch", "leases.coordination.k8s.io", "-n", INSTALL_NAMESPACE],
        &["create", "events.events.k8s.io", "-n", "default"],
    ] {
        assert!(can(allowed)?, "the operator needs {allowed:?}");
    }
    for denied in [
        &["delete", "nodes"][..],
        &["delete", "gpunodestatuses.gpuscope.dev"],
        &["create", "gpunodestatuses.gpuscope.dev"],
        &["patch", "gpuhealthpolicies.gpuscope.dev"],
        &["list", "secrets", "-A"],
        &["create", "pods", "-n", INSTALL_NAMESPACE],
        &["patch", "leases.coordination.k8s.io", "-n", "default"],
        &["create", "events.events.k8s.io", "-n", INSTALL_NAMESPACE],
    ] {
        assert!(!can(denied)?, "the operator must not be allowed {denied:?}");
    }
    Ok(())
}
