//! Answer sizes and latencies on large simulated fleets, measured as the client receives them: the whole JSON-RPC
//! response of a `tools/call` (summary text, the JSON again as text, and `structuredContent`), built by the same
//! code the server runs ([`ToolAnswer`]'s `IntoCallToolResult`).
//!
//! The fleet follows the scale run (`gpuscope-bench fleet`): 8-GPU nodes with full telemetry (80% H100 with 18
//! NVLinks, 20% MIG A100 with 12), kubelet-sized Nodes, a GPU pod on every node; 2% of nodes with a fatal XID (79
//! or 48) and the operator's Unhealthy verdict, 10% with XID 13 three times on one GPU, 2% with one XID 31, and
//! (beyond the scale run) 1% with a stale probe.

use std::time::Instant;

use gpuscope_crds::gpu_node_status::{
    Backend, Clocks, EccCounters, GpuInfo, GpuMemory, GpuVerdict, MigInfo, NvLinks, ProbeInfo, RecoveryActionStatus,
    RemappedRows, Utilization, XidEvent, XidHistory, XidSource, XidTotal,
};
use gpuscope_crds::health::{condition_type, reason};
use gpuscope_crds::{GpuNodeStatus, GpuNodeStatusStatus, Health, xid};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{NumberOrString, ServerJsonRpcMessage, ServerResult};
use serde_json::json;

use super::*;
use crate::answer::{Answer, ToolAnswer};
use crate::snapshot::Snapshot;
use crate::snapshot::fixtures::snapshot;
use crate::status_fixtures::{gns, t};

/// The bound for every fleet-wide answer on the wire, whatever the fleet.
const FLEET_WIRE_BYTES: usize = 16 * 1024;
/// The bound for describe_gpu_node (and the other single-node answers) of one 8-GPU node with a fatal XID.
const DESCRIBE_WIRE_BYTES: usize = 11 * 1024;

/// What the plan does to node `i` (the scale run's plan, plus stale probes).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Trouble {
    None,
    /// XID 79 on GPU 3: the GPU fell off the bus (Unhealthy).
    FallenOffBus,
    /// XID 48 on GPU 0: double-bit ECC (Unhealthy).
    DoubleBitEcc,
    /// XID 13 three times on GPU 1 (application-class, below the policy's rate).
    AppFaults,
    /// XID 31 once on GPU 5 (application-class).
    PageFault,
    /// The probe stopped renewing its Lease two hours ago.
    Stale,
}

impl Trouble {
    fn of(i: usize) -> Trouble {
        match i % 100 {
            7 => Trouble::FallenOffBus,
            57 => Trouble::DoubleBitEcc,
            3 | 13 | 23 | 33 | 43 | 53 | 63 | 73 | 83 | 93 => Trouble::AppFaults,
            11 | 61 => Trouble::PageFault,
            97 => Trouble::Stale,
            _ => Trouble::None,
        }
    }

    /// (GPU index, code, driver message, repeats), as the scale run injects them.
    fn xid(self) -> Option<(u32, u32, &'static str, u64)> {
        match self {
            Trouble::FallenOffBus => Some((3, 79, "GPU has fallen off the bus.", 1)),
            Trouble::DoubleBitEcc => Some((0, 48, "An uncorrectable double bit error (DBE) has been detected.", 1)),
            Trouble::AppFaults => Some((1, 13, "Graphics Exception: ESR 0x405840=0x1000", 3)),
            Trouble::PageFault => Some((5, 31, "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f3a_0000", 1)),
            Trouble::None | Trouble::Stale => None,
        }
    }
}

fn name(i: usize) -> String {
    format!("fleet-{i:05}")
}

fn a100(i: usize) -> bool {
    i % 5 == 4
}

const H100_PCI: [&str; 8] = [
    "0000:18:00.0",
    "0000:2a:00.0",
    "0000:3a:00.0",
    "0000:5d:00.0",
    "0000:9a:00.0",
    "0000:ab:00.0",
    "0000:ba:00.0",
    "0000:db:00.0",
];
const A100_PCI: [&str; 8] = [
    "0000:07:00.0",
    "0000:0f:00.0",
    "0000:47:00.0",
    "0000:4e:00.0",
    "0000:87:00.0",
    "0000:90:00.0",
    "0000:b7:00.0",
    "0000:bd:00.0",
];

