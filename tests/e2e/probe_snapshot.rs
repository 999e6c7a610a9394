//! `gpuscope-probe snapshot` as an SRE runs it on a node: the real binary against the fake libnvidia-ml.so.1 (the
//! probe's real NVML code path), no API server. It prints the status the probe would write and what the driver
//! could not report, or says which library it could not load.

use std::path::Path;
use std::process::{Command, Output};

use gpuscope_tests::fake_nvml::FakeNvml;
use gpuscope_tests::workspace_binary;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A Turing T4 whose driver supports neither the serial nor the recovery action, and a second GPU that fell off
/// the bus.
const T4_AND_A_LOST_GPU: &str = "
driver_version=535.104.05
nvml_version=12.535.104.05
cuda_driver_version=12020
device_count=2
gpu.0.uuid=GPU-3f1e2d4c-5b6a-4798-8c0d-1e2f3a4b5c6d
gpu.0.name=Tesla T4
gpu.0.serial=not_supported
gpu.0.pci_bus_id=00000000:3B:00.0
gpu.0.memory_total_mib=15360
gpu.0.memory_used_mib=420
gpu.0.temperature=38
gpu.0.recovery_action=not_supported
gpu.1.lost=1
";

const BOOT_ID: &str = "5f0c1f8e-2d2b-4d6e-9c51-1f2e3d4c5b6a";

/// Run `gpuscope-probe snapshot` with `args` plus a boot id file and (unless `args` name one) an empty kernel log
/// in `dir`.
fn snapshot(dir: &Path, args: &[&str]) -> Result<Output, Box<dyn std::error::Error>> {
    std::fs::write(dir.join("boot_id"), format!("{BOOT_ID}\n"))?;
    std::fs::write(dir.join("kmsg"), b"")?;
    let mut cmd = Command::new(workspace_binary("gpuscope-probe")?);
    cmd.arg("snapshot").arg("--boot-id-file").arg(dir.join("boot_id"));
    if !args.contains(&"--kmsg-path") {
        cmd.arg("--kmsg-path").arg(dir.join("kmsg"));
    }
    // Nothing from the test's environment: the snapshot needs no node name, namespace or cluster.
    for var in ["NODE_NAME", "KUBECONFIG", "GPUSCOPE_BACKEND", "GPUSCOPE_NVML_LIBRARY", "GPUSCOPE_KMSG_PATH"] {
        cmd.env_remove(var);
    }
    Ok(cmd.args(args).output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The printed snapshot without its report time, which differs between two runs.
fn without_time(mut v: Value) -> Value {
    if let Some(probe) = v.pointer_mut("/status/probe").and_then(Value::as_object_mut) {
        probe.remove("lastReportTime");
    }
    v
}

#[test]
fn snapshot_prints_the_status_the_probe_would_write_and_the_fields_the_driver_did_not_support() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = FakeNvml::build(dir.path(), &[], T4_AND_A_LOST_GPU)?;
    let library = fake.library().to_str().ok_or("library path is not UTF-8")?;
    let out = snapshot(dir.path(), &["--nvml-library", library, "--output", "json"])?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    let json: Value = serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))?;

    assert_eq!(json["source"], json!({ "backend": "nvml", "path": library }));
    let status = &json["status"];
    assert_eq!(status["probe"]["backend"], "nvml");
    assert_eq!(status["probe"]["bootId"], BOOT_ID);
    assert!(status["probe"]["lastReportTime"].is_string(), "{status}");
    assert_eq!(
        (&status["driverVersion"], &status["cudaDriverVersion"], &status["gpuCount"], &status["gpuModel"]),
        (&json!("535.104.05"), &json!("12.2"), &json!(1), &json!("Tesla T4"))
    );
    let gpu = &status["gpus"][0];
    assert_eq!(
        (&gpu["uuid"], &gpu["pciBusId"]),
        (&json!("GPU-3f1e2d4c-5b6a-4798-8c0d-1e2f3a4b5c6d"), &json!("0000:3b:00.0"))
    );
    assert_eq!(gpu["memory"]["totalMib"], 15360);
    assert!(gpu.get("serial").is_none() && gpu.get("recoveryAction").is_none(), "unsupported means absent: {gpu}");
    let unsupported = json!(["gpus.recoveryAction", "gpus.serial"]);
    assert_eq!(json["unsupportedByDriver"], unsupported);
    assert_eq!(status["unsupportedFields"], unsupported, "both XID sources opened");
    assert!(json.get("unavailableXidSources").is_none(), "{json}");
    assert_eq!(json["lostGpus"], json!([{ "index": 1 }]));
    assert!(status.get("xids").is_none(), "a snapshot reads no XIDs");
    assert!(stderr.contains("1 GPU(s) read through NVML (") && stderr.contains("1 GPU(s) lost"), "{stderr}");

    // The default output is YAML with the same content.
    let yaml_out = snapshot(dir.path(), &["--nvml-library", library])?;
    assert!(yaml_out.status.success(), "{}", text(&yaml_out.stderr));
    let yaml: Value = serde_saphyr::from_str(&text(&yaml_out.stdout))?;
    assert_eq!(without_time(yaml), without_time(json));
    Ok(())
}

#[test]
fn snapshot_names_the_xid_sources_the_probe_could_not_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let fake = FakeNvml::build(dir.path(), &["nvmlEventSetCreate"], T4_AND_A_LOST_GPU)?;
    let library = fake.library().to_str().ok_or("library path is not UTF-8")?;
    let missing_kmsg = dir.path().join("no-kmsg-here");
    let missing_kmsg = missing_kmsg.to_str().ok_or("path is not UTF-8")?;
    let out = snapshot(dir.path(), &["--nvml-library", library, "-o", "json", "--kmsg-path", missing_kmsg])?;
    assert!(out.status.success(), "a missing XID source is no failure: {}", text(&out.stderr));
    let json: Value = serde_json::from_str(&text(&out.stdout))?;
    let unavailable = &json["unavailableXidSources"];
    let kernel_log = unavailable["xids.kernelLog"].as_str().unwrap_or_default();
    assert!(kernel_log.contains(missing_kmsg), "{unavailable}");
    assert!(unavailable["xids.nvmlEvents"].as_str().is_some_and(|s| !s.is_empty()), "{unavailable}");
    assert_eq!(
        json["status"]["unsupportedFields"],
        json!(["gpus.recoveryAction", "gpus.serial", "xids.kernelLog", "xids.nvmlEvents"])
    );
    assert_eq!(json["unsupportedByDriver"], json!(["gpus.recoveryAction", "gpus.serial"]));
    Ok(())
}

#[test]
fn snapshot_without_the_library_fails_naming_the_path_it_tried() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lib64/libnvidia-ml.so.1");
    let out = snapshot(dir.path(), &["--nvml-library", path.to_str().ok_or("path is not UTF-8")?])?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", text(&out.stdout));
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("--nvml-library"), "{stderr}");
    Ok(())
}

#[test]
fn snapshot_of_a_scenario_needs_no_gpu_and_no_node_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let scenario = gpuscope_tests::control_plane::workspace_root().join("node-probe/scenarios/healthy-8x-h100.yaml");
    let out = snapshot(dir.path(), &["--backend", "simulated", "--scenario", scenario.to_str().ok_or("not UTF-8")?])?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml: Value = serde_saphyr::from_str(&text(&out.stdout))?;
    assert_eq!((&yaml["source"]["backend"], &yaml["status"]["gpuCount"]), (&json!("simulated"), &json!(8)));
    Ok(())
}
