//! The GpuNodeStatus API as a user meets it: the CRD installs, two field managers share the status, `kubectl`
//! prints useful columns and explanations, and the server rejects malformed objects.

use std::time::Duration;

use gpuscope_crds::GpuNodeStatus;
use gpuscope_crds::gpu_node_status::{OPERATOR_FIELD_MANAGER, PROBE_FIELD_MANAGER};
use gpuscope_tests::{ControlPlane, eventually, run_err, run_ok, unique_name};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn new_object(name: &str) -> GpuNodeStatus {
    GpuNodeStatus::new(name, Default::default())
}

fn probe_status(name: &str, driver: &str) -> serde_json::Value {
    json!({
        "apiVersion": "gpuscope.dev/v1alpha1",
        "kind": "GpuNodeStatus",
        "metadata": { "name": name },
        "status": {
            "probe": { "version": "0.1.0", "backend": "simulated", "lastReportTime": "2026-11-25T10:00:00Z",
                       "bootId": "6b1c1c36-6a39-4c43-9a3f-0f6a1f2b8e11" },
            "driverVersion": driver,
            "cudaDriverVersion": "12.8",
            "nvmlVersion": "12.570.86.15",
            "gpuCount": 8,
            "gpuModel": "NVIDIA-H100-80GB-HBM3",
            "gpus": [{ "index": 0, "uuid": "GPU-0aaa", "productName": "NVIDIA H100 80GB HBM3",
                       "pciBusId": "0000:3b:00.0", "temperatureCelsius": 41,
                       "ecc": { "enabled": true, "volatileUncorrected": 0 } }],
            "xids": { "lastCode": 79, "lastTime": "2026-11-25T09:59:00Z",
                      "totals": [{ "code": 79, "pciBusId": "0000:3b:00.0", "count": 1,
                                   "firstSeen": "2026-11-25T09:59:00Z", "lastSeen": "2026-11-25T09:59:00Z" }],
                      "recent": [{ "code": 79, "time": "2026-11-25T09:59:00Z", "pciBusId": "0000:3b:00.0",
                                   "source": "kmsg", "message": "GPU has fallen off the bus." }] }
        }
    })
}

fn operator_status(name: &str, conditions: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "gpuscope.dev/v1alpha1",
        "kind": "GpuNodeStatus",
        "metadata": { "name": name },
        "status": {
            "health": "Unhealthy",
            "recentXidCount": 1,
            "verdicts": [{ "uuid": "GPU-0aaa", "index": 0, "health": "Unhealthy", "reasons": ["XidFallenOffBus"] }],
            "conditions": conditions,
        }
    })
}

fn condition(type_: &str, status: &str, reason: &str) -> serde_json::Value {
    json!({ "type": type_, "status": status, "reason": reason, "message": format!("{type_} is {status}"),
            "lastTransitionTime": "2026-11-25T10:00:01Z" })
}