fn gpu_uuid(i: usize, g: u32) -> String {
    format!("GPU-{i:08x}-{g:04x}-4000-8000-000000000000")
}

fn pci_of(i: usize, g: u32) -> String {
    let table = if a100(i) { &A100_PCI } else { &H100_PCI };
    table.get(g as usize).copied().unwrap_or("0000:00:00.0").to_string()
}

/// A GPU as the probe writes it from the shipped scenarios: every field NVML reports.
fn gpu(i: usize, g: u32) -> GpuInfo {
    let a = a100(i);
    GpuInfo {
        index: g,
        uuid: gpu_uuid(i, g),
        product_name: Some(if a { "NVIDIA A100-SXM4-80GB" } else { "NVIDIA H100 80GB HBM3" }.into()),
        pci_bus_id: Some(pci_of(i, g)),
        serial: Some(format!("16549{:08}", i * 8 + g as usize)),
        memory: Some(GpuMemory {
            total_mib: if a { 81_920 } else { 81_559 },
            used_mib: Some(if a { 11_264 } else { 1 }),
        }),
        temperature_celsius: Some(31 + g % 4),
        power_draw_watts: Some(if a { 118 } else { 69 }),
        power_limit_watts: Some(if a { 400 } else { 700 }),
        utilization: Some(Utilization { gpu_percent: 0, memory_percent: 0 }),
        clocks: Some(Clocks {
            sm_mhz: Some(if a { 1410 } else { 345 }),
            memory_mhz: Some(if a { 1593 } else { 2619 }),
        }),
        throttle_reasons: Some(if a { vec![] } else { vec!["GpuIdle".into()] }),
        ecc: Some(EccCounters {
            enabled: true,
            volatile_corrected: Some(0),
            volatile_uncorrected: Some(0),
            aggregate_corrected: Some(0),
            aggregate_uncorrected: Some(0),
        }),
        retired_pages: None,
        remapped_rows: Some(RemappedRows { correctable: 0, uncorrectable: 0, pending: false, failure: false }),
        mig: Some(MigInfo {
            enabled: a,
            pending_enabled: Some(a),
            device_count: Some(if a { 7 } else { 0 }),
            device_uuids: None,
        }),
        nvlinks: Some(NvLinks { count: if a { 12 } else { 18 }, inactive: vec![] }),
        recovery_action: Some(RecoveryActionStatus {
            code: 0,
            action: "None".into(),
            source: XidSource::Nvml,
            time: None,
        }),
        pods: None,
        pods_omitted: None,
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: t("2026-11-25T11:00:00Z"),
        observed_generation: Some(1),
    }
}