#[tokio::test]
async fn crd_applies_with_kubectl_and_is_established() -> TestResult {
    let cp = ControlPlane::shared()?;
    let crd_dir = gpuscope_tests::control_plane::workspace_root().join("config/crd");
    // A user's (client-side) apply over what the harness installed must succeed.
    run_ok(cp.kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(&crd_dir))?;
    let out = run_ok(cp.kubectl().args([
        "get",
        "crd",
        "gpunodestatuses.gpuscope.dev",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Established\")].status} {.spec.scope} {.spec.names.shortNames} {.spec.names.categories}",
    ]))?;
    assert_eq!(out.trim(), r#"True Cluster ["gns"] ["gpu"]"#);
    Ok(())
}

#[tokio::test]
async fn probe_and_operator_share_the_status_without_conflict() -> TestResult {
    let cp = ControlPlane::shared()?;
    let client = cp.client().await?;
    let api: Api<GpuNodeStatus> = Api::all(client);
    let name = unique_name("share");
    api.create(&PostParams::default(), &new_object(&name)).await?;

    let probe = PatchParams::apply(PROBE_FIELD_MANAGER);
    let operator = PatchParams::apply(OPERATOR_FIELD_MANAGER);
    api.patch_status(&name, &probe, &Patch::Apply(probe_status(&name, "570.86.15"))).await?;
    api.patch_status(
        &name,
        &operator,
        &Patch::Apply(operator_status(&name, json!([condition("GPUHealthy", "False", "XidFallenOffBus")]))),
    )
    .await?;
    // The probe writes again, not forcing, without conditions in its body: no conflict, and the operator's
    // fields stay (each manager owns only what it applied).
    api.patch_status(&name, &probe, &Patch::Apply(probe_status(&name, "570.124.06"))).await?;
    // A third writer adds a condition of its own type: the list is a map keyed by type, so it merges.
    api.patch_status(
        &name,
        &PatchParams::apply("someone-else"),
        &Patch::Apply(json!({
            "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
            "status": { "conditions": [condition("example.com/Audited", "True", "Checked")] }
        })),
    )
    .await?;

    let obj = api.get_status(&name).await?;
    let status = obj.status.clone().ok_or("no status")?;
    assert_eq!(status.driver_version.as_deref(), Some("570.124.06"));
    assert_eq!(status.gpu_count, Some(8));
    assert_eq!(status.health, Some(gpuscope_crds::Health::Unhealthy));
    let types: Vec<String> = status.conditions.unwrap_or_default().into_iter().map(|c| c.type_).collect();
    assert_eq!(types, vec!["GPUHealthy".to_string(), "example.com/Audited".to_string()]);
    let xids = status.xids.ok_or("no xids")?;
    assert_eq!(xids.totals[0].count, 1);
    assert_eq!(xids.recent[0].source, gpuscope_crds::gpu_node_status::XidSource::Kmsg);

    // Server-side ownership is as designed: the probe owns gpus, the operator owns its condition.
    let managed = obj.metadata.managed_fields.unwrap_or_default();
    let owns = |manager: &str, field: &str| {
        managed.iter().any(|m| {
            m.manager.as_deref() == Some(manager)
                && m.fields_v1.as_ref().map(|f| f.0.to_string().contains(field)).unwrap_or(false)
        })
    };
    assert!(owns(PROBE_FIELD_MANAGER, "f:gpus"), "probe should own status.gpus: {managed:?}");
    assert!(!owns(PROBE_FIELD_MANAGER, "f:conditions"), "probe must not own conditions");
    assert!(owns(OPERATOR_FIELD_MANAGER, r#"k:{\"type\":\"GPUHealthy\"}"#), "operator should own its condition");

    // The operator taking a field the probe owns, without force, is a conflict the server reports.
    let err = api
        .patch_status(
            &name,
            &operator,
            &Patch::Apply(json!({
                "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
                "status": { "driverVersion": "0.0.0" }
            })),
        )
        .await
        .expect_err("a second manager writing the probe's field must conflict");
    assert!(err.to_string().contains("conflict"), "{err}");
    api.delete(&name, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_get_prints_the_columns_with_real_values() -> TestResult {
    let cp = ControlPlane::shared()?;
    let api: Api<GpuNodeStatus> = Api::all(cp.client().await?);
    let name = unique_name("columns");
    api.create(&PostParams::default(), &new_object(&name)).await?;
    api.patch_status(&name, &PatchParams::apply(PROBE_FIELD_MANAGER), &Patch::Apply(probe_status(&name, "570.86.15")))
        .await?;
    api.patch_status(
        &name,
        &PatchParams::apply(OPERATOR_FIELD_MANAGER),
        &Patch::Apply(operator_status(&name, json!([condition("GPUHealthy", "False", "XidFallenOffBus")]))),
    )
    .await?;

    for resource in ["gpunodestatus", "gns"] {
        let out = run_ok(cp.kubectl().args(["get", resource, &name]))?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().ok_or("no header")?.split_whitespace().collect();
        assert_eq!(header, ["NAME", "GPUS", "MODEL", "DRIVER", "HEALTH", "XIDS", "REPORTED", "AGE"], "{out}");
        let row: Vec<&str> = lines.next().ok_or("no row")?.split_whitespace().collect();
        assert_eq!(&row[..6], [name.as_str(), "8", "NVIDIA-H100-80GB-HBM3", "570.86.15", "Unhealthy", "1"], "{out}");
    }
    // The wide view adds the newest XID code.
    let wide = run_ok(cp.kubectl().args(["get", "gns", &name, "-o", "wide"]))?;
    assert!(wide.lines().next().unwrap_or_default().contains("LAST XID"), "{wide}");
    assert!(wide.lines().nth(1).unwrap_or_default().split_whitespace().any(|c| c == "79"), "{wide}");
    // The `gpu` category lists it too.
    let by_category = run_ok(cp.kubectl().args(["get", "gpu", "-o", "name"]))?;
    assert!(by_category.lines().any(|l| l == format!("gpunodestatus.gpuscope.dev/{name}")), "{by_category}");
    api.delete(&name, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn kubectl_explain_shows_field_descriptions() -> TestResult {
    let cp = ControlPlane::shared()?;
    // The API server publishes a new CRD's schema to its OpenAPI document a few seconds after it is established.
    let explain = |what: &str| run_ok(cp.kubectl().args(["explain", what]));
    eventually("the CRD schema in OpenAPI", Duration::from_secs(60), || async { explain("gpunodestatus").ok() })
        .await?;
    let out = explain("gpunodestatus.status.gpus")?;
    assert!(out.contains("pciBusId"), "{out}");
    assert!(out.contains("One entry per GPU NVML sees"), "{out}");
    let out = explain("gns.status.xids.totals.lastBootId")?;
    assert!(out.contains("Boot id of the node at the newest occurrence"), "{out}");
    Ok(())
}

#[tokio::test]
async fn server_rejects_objects_with_wrong_types() -> TestResult {
    let cp = ControlPlane::shared()?;
    let name = unique_name("invalid");
    let manifest = cp.dir().join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: gpuscope.dev/v1alpha1\nkind: GpuNodeStatus\nmetadata:\n  name: {name}\n\
             spec:\n  remediationPaused: \"definitely\"\n"
        ),
    )?;
    let err = run_err(cp.kubectl().args(["apply", "-f"]).arg(&manifest))?;
    assert!(err.contains("spec.remediationPaused"), "{err}");
    assert!(err.contains("boolean"), "{err}");

    // Status with a string count and an unknown health verdict: rejected, nothing stored. A merge patch is
    // validated against the whole schema (422 naming each field); server-side apply fails on the first field
    // it cannot type (1.20 answers 500 "failed to create typed patch object", newer servers 422).
    let api: Api<GpuNodeStatus> = Api::all(cp.client().await?);
    api.create(&PostParams::default(), &new_object(&name)).await?;
    let err = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "gpuCount": "eight", "health": "Broken" } })),
        )
        .await
        .expect_err("wrong types must be rejected");
    let text = err.to_string();
    assert!(text.contains("status.gpuCount"), "{text}");
    assert!(text.contains("status.health"), "{text}");
    assert!(text.contains("Unhealthy"), "the error lists the allowed verdicts: {text}");
    let err = api
        .patch_status(
            &name,
            &PatchParams::apply(PROBE_FIELD_MANAGER),
            &Patch::Apply(json!({
                "apiVersion": "gpuscope.dev/v1alpha1", "kind": "GpuNodeStatus", "metadata": { "name": name },
                "status": { "gpuCount": "eight" }
            })),
        )
        .await
        .expect_err("wrong types must be rejected through server-side apply too");
    assert!(err.to_string().contains("status.gpuCount"), "{err}");
    let stored = api.get_status(&name).await?;
    assert_eq!(stored.status, None, "a rejected write must change nothing");
    api.delete(&name, &Default::default()).await?;
    Ok(())
}

#[tokio::test]
async fn controller_manager_runs_so_namespaces_get_service_accounts() -> TestResult {
    let cp = ControlPlane::shared()?;
    let client = cp.client().await?;
    let ns = gpuscope_tests::fresh_namespace(&client, "sa").await?;
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client, &ns);
    let found = eventually("the default ServiceAccount", Duration::from_secs(30), || async {
        sa.get_opt("default").await.ok().flatten()
    })
    .await?;
    assert_eq!(found.metadata.namespace.as_deref(), Some(ns.as_str()));
    Ok(())
}