/// The GpuNodeStatus of node `i`, written by the probe and judged by the operator the way they write it.
fn status(i: usize) -> GpuNodeStatus {
    let node = name(i);
    let trouble = Trouble::of(i);
    let boot = format!("00000000-0000-4000-8000-{i:012x}");
    let gpus: Vec<GpuInfo> = (0..8).map(|g| gpu(i, g)).collect();
    let mut verdicts: Vec<GpuVerdict> = (0..8)
        .map(|g| GpuVerdict {
            uuid: gpu_uuid(i, g),
            index: Some(g),
            health: Health::Healthy,
            reasons: vec![],
            message: None,
        })
        .collect();
    let mut xids = None;
    let mut recent_xid_count = 0;
    let mut gpu_healthy =
        condition(condition_type::GPU_HEALTHY, "True", reason::HEALTHY, "All 8 GPUs are healthy.".into());
    let mut xid_errors = condition(
        condition_type::XID_ERRORS,
        "False",
        reason::NO_RECENT_XIDS,
        "No XID within 24h in this boot.".into(),
    );
    let mut probe_reporting = condition(
        condition_type::PROBE_REPORTING,
        "True",
        reason::PROBE_HEARTBEAT,
        "The node probe renews its Lease within the 2m timeout.".into(),
    );
    if let Some((g, code, message, repeats)) = trouble.xid() {
        // The fleet's XIDs land within minutes of each other, as in the scale run.
        let last = format!("2026-11-25T11:{:02}:00Z", i % 10);
        let pci = pci_of(i, g);
        recent_xid_count = repeats;
        xids = Some(XidHistory {
            last_code: Some(code),
            last_time: Some(t(&last)),
            totals: vec![XidTotal {
                code,
                pci_bus_id: pci.clone(),
                gpu_uuid: Some(gpu_uuid(i, g)),
                count: repeats,
                first_seen: t("2026-11-25T10:50:00Z"),
                last_seen: t(&last),
                last_boot_id: Some(boot.clone()),
                last_message: Some(message.into()),
                pods: None,
            }],
            recent: (0..repeats)
                .map(|seq| XidEvent {
                    code,
                    time: if seq == 0 { t(&last) } else { t("2026-11-25T10:50:00Z") },
                    pci_bus_id: pci.clone(),
                    gpu_uuid: None,
                    gpu_instance: None,
                    compute_instance: None,
                    pid: Some(4242 + seq as u32),
                    process_name: Some("python3".into()),
                    message: Some(message.into()),
                    source: XidSource::Kmsg,
                    boot_id: Some(boot.clone()),
                    sequence: Some(1000 + seq),
                    pods: None,
                })
                .collect(),
        });
        let info = xid::lookup(code);
        let describe = format!("GPU {g} ({}, PCI {pci})", gpu_uuid(i, g));
        let seen = format!("XID {code} {} ({}) once, last at {last}", info.mnemonic, info.description);
        match trouble {
            Trouble::FallenOffBus | Trouble::DoubleBitEcc => {
                let (why, until) = if code == 79 {
                    (reason::XID_FALLEN_OFF_BUS, "Unhealthy until the node reboots.")
                } else {
                    (reason::UNCORRECTABLE_ECC, "Unhealthy until the driver's recovery action returns to None.")
                };
                let message = format!("{seen} in this boot; {until} {}", info.recommended_action);
                verdicts[g as usize] = GpuVerdict {
                    uuid: gpu_uuid(i, g),
                    index: Some(g),
                    health: Health::Unhealthy,
                    reasons: vec![why.into()],
                    message: Some(message.clone()),
                };
                gpu_healthy = condition(
                    condition_type::GPU_HEALTHY,
                    "False",
                    why,
                    format!("1 of 8 GPUs Unhealthy. {describe}: {message}"),
                );
                xid_errors = condition(condition_type::XID_ERRORS, "True", why, format!("{describe}: {message}"));
            }
            _ => {
                xid_errors = condition(
                    condition_type::XID_ERRORS,
                    "False",
                    reason::XIDS_BELOW_THRESHOLD,
                    format!(
                        "{repeats} XIDs within 24h in this boot, none above the policy's thresholds. {describe}: XID \
                         {code} {} {repeats} times, below the application rate of 5.",
                        info.mnemonic
                    ),
                );
            }
        }
    }
    let mut health = verdicts.iter().fold(Health::Healthy, |acc, v| acc.worst(v.health));
    if trouble == Trouble::Stale {
        probe_reporting = condition(
            condition_type::PROBE_REPORTING,
            "Unknown",
            reason::PROBE_STALE,
            "The node probe has not renewed its Lease for 2h (timeout 2m); its data may be old.".into(),
        );
        probe_reporting.last_transition_time = t("2026-11-25T10:00:00Z");
        for v in &mut verdicts {
            v.health = Health::Unknown;
            v.reasons = vec![reason::PROBE_STALE.into()];
        }
        health = Health::Unknown;
    }
    let mut o = gns(&node);
    o.status = Some(GpuNodeStatusStatus {
        probe: Some(ProbeInfo {
            version: "0.1.0".into(),
            backend: Backend::Simulated,
            last_report_time: Some(t("2026-11-25T11:55:00Z")),
            boot_id: Some(boot),
            unavailable_sources: None,
        }),
        driver_version: Some(if a100(i) { "570.124.06" } else { "570.86.15" }.into()),
        cuda_driver_version: Some("12.8".into()),
        nvml_version: Some("12.570.86.15".into()),
        gpu_count: Some(8),
        gpu_model: gpus.first().and_then(|g| g.product_name.clone()),
        unsupported_fields: Some(vec!["gpus.retiredPages".into()]),
        gpus: Some(gpus),
        xids,
        health: Some(health),
        recent_xid_count: Some(recent_xid_count),
        verdicts: Some(verdicts),
        conditions: Some(vec![
            gpu_healthy,
            xid_errors,
            condition(
                condition_type::MEMORY_ERRORS,
                "False",
                reason::NO_MEMORY_ERRORS,
                "No memory error above the policy's thresholds.".into(),
            ),
            condition(
                condition_type::THERMAL,
                "False",
                reason::TEMPERATURE_NORMAL,
                "All 8 GPUs below 85 °C and not thermally throttled.".into(),
            ),
            probe_reporting,
        ]),
        observed_generation: Some(1),
        pod_resources: None,
    });
    o
}

/// A Node the size a kubelet registers (the cache strips it as it would a watched one).
fn kubelet_node(i: usize) -> Node {
    let node = name(i);
    let product = if a100(i) { "NVIDIA-A100-SXM4-80GB" } else { "NVIDIA-H100-80GB-HBM3" };
    let images: Vec<_> = (0..40)
        .map(|k| {
            json!({
                "names": [format!("registry.example.com/team-{k}/image@sha256:{:064x}", i * 64 + k),
                          format!("registry.example.com/team-{k}/image:v{k}.{}", i % 7)],
                "sizeBytes": 100_000_000 + k * 1_000_000
            })
        })
        .collect();
    let conditions: Vec<_> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|c| {
            let ready = *c == "Ready";
            json!({
                "type": c,
                "status": if ready { "True" } else { "False" },
                "reason": if ready { "KubeletReady".to_string() } else { format!("KubeletHasNo{c}") },
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-11-25T11:59:00Z",
                "lastTransitionTime": "2026-11-20T10:00:00Z"
            })
        })
        .collect();
    let value = json!({
        "metadata": {
            "name": node,
            "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": {
                "kubernetes.io/hostname": node,
                "node.kubernetes.io/instance-type": if a100(i) { "p4d.24xlarge" } else { "p5.48xlarge" },
                "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "topology.kubernetes.io/region": "region-1",
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": "8",
                "nvidia.com/gpu.memory": "81920",
                "nvidia.com/cuda.driver.major": "570",
            },
        },
        "spec": { "podCIDR": format!("10.{}.{}.0/24", 64 + i / 256 % 64, i % 256) },
        "status": {
            "capacity": { "cpu": "192", "memory": "2097152000Ki", "pods": "110", "nvidia.com/gpu": "8" },
            "allocatable": { "cpu": "191500m", "memory": "2096000000Ki", "pods": "110", "nvidia.com/gpu": "8" },
            "conditions": conditions,
            "nodeInfo": {
                "machineID": format!("{i:032x}"), "systemUUID": format!("ec2{i:029x}"),
                "bootID": format!("00000000-0000-4000-8000-{i:012x}"), "kernelVersion": "6.8.0-1015-nvidia",
                "osImage": "Ubuntu 22.04.5 LTS", "containerRuntimeVersion": "containerd://1.7.22",
                "kubeletVersion": "v1.31.2", "kubeProxyVersion": "v1.31.2", "operatingSystem": "linux",
                "architecture": "amd64"
            },
            "images": images,
        }
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("node fixture: {e}"))
}

/// The GPU pod the scale run puts on node `i`, owned by a Job as a training pod would be.
fn gpu_pod(i: usize) -> Pod {
    let value = json!({
        "metadata": {
            "name": format!("train-{i:05}"),
            "namespace": format!("team-{}", i % 25),
            "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "Job", "name": format!("train-{i:05}"),
                                  "uid": format!("{i:08x}-0000-4000-8000-000000000000"), "controller": true }],
        },
        "spec": {
            "nodeName": name(i),
            "containers": [{ "name": "main", "image": "registry.example.com/ml/trainer:2026.11",
                             "resources": { "limits": { "nvidia.com/gpu": (1 + i % 8).to_string(), "cpu": "16" } } }],
        },
        "status": { "phase": "Running" }
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("pod fixture: {e}"))
}

/// `n` nodes as the scale run builds them.
fn fleet(n: usize) -> Snapshot {
    snapshot((0..n).map(status).collect(), (0..n).map(kubelet_node).collect(), (0..n).map(gpu_pod).collect())
}

/// The node describe_gpu_node is asked about: the first with a fatal XID, as the scale run picks it.
const FATAL_NODE: usize = 7;

/// Bytes of the JSON-RPC response the server sends for this answer: the HTTP body in JSON response mode (one
/// line on stdio), converted by the server's own `IntoCallToolResult`.
fn wire<T: Answer>(answer: T) -> usize {
    let response = ToolAnswer(answer).into_call_tool_result().unwrap_or_else(|e| panic!("{e:?}"));
    let message = ServerJsonRpcMessage::response(ServerResult::from(response), NumberOrString::Number(1));
    serde_json::to_vec(&message).map(|b| b.len()).unwrap_or_else(|e| panic!("{e}"))
}

/// A tool call with default (or single-node) arguments: its name and a closure giving the wire bytes.
type Call<'a> = (&'static str, Box<dyn Fn() -> usize + 'a>);

fn ok<T>(r: Result<T, crate::error::ToolError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Every fleet-wide call: no node_name, default arguments (explain_xid with the fleet's fatal code).
fn fleet_calls(snap: &Snapshot) -> Vec<Call<'_>> {
    vec![
        ("get_fleet_summary", Box::new(|| wire(ok(fleet::answer(snap, &Default::default()))))),
        ("get_gpu_health", Box::new(|| wire(ok(health::answer(snap, &Default::default()))))),
        ("get_gpu_inventory", Box::new(|| wire(ok(inventory::answer(snap, &Default::default()))))),
        ("analyze_xid_errors", Box::new(|| wire(ok(xids::answer(snap, &Default::default()))))),
        ("get_pod_gpu_allocation", Box::new(|| wire(ok(allocation::answer(snap, &Default::default()))))),
        (
            "explain_xid(79)",
            Box::new(|| {
                wire(ok(explain::answer(Some(snap), &explain::ExplainXidArgs { code: 79, ..Default::default() })))
            }),
        ),
    ]
}

/// The single-node calls the scale run times, on the fatal node.
fn node_calls(snap: &Snapshot) -> Vec<Call<'_>> {
    let node = name(FATAL_NODE);
    vec![
        (
            "describe_gpu_node",
            Box::new({
                let node = node.clone();
                move || {
                    wire(ok(describe::answer(
                        snap,
                        &describe::DescribeArgs { node_name: node.clone(), ..Default::default() },
                    )))
                }
            }),
        ),
        (
            "get_gpu_health(node)",
            Box::new({
                let node = node.clone();
                move || {
                    wire(ok(health::answer(
                        snap,
                        &health::HealthArgs { node_name: Some(node.clone()), ..Default::default() },
                    )))
                }
            }),
        ),
        (
            "get_gpu_inventory(node)",
            Box::new({
                let node = node.clone();
                move || {
                    wire(ok(inventory::answer(
                        snap,
                        &inventory::InventoryArgs { node_name: Some(node.clone()), ..Default::default() },
                    )))
                }
            }),
        ),
        (
            "analyze_xid_errors(node)",
            Box::new({
                let node = node.clone();
                move || {
                    wire(ok(xids::answer(snap, &xids::XidArgs { node_name: Some(node.clone()), ..Default::default() })))
                }
            }),
        ),
        (
            "get_pod_gpu_allocation(node)",
            Box::new(move || {
                wire(ok(allocation::answer(
                    snap,
                    &allocation::AllocationArgs { node_name: Some(node.clone()), ..Default::default() },
                )))
            }),
        ),
    ]
}

#[test]
fn the_fixture_fleet_has_the_scale_runs_mix() {
    let snap = fleet(1_000);
    let f = ok(fleet::answer(&snap, &Default::default()));
    assert_eq!((f.nodes.total, f.nodes.unhealthy, f.nodes.unknown), (1_000, 20, 10));
    assert_eq!(f.gpus.total, 8_000);
    let x = ok(xids::answer(&snap, &Default::default()));
    assert_eq!(x.totals.nodes, 20 + 100 + 20);
    assert_eq!(x.totals.occurrences, 20 + 300 + 20);
    assert_eq!(ok(allocation::answer(&snap, &Default::default())).totals.pods, 1_000);
}

#[test]
fn every_fleet_wide_answer_stays_under_16_kib_on_the_wire_at_1000_and_5000_nodes() {
    for n in [1_000, 5_000] {
        let snap = fleet(n);
        for (tool, call) in fleet_calls(&snap) {
            let bytes = call();
            assert!(bytes < FLEET_WIRE_BYTES, "{n} nodes, {tool}: {bytes} bytes on the wire");
        }
    }
}

#[test]
fn single_node_answers_about_an_eight_gpu_node_with_a_fatal_xid_stay_compact_on_the_wire() {
    let snap = fleet(1_000);
    for (tool, call) in node_calls(&snap) {
        let bytes = call();
        assert!(bytes < DESCRIBE_WIRE_BYTES, "{tool}: {bytes} bytes on the wire");
    }
}

/// `cargo test -p gpuscope-mcp --release -- --ignored --nocapture answer_sizes` prints the table: wire bytes and
/// the p50 of building, converting and serializing the answer (no HTTP).
#[test]
#[ignore = "measurement, not a check: run by hand"]
fn answer_sizes_and_latencies_at_scale() {
    for n in [100, 1_000, 5_000] {
        let snap = fleet(n);
        for (tool, call) in fleet_calls(&snap).into_iter().chain(node_calls(&snap)) {
            let mut micros: Vec<u128> = (0..51)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(call());
                    started.elapsed().as_micros()
                })
                .collect();
            micros.sort_unstable();
            println!("{n:>5} nodes  {tool:<30} {:>6} bytes  p50 {:>6} us", call(), micros[micros.len() / 2]);
        }
    }
}

/// The process's resident set, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kib.and_then(|k| k.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// `cargo test -p gpuscope-mcp --release -- --ignored --nocapture index_build` prints, per fleet size: the time to
/// build the stores and indexes from a full list (objects generated one at a time, as a paged list hands them
/// over; the generation's own time printed apart), the RSS the cache adds, and each tool's p50 / p99 in-process.
#[test]
#[ignore = "measurement, not a check: run by hand"]
fn index_build_and_answer_latency_up_to_50000_nodes() {
    // As the facade's main does, before anything allocates much.
    let _ = crate::malloc::tune(|_| None);
    for n in [1_000, 5_000, 50_000] {
        let started = Instant::now();
        for i in 0..n {
            std::hint::black_box((status(i), kubelet_node(i), gpu_pod(i)));
        }
        let generating = started.elapsed();
        let before = rss_mib();
        let started = Instant::now();
        let cache = crate::cache::ClusterCache::from_objects(
            "scale",
            (0..n).map(status),
            (0..n).map(kubelet_node),
            (0..n).map(gpu_pod),
        );
        let building = started.elapsed().saturating_sub(generating);
        let added = rss_mib() - before;
        println!(
            "{n:>6} nodes  stores + indexes built from a full list in {:.2} s (generating the objects: {:.2} s more); \
             RSS +{added:.1} MiB",
            building.as_secs_f64(),
            generating.as_secs_f64()
        );
        let snap = cache.snapshot(crate::snapshot::fixtures::NOW.parse().unwrap_or_default());
        for (tool, call) in fleet_calls(&snap).into_iter().chain(node_calls(&snap)) {
            let calls = if n >= 50_000 { 21 } else { 101 };
            let mut micros: Vec<u128> = (0..calls)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(call());
                    started.elapsed().as_micros()
                })
                .collect();
            micros.sort_unstable();
            let p99 = micros[(micros.len() * 99).div_ceil(100) - 1];
            println!("{n:>6} nodes  {tool:<30} p50 {:>8} us  p99 {:>8} us", micros[micros.len() / 2], p99);
        }
        drop(snap);
        drop(cache);
    }
}
