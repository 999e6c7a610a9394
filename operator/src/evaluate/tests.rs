//! Table tests of the health evaluation: every XID class of the rule table, the NVML evidence, the heartbeat,
//! lastTransitionTime, transitions, requeue and remediation.

use gpuscope_crds::gpu_node_status::{
    Backend, EccCounters, GpuInfo, GpuNodeStatusStatus, GpuVerdict, ProbeInfo, RecoveryActionStatus, RemappedRows,
    RetiredPages, XidEvent, XidHistory, XidSource, XidTotal,
};
use gpuscope_crds::policy::{
    EffectivePolicy, EffectiveXidOverride, GpuHealthPolicySpec, RemediationMode, XidOverrideHealth, parse_duration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

const BOOT: &str = "4f1c2d3e-boot-current";
const OLD_BOOT: &str = "0a9b8c7d-boot-earlier";

fn now() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().expect("timestamp")
}

fn ago(d: &str) -> Timestamp {
    minus(now(), parse_duration(d).expect("duration"))
}

fn later(d: &str) -> Timestamp {
    plus(now(), parse_duration(d).expect("duration"))
}

fn uuid(i: u32) -> String {
    format!("GPU-5a4c2e1b-0000-4000-8000-{i:012}")
}

fn pci(i: u32) -> String {
    format!("0000:{:02x}:00.0", 0x10 + i)
}

fn gpu(i: u32) -> GpuInfo {
    GpuInfo {
        index: i,
        uuid: uuid(i),
        product_name: Some("NVIDIA H100 80GB HBM3".into()),
        pci_bus_id: Some(pci(i)),
        temperature_celsius: Some(45),
        throttle_reasons: Some(vec![]),
        ecc: Some(EccCounters {
            enabled: true,
            volatile_corrected: Some(3),
            volatile_uncorrected: Some(0),
            ..Default::default()
        }),
        remapped_rows: Some(RemappedRows::default()),
        ..Default::default()
    }
}

/// A node with `n` healthy GPUs, a fresh Lease and a probe that reported a minute ago.
fn node(n: u32) -> EvaluationInput {
    EvaluationInput {
        status: GpuNodeStatusStatus {
            probe: Some(ProbeInfo {
                version: "0.1.0".into(),
                backend: Backend::Simulated,
                last_report_time: Some(Time(ago("1m"))),
                boot_id: Some(BOOT.into()),
                unavailable_sources: None,
            }),
            gpu_count: Some(n),
            gpus: Some((0..n).map(gpu).collect()),
            ..Default::default()
        },
        node_boot_id: Some(BOOT.into()),
        probe_lease: ProbeLease::RenewedAt(ago("10s")),
        generation: Some(3),
        ..Default::default()
    }
}

fn xid(gpu: u32, code: u32, at: Timestamp) -> XidEvent {
    XidEvent {
        code,
        time: Time(at),
        pci_bus_id: pci(gpu),
        gpu_uuid: Some(uuid(gpu)),
        gpu_instance: None,
        compute_instance: None,
        pid: Some(4242),
        process_name: Some("python3".into()),
        message: None,
        source: XidSource::Kmsg,
        boot_id: Some(BOOT.into()),
        sequence: None,
        pods: None,
    }
}

fn xid154(gpu: u32, at: Timestamp, from: u32, to: u32) -> XidEvent {
    XidEvent {
        message: Some(format!("GPU recovery action changed from 0x{from:x} (Old) to 0x{to:x} (New)")),
        pid: None,
        process_name: None,
        ..xid(gpu, 154, at)
    }
}

/// Records events the way the probe does: coalesced totals per (GPU, code) and the newest 32 raw events.
fn record(input: &mut EvaluationInput, events: impl IntoIterator<Item = XidEvent>) {
    let history = input.status.xids.get_or_insert_with(XidHistory::default);
    for e in events {
        match history.totals.iter_mut().find(|t| t.code == e.code && t.pci_bus_id == e.pci_bus_id) {
            Some(t) => {
                t.count += 1;
                t.first_seen = t.first_seen.clone().min(e.time.clone());
                if e.time >= t.last_seen {
                    t.last_seen = e.time.clone();
                    t.last_boot_id = e.boot_id.clone();
                    t.last_message = e.message.clone();
                }
            }
            None => history.totals.push(XidTotal {
                code: e.code,
                pci_bus_id: e.pci_bus_id.clone(),
                gpu_uuid: e.gpu_uuid.clone(),
                count: 1,
                first_seen: e.time.clone(),
                last_seen: e.time.clone(),
                last_boot_id: e.boot_id.clone(),
                last_message: e.message.clone(),
                pods: None,
            }),
        }
        history.recent.push(e);
    }
    history.recent.sort_by(|a, b| b.time.cmp(&a.time));
    history.recent.truncate(gpuscope_crds::gpu_node_status::MAX_RECENT_XIDS);
    history.last_code = history.recent.first().map(|e| e.code);
    history.last_time = history.recent.first().map(|e| e.time.clone());
}

/// `count` occurrences of `code` on `gpu`, one minute apart, the newest at `newest`.
fn repeated(gpu: u32, code: u32, count: u32, newest: Timestamp) -> Vec<XidEvent> {
    (0..count).map(|i| xid(gpu, code, minus(newest, Duration::from_secs(60 * u64::from(i))))).collect()
}

fn eval(input: &EvaluationInput) -> Evaluation {
    evaluate(input, &EffectivePolicy::default(), now())
}

fn cond<'e>(e: &'e Evaluation, type_: &str) -> &'e Condition {
    e.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
}

fn verdict(e: &Evaluation, index: u32) -> &GpuVerdict {
    e.verdicts.iter().find(|v| v.index == Some(index)).unwrap_or_else(|| panic!("no verdict for GPU {index}"))
}

/// (health, reasons) of one GPU: the shape most table rows assert.
fn judged(e: &Evaluation, index: u32) -> (Health, Vec<&str>) {
    let v = verdict(e, index);
    (v.health, v.reasons.iter().map(String::as_str).collect())
}

fn status_reason(c: &Condition) -> (&str, &str) {
    (c.status.as_str(), c.reason.as_str())
}

/// The next reconcile's input: same probe data, the operator's own status from `e` as "previous".
fn next(input: &EvaluationInput, e: &Evaluation) -> EvaluationInput {
    EvaluationInput {
        previous_conditions: e.conditions.clone(),
        previous_verdicts: e.verdicts.clone(),
        ..input.clone()
    }
}

fn policy(spec: serde_json::Value) -> EffectivePolicy {
    let spec: GpuHealthPolicySpec = serde_json::from_value(spec).expect("spec");
    spec.validate().expect("valid policy")
}

fn healthy() -> (Health, Vec<&'static str>) {
    (Health::Healthy, vec![])
}

// ---------------------------------------------------------------------------------------------------------------
// XIDs, class by class

#[test]
fn xid_79_makes_the_gpu_unhealthy_until_the_node_reboots() {
    let mut input = node(2);
    // 30 hours ago: outside the 24h window, yet the same boot.
    record(&mut input, [XidEvent { message: Some("GPU has fallen off the bus.".into()), ..xid(1, 79, ago("30h")) }]);
    let e = eval(&input);
    assert_eq!(judged(&e, 1), (Health::Unhealthy, vec!["XidFallenOffBus"]));
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.health, Health::Unhealthy);
    let summary = cond(&e, "GPUHealthy");
    assert_eq!(status_reason(summary), ("False", "XidFallenOffBus"));
    assert!(
        summary.message.starts_with(&format!(
            "1 of 2 GPUs Unhealthy. GPU 1 ({}, PCI 0000:11:00.0): XID 79 ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS (GPU \
             has fallen off the bus), last at 2026-11-24T06:00:00Z in this boot; Unhealthy until the node reboots. \
             Drain the node and reboot it",
            uuid(1)
        )),
        "{}",
        summary.message
    );
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("True", "XidFallenOffBus"));
    // Outside the window: the count is zero, the verdict stands.
    assert_eq!(e.recent_xid_count, 0);

    // The node reboots: the boot id changes and the old boot's evidence no longer counts.
    let rebooted = EvaluationInput { node_boot_id: Some("new-boot".into()), ..input.clone() };
    let e = eval(&rebooted);
    assert_eq!(judged(&e, 1), healthy());
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("True", "Healthy"));
}

#[test]
fn xid_79_with_the_gpu_gone_from_nvml_names_the_cause_first() {
    let mut input = node(2);
    record(&mut input, [xid(1, 79, ago("5m"))]);
    let before = eval(&input);
    input.status.gpus = Some(vec![gpu(0)]);
    let e = eval(&next(&input, &before));
    assert_eq!(judged(&e, 1), (Health::Unhealthy, vec!["XidFallenOffBus", "GpuMissing"]));
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("False", "XidFallenOffBus"));
}

#[test]
fn xid_151_is_unhealthy_until_the_node_reboots() {
    let mut input = node(1);
    record(&mut input, [xid(0, 151, ago("3d"))]);
    assert_eq!(judged(&eval(&input), 0), (Health::Unhealthy, vec!["XidCritical"]));
    let rebooted = EvaluationInput { node_boot_id: Some("new-boot".into()), ..input };
    assert_eq!(judged(&eval(&rebooted), 0), healthy());
}

#[test]
fn a_reboot_class_xid_without_boot_ids_is_bounded_by_the_window() {
    let mut input = node(1);
    let unknown_boot = |at| XidEvent { boot_id: None, ..xid(0, 79, at) };
    record(&mut input, [unknown_boot(ago("30h"))]);
    input.node_boot_id = None;
    input.status.probe = None;
    assert_eq!(judged(&eval(&input), 0), healthy(), "no boot id can prove it is current: the window bounds it");
    let mut recent = node(1);
    recent.node_boot_id = None;
    recent.status.probe = None;
    record(&mut recent, [unknown_boot(ago("2h"))]);
    let e = eval(&recent);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["XidFallenOffBus"]));
    assert!(
        verdict(&e, 0)
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("boot id unknown: at most until 2026-11-26T10:00:00Z")
    );
}

#[test]
fn xid_13_alone_does_not_make_a_gpu_unhealthy() {
    let mut input = node(1);
    record(&mut input, [xid(0, 13, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 1);
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("True", "Healthy"));
    let x = cond(&e, "XIDErrors");
    assert_eq!(status_reason(x), ("False", "XidsBelowThreshold"));
    assert_eq!(
        x.message,
        format!(
            "1 XID within 24h in this boot, none above the policy's thresholds. GPU 0 ({}, PCI 0000:10:00.0): XID 13 \
             ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY (Graphics Engine Exception), once \
             within 24h, last at 2026-11-25T11:00:00Z.",
            uuid(0)
        )
    );
}

#[test]
fn xid_13_above_rate_degrades() {
    for (count, expected) in [(5, healthy()), (6, (Health::Degraded, vec!["XidRateExceeded"]))] {
        let mut input = node(1);
        record(&mut input, repeated(0, 13, count, ago("10m")));
        let e = eval(&input);
        assert_eq!(judged(&e, 0), expected, "{count} times");
        assert_eq!(e.recent_xid_count, u64::from(count));
    }
    let mut input = node(1);
    record(&mut input, repeated(0, 13, 6, ago("10m")));
    let e = eval(&input);
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("True", "XidRateExceeded"), "Degraded is still usable");
    let x = cond(&e, "XIDErrors");
    assert_eq!(status_reason(x), ("True", "XidRateExceeded"));
    assert!(
        x.message.contains("6 times within 24h, last at 2026-11-25T11:50:00Z: more than the policy's 5."),
        "{}",
        x.message
    );
    assert!(x.message.contains("compute-sanitizer"), "the catalog's advice: {}", x.message);
}

#[test]
fn below_threshold_xids_are_listed_in_gpu_order() {
    let mut input = node(3);
    // UUID order differs from index order: GPU 2's UUID sorts first.
    input.status.gpus = input.status.gpus.map(|mut g| {
        g[2].uuid = "GPU-0000-first-by-uuid".into();
        g
    });
    record(&mut input, [XidEvent { gpu_uuid: Some("GPU-0000-first-by-uuid".into()), ..xid(2, 13, ago("1h")) }]);
    record(&mut input, [xid(0, 31, ago("2h")), xid(0, 13, ago("3h"))]);
    let message = cond(&eval(&input), "XIDErrors").message.clone();
    let gpu0 = message.find("GPU 0 (").expect("GPU 0 listed");
    let gpu2 = message.find("GPU 2 (").expect("GPU 2 listed");
    assert!(gpu0 < gpu2, "{message}");
    assert!(message.find("XID 13 ").expect("13") < message.find("XID 31 ").expect("31"), "{message}");
}

#[test]
fn the_rate_counts_per_gpu_and_per_code() {
    let mut input = node(2);
    record(&mut input, repeated(0, 13, 3, ago("10m")));
    record(&mut input, repeated(0, 31, 3, ago("10m")));
    record(&mut input, repeated(1, 13, 3, ago("10m")));
    let e = eval(&input);
    assert_eq!((judged(&e, 0), judged(&e, 1)), (healthy(), healthy()));
    assert_eq!(e.recent_xid_count, 9);
}

#[test]
fn application_class_xids_degrade_only_above_rate() {
    for code in [8, 13, 31, 32, 43, 63, 68, 69, 92, 94, 121, 137] {
        let mut once = node(1);
        record(&mut once, [xid(0, code, ago("1h"))]);
        assert_eq!(judged(&eval(&once), 0), healthy(), "XID {code} once");
        let mut often = node(1);
        record(&mut often, repeated(0, code, 6, ago("1h")));
        assert_eq!(judged(&eval(&often), 0), (Health::Degraded, vec!["XidRateExceeded"]), "XID {code} 6 times");
    }
}

#[test]
fn xid_45_never_escalates() {
    let mut input = node(1);
    record(&mut input, repeated(0, 45, 30, ago("1m")));
    let e = eval(&input);
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 30);
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("False", "XidsBelowThreshold"));
}

#[test]
fn reset_gpu_xids_are_unhealthy_until_a_reset_and_a_clear_by_the_window_says_it_is_policy() {
    for code in [46, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 158] {
        let mut fresh = node(1);
        record(&mut fresh, [xid(0, code, ago("23h"))]);
        assert_eq!(judged(&eval(&fresh), 0), (Health::Unhealthy, vec!["XidCritical"]), "XID {code} 23h ago");
        let mut old = node(1);
        record(&mut old, [xid(0, code, ago("25h"))]);
        assert_eq!(judged(&eval(&old), 0), healthy(), "XID {code} 25h ago");
    }
    let mut input = node(1);
    record(&mut input, [xid(0, 95, ago("23h"))]);
    let message = verdict(&eval(&input), 0).message.clone().unwrap_or_default();
    assert!(
        message.starts_with(
            "XID 95 ROBUST_CHANNEL_UNCONTAINED_ERROR (Uncontained memory error), once within 24h, last at \
             2026-11-24T13:00:00Z; it is Unhealthy until a reset is seen (the driver's recovery action back to None, \
             or a reboot); by policy at the latest when 24h pass without a repeat (2026-11-25T13:00:00Z)."
        ),
        "{message}"
    );
    // NVIDIA's remedy is a reset, not time: a clear by the window alone is said to be the policy's.
    let mut old = node(2);
    record(&mut old, [xid(1, 95, ago("25h"))]);
    let e = eval(&old);
    let cleared = verdict(&e, 1);
    assert_eq!((cleared.health, cleared.reasons.len()), (Health::Healthy, 0));
    assert_eq!(
        cleared.message.as_deref(),
        Some(
            "XID 95 last at 2026-11-24T11:00:00Z: Healthy again by the policy's 24h window, not by evidence of a \
             reset; reset the GPU if nobody did."
        )
    );
    assert_eq!(
        cond(&e, "GPUHealthy").message,
        "All 2 GPUs are healthy. Cleared by the policy's window, not by a reset: GPU 1 (see status.verdicts)."
    );
    // With evidence of a reset (the recovery action back to None after it) nothing is said.
    record(&mut old, [xid154(1, ago("24h"), 1, 0)]);
    assert_eq!(verdict(&eval(&old), 1).message, None);
}

#[test]
fn other_critical_buckets_act_like_reset_gpu() {
    // 54 CHECK_MECHANICALS, 78 UPDATE_SWFW, 61 CONTACT_SUPPORT (unused on Ampere and newer).
    for code in [54, 78, 61] {
        let mut input = node(1);
        record(&mut input, [xid(0, code, ago("1h"))]);
        assert_eq!(judged(&eval(&input), 0), (Health::Unhealthy, vec!["XidCritical"]), "XID {code}");
    }
    // 167 (PCIe fatal timeout) and 169 (SEC2 halt) have no bucket yet: like 62, a reset.
    for code in [167, 169] {
        let mut input = node(1);
        record(&mut input, [xid(0, code, ago("1h"))]);
        assert_eq!(judged(&eval(&input), 0), (Health::Unhealthy, vec!["XidCritical"]), "XID {code}");
    }
}

#[test]
fn xid_159_follows_check_uvm_reset_if_uvm_or_vgpu_is_in_use_otherwise_ignore() {
    let mut input = node(1);
    record(&mut input, [xid(0, 159, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Degraded, vec!["XidCheckUvm"]));
    let message = verdict(&e, 0).message.clone().unwrap_or_default();
    assert!(message.contains("reset the GPU if UVM or vGPU is in use on it, otherwise ignore it"), "{message}");
    assert!(!message.contains("restart the application"), "{message}");
}

#[test]
fn reset_gpu_xid_is_remedied_when_the_recovery_action_returns_to_none() {
    let mut input = node(1);
    record(&mut input, [xid(0, 95, ago("2h")), xid154(0, ago("2h"), 0, 1)]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["RecoveryActionRequired", "XidCritical"]));
    record(&mut input, [xid154(0, ago("1h"), 1, 0)]);
    assert_eq!(judged(&eval(&input), 0), healthy());

    // A None reported before the XID is no remedy for it.
    let mut input = node(1);
    input.status.gpus = Some(vec![GpuInfo {
        recovery_action: Some(RecoveryActionStatus {
            code: 0,
            action: "None".into(),
            source: XidSource::Nvml,
            time: Some(Time(ago("3h"))),
        }),
        ..gpu(0)
    }]);
    record(&mut input, [xid(0, 95, ago("2h"))]);
    assert_eq!(judged(&eval(&input), 0), (Health::Unhealthy, vec!["XidCritical"]));
}

#[test]
fn xid_48_is_unhealthy_as_an_uncorrectable_ecc_error() {
    let mut input = node(1);
    record(&mut input, [xid(0, 48, ago("6h"))]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["UncorrectableEcc"]));
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("True", "UncorrectableEcc"));
    record(&mut input, [xid154(0, ago("5h"), 4, 0)]);
    assert_eq!(judged(&eval(&input), 0), healthy(), "a reset (recovery action back to None) clears it");
}

#[test]
fn xid_74_is_unhealthy_and_points_at_the_other_end_of_the_link() {
    let mut input = node(1);
    record(&mut input, [xid(0, 74, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["XidNvlinkError"]));
    let message = verdict(&e, 0).message.clone().unwrap_or_default();
    assert!(message.contains("The fault may sit at the other end of the link"), "{message}");
}

#[test]
fn nvlink5_lines_are_judged_by_their_fatal_or_nonfatal_token_and_150_always_needs_a_reset() {
    let line = |code, text: &str| XidEvent { message: Some(text.into()), ..xid(0, code, ago("1h")) };
    let mut fatal = node(1);
    record(&mut fatal, [line(149, "NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x00000001)")]);
    assert_eq!(judged(&eval(&fatal), 0), (Health::Unhealthy, vec!["XidNvlinkError"]));
    // A Fatal among Nonfatal lines of the same code still decides.
    record(&mut fatal, [line(149, "NETIR_BER_EVT Nonfatal XC0 i0 Link 02 (0x00000004)")]);
    assert_eq!(judged(&eval(&fatal), 0).0, Health::Unhealthy);
    let mut nonfatal = node(1);
    record(&mut nonfatal, [line(145, "RLW_REMAP Nonfatal XC0 i1 Link 03 (0x00000100)")]);
    assert_eq!(judged(&eval(&nonfatal), 0), healthy(), "Non-fatal: only above the rate");
    let mut mse = node(1);
    record(&mut mse, [line(150, "MSE_WATCHDOG XC0 (0x00000002)")]);
    assert_eq!(judged(&eval(&mse), 0), (Health::Unhealthy, vec!["XidNvlinkError"]));
}

#[test]
fn nvlink5_xids_degrade_without_a_severity_token() {
    for code in 144..=149 {
        let mut input = node(1);
        record(&mut input, [xid(0, code, ago("1h"))]);
        let e = eval(&input);
        assert_eq!(judged(&e, 0), (Health::Degraded, vec!["XidNvlinkError"]), "XID {code}");
        let message = verdict(&e, 0).message.clone().unwrap_or_default();
        assert!(message.contains("The line carries no Fatal/Nonfatal token"), "{message}");
        let mut old = node(1);
        record(&mut old, [xid(0, code, ago("25h"))]);
        assert_eq!(judged(&eval(&old), 0), healthy(), "XID {code} outside the window");
    }
}

#[test]
fn unknown_xid_is_named_and_degrades_only_above_rate() {
    let mut once = node(1);
    record(&mut once, [xid(0, 9_999, ago("1h"))]);
    let e = eval(&once);
    assert_eq!(judged(&e, 0), healthy());
    assert!(
        cond(&e, "XIDErrors").message.contains("unknown XID 9999, once within 24h"),
        "{}",
        cond(&e, "XIDErrors").message
    );
    let mut often = node(1);
    record(&mut often, repeated(0, 9_999, 6, ago("1h")));
    let e = eval(&often);
    assert_eq!(judged(&e, 0), (Health::Degraded, vec!["XidRateExceeded"]));
    assert!(verdict(&e, 0).message.as_deref().unwrap_or_default().starts_with("unknown XID 9999, 6 times within 24h"));
}

#[test]
fn every_catalog_code_is_judged_by_its_rule() {
    let p = EffectivePolicy::default();
    for row in gpuscope_crds::xid::catalog() {
        let mut input = node(1);
        record(&mut input, [xid(0, row.code, ago("1h"))]);
        let e = evaluate(&input, &p, now());
        let expected = match xid_rule(row.code, &p).effect {
            XidEffect::UnhealthyUntilRemedy | XidEffect::UnhealthyUntilReboot => Health::Unhealthy,
            XidEffect::DegradedWhileInWindow => Health::Degraded,
            // One occurrence, no parseable recovery action: nothing escalates.
            XidEffect::DegradedAboveRate
            | XidEffect::Informational
            | XidEffect::CountedOnly
            | XidEffect::Ignored
            | XidEffect::RecoveryAction => Health::Healthy,
        };
        assert_eq!(verdict(&e, 0).health, expected, "XID {} ({})", row.code, row.mnemonic);
        assert_eq!(e.recent_xid_count, 1, "XID {}", row.code);
    }
}

#[test]
fn evidence_from_an_earlier_boot_never_counts() {
    let mut input = node(1);
    record(&mut input, [XidEvent { boot_id: Some(OLD_BOOT.into()), ..xid(0, 95, ago("1h")) }]);
    record(
        &mut input,
        repeated(0, 13, 10, ago("2h")).into_iter().map(|e| XidEvent { boot_id: Some(OLD_BOOT.into()), ..e }),
    );
    let e = eval(&input);
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 0);
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("False", "NoRecentXids"));
}

#[test]
fn an_xid_naming_only_a_pci_address_is_attributed_to_the_gpu_there() {
    let mut input = node(2);
    // The kernel log names the address without the function, and no UUID.
    record(&mut input, [XidEvent { gpu_uuid: None, pci_bus_id: "0000:11:00".into(), ..xid(1, 95, ago("1h")) }]);
    let e = eval(&input);
    assert_eq!(e.verdicts.len(), 2);
    assert_eq!(judged(&e, 1), (Health::Unhealthy, vec!["XidCritical"]));
}

// ---------------------------------------------------------------------------------------------------------------
// The driver's recovery action (XID 154 / NVML)

fn with_recovery(code: u32, source: XidSource, at: Option<Timestamp>) -> EvaluationInput {
    let mut input = node(1);
    let action = gpuscope_crds::xid::RecoveryAction::from_code(code).name().to_string();
    input.status.gpus = Some(vec![GpuInfo {
        recovery_action: Some(RecoveryActionStatus { code, action, source, time: at.map(Time) }),
        ..gpu(0)
    }]);
    input
}

#[test]
fn recovery_actions_map_to_verdicts() {
    let table = [
        (0, healthy(), ("True", "Healthy")),
        (1, (Health::Unhealthy, vec!["RecoveryActionRequired"]), ("False", "RecoveryActionRequired")),
        (2, (Health::Unhealthy, vec!["RecoveryActionRequired"]), ("False", "RecoveryActionRequired")),
        (3, (Health::Degraded, vec!["RecoveryActionRequired"]), ("True", "RecoveryActionRequired")),
        (4, (Health::Unhealthy, vec!["RecoveryActionRequired"]), ("False", "RecoveryActionRequired")),
        (6, (Health::Unhealthy, vec!["RecoveryActionRequired"]), ("False", "RecoveryActionRequired")),
        (7, (Health::Unhealthy, vec!["RecoveryActionRequired"]), ("False", "RecoveryActionRequired")),
        (31, (Health::Degraded, vec!["RecoveryActionRequired"]), ("True", "RecoveryActionRequired")),
    ];
    for (code, expected, summary) in table {
        let e = eval(&with_recovery(code, XidSource::Nvml, None));
        assert_eq!(judged(&e, 0), expected, "recovery action {code}");
        assert_eq!(status_reason(cond(&e, "GPUHealthy")), summary, "recovery action {code}");
    }
}

#[test]
fn recovery_action_node_reboot_overrides_an_app_xid() {
    let mut input = with_recovery(2, XidSource::Nvml, Some(ago("1h")));
    record(&mut input, [xid(0, 13, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["RecoveryActionRequired"]));
    let summary = cond(&e, "GPUHealthy");
    assert_eq!(status_reason(summary), ("False", "RecoveryActionRequired"));
    assert!(
        summary.message.starts_with(&format!(
            "1 of 1 GPUs Unhealthy; the driver asks for a node reboot. GPU 0 ({}, PCI 0000:10:00.0): The driver's \
             recovery action is NodeReboot (read through NVML, since 2026-11-25T11:00:00Z). Drain the node and \
             reboot it",
            uuid(0)
        )),
        "{}",
        summary.message
    );
}

#[test]
fn the_node_reboot_reason_wins_over_other_unhealthy_gpus() {
    let mut input = node(2);
    record(&mut input, [xid(0, 95, ago("1h")), xid154(1, ago("1h"), 0, 2)]);
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["XidCritical"]));
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("False", "RecoveryActionRequired"));
}

#[test]
fn recovery_action_none_lifts_a_previous_154() {
    let mut input = with_recovery(0, XidSource::Nvml, Some(ago("30m")));
    record(&mut input, [xid154(0, ago("2h"), 0, 1)]);
    assert_eq!(judged(&eval(&input), 0), healthy());
    // Without the newer None, the 154 line stands.
    let mut demand = node(1);
    record(&mut demand, [xid154(0, ago("2h"), 0, 1)]);
    assert_eq!(judged(&eval(&demand), 0), (Health::Unhealthy, vec!["RecoveryActionRequired"]));
}

#[test]
fn a_154_demand_from_the_log_expires_with_the_window_but_a_reboot_demand_waits_for_the_reboot() {
    let mut reset = node(1);
    record(&mut reset, [xid154(0, ago("25h"), 0, 1)]);
    assert_eq!(judged(&eval(&reset), 0), healthy());
    let mut reboot = node(1);
    record(&mut reboot, [xid154(0, ago("25h"), 0, 2)]);
    assert_eq!(judged(&eval(&reboot), 0), (Health::Unhealthy, vec!["RecoveryActionRequired"]));
    reboot.node_boot_id = Some("new-boot".into());
    assert_eq!(judged(&eval(&reboot), 0), healthy());
}

#[test]
fn a_policy_override_on_154_replaces_the_recovery_action_rule() {
    let p = policy(serde_json::json!({"xidOverrides": [{"code": 154, "health": "Healthy"}]}));
    let mut input = with_recovery(2, XidSource::Nvml, None);
    record(&mut input, [xid154(0, ago("1h"), 0, 2)]);
    let e = evaluate(&input, &p, now());
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Policy overrides

#[test]
fn policy_override_can_make_109_ignored() {
    let p = policy(serde_json::json!({"xidOverrides": [{"code": 109, "health": "Ignore"}]}));
    let mut input = node(1);
    record(&mut input, [xid(0, 109, ago("1h"))]);
    let e = evaluate(&input, &p, now());
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 0, "ignored codes are not counted");
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("False", "NoRecentXids"));
    assert_eq!(judged(&eval(&input), 0), (Health::Unhealthy, vec!["XidCritical"]), "the catalog says RESET_GPU");
}

#[test]
fn an_ignored_xid_naming_an_unknown_gpu_creates_no_verdict() {
    let p = policy(serde_json::json!({"xidOverrides": [{"code": 13, "health": "Ignore"}]}));
    let mut input = node(1);
    record(&mut input, [xid(7, 13, ago("1h"))]);
    let e = evaluate(&input, &p, now());
    assert_eq!(e.verdicts.iter().map(|v| v.uuid.as_str()).collect::<Vec<_>>(), [uuid(0).as_str()]);
    assert_eq!((e.health, e.recent_xid_count), (Health::Healthy, 0));
    // Under the catalog the same XID reveals a GPU NVML does not list.
    assert_eq!(eval(&input).verdicts.len(), 2);
}

#[test]
fn policy_override_can_follow_the_device_plugin_on_94() {
    let p = policy(
        serde_json::json!({"xidOverrides": [{"code": 94, "health": "Unhealthy", "reason": "FollowDevicePlugin"}]}),
    );
    let mut input = node(1);
    record(&mut input, [xid(0, 94, ago("1h"))]);
    let e = evaluate(&input, &p, now());
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["FollowDevicePlugin"]));
    assert!(verdict(&e, 0).message.as_deref().unwrap_or_default().contains("the health policy makes it Unhealthy"));
    assert_eq!(judged(&eval(&input), 0), healthy(), "the catalog says RESTART_APP");
}

#[test]
fn policy_overrides_to_degraded_and_healthy() {
    let mut p = EffectivePolicy::default();
    p.xid_overrides.insert(13, EffectiveXidOverride { health: XidOverrideHealth::Degraded, reason: None });
    p.xid_overrides.insert(79, EffectiveXidOverride { health: XidOverrideHealth::Healthy, reason: None });
    let mut input = node(2);
    record(&mut input, [xid(0, 13, ago("1h")), xid(1, 79, ago("1h"))]);
    let e = evaluate(&input, &p, now());
    assert_eq!(judged(&e, 0), (Health::Degraded, vec!["XidPolicyOverride"]));
    assert_eq!(judged(&e, 1), healthy());
    assert_eq!(e.recent_xid_count, 2);
}

// ---------------------------------------------------------------------------------------------------------------
// NVML evidence: memory, thermal, presence

fn with_gpu(change: impl FnOnce(&mut GpuInfo)) -> EvaluationInput {
    let mut g = gpu(0);
    change(&mut g);
    EvaluationInput { status: GpuNodeStatusStatus { gpus: Some(vec![g]), ..node(1).status }, ..node(1) }
}

#[test]
fn uncorrectable_ecc_above_the_threshold_is_unhealthy() {
    let input =
        with_gpu(|g| g.ecc = Some(EccCounters { enabled: true, volatile_uncorrected: Some(2), ..Default::default() }));
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["UncorrectableEcc"]));
    let m = cond(&e, "MemoryErrors");
    assert_eq!(status_reason(m), ("True", "UncorrectableEcc"));
    assert!(
        m.message.contains("2 uncorrected ECC errors since the driver loaded (the policy allows 0)"),
        "{}",
        m.message
    );
    let lenient = policy(serde_json::json!({"ecc": {"uncorrectedUnhealthyAbove": 2}}));
    assert_eq!(judged(&evaluate(&input, &lenient, now()), 0), healthy());
}

#[test]
fn corrected_ecc_degrades_only_when_the_policy_sets_a_threshold() {
    let input =
        with_gpu(|g| g.ecc = Some(EccCounters { enabled: true, volatile_corrected: Some(5000), ..Default::default() }));
    assert_eq!(judged(&eval(&input), 0), healthy());
    let strict = policy(serde_json::json!({"ecc": {"correctedDegradedAbove": 1000}}));
    assert_eq!(judged(&evaluate(&input, &strict, now()), 0), (Health::Degraded, vec!["CorrectableEccHigh"]));
}

#[test]
fn row_remap_pending_degrades_and_failure_is_unhealthy() {
    let rows = |pending, failure| {
        with_gpu(move |g| g.remapped_rows = Some(RemappedRows { correctable: 2, uncorrectable: 1, pending, failure }))
    };
    assert_eq!(judged(&eval(&rows(true, false)), 0), (Health::Degraded, vec!["RowRemapPending"]));
    assert_eq!(judged(&eval(&rows(false, true)), 0), (Health::Unhealthy, vec!["RowRemapFailure"]));
    assert_eq!(judged(&eval(&rows(true, true)), 0), (Health::Unhealthy, vec!["RowRemapFailure", "RowRemapPending"]));
    let e = eval(&rows(false, true));
    assert_eq!(status_reason(cond(&e, "MemoryErrors")), ("True", "RowRemapFailure"));
    let p = policy(serde_json::json!({"rowRemapping": {"pending": "Ignore"}}));
    assert_eq!(judged(&evaluate(&rows(true, false), &p, now()), 0), healthy());
}

#[test]
fn retired_pages_degrade_then_make_unhealthy_per_policy() {
    let pages = |sbe, dbe, pending| {
        with_gpu(move |g| g.retired_pages = Some(RetiredPages { single_bit_ecc: sbe, double_bit_ecc: dbe, pending }))
    };
    assert_eq!(judged(&eval(&pages(6, 4, false)), 0), healthy());
    assert_eq!(judged(&eval(&pages(6, 5, false)), 0), (Health::Degraded, vec!["RetiredPagesExceeded"]));
    assert_eq!(judged(&eval(&pages(40, 21, false)), 0), (Health::Unhealthy, vec!["RetiredPagesExceeded"]));
    assert_eq!(judged(&eval(&pages(0, 1, true)), 0), (Health::Degraded, vec!["RetiredPagesPending"]));
    let p = policy(serde_json::json!({"retiredPages": {"degradedAbove": 0, "unhealthyAbove": 5}}));
    assert_eq!(judged(&evaluate(&pages(6, 0, false), &p, now()), 0), (Health::Unhealthy, vec!["RetiredPagesExceeded"]));
}

#[test]
fn temperature_thresholds_and_thermal_throttling() {
    let hot = |t: u32, throttle: &[&str]| {
        let reasons: Vec<String> = throttle.iter().map(|s| s.to_string()).collect();
        with_gpu(move |g| {
            g.temperature_celsius = Some(t);
            g.throttle_reasons = Some(reasons);
        })
    };
    assert_eq!(judged(&eval(&hot(84, &[])), 0), healthy());
    assert_eq!(judged(&eval(&hot(85, &[])), 0), (Health::Degraded, vec!["TemperatureHigh"]));
    assert_eq!(judged(&eval(&hot(95, &[])), 0), (Health::Unhealthy, vec!["Overheating"]));
    assert_eq!(judged(&eval(&hot(70, &["HwThermalSlowdown"])), 0), (Health::Degraded, vec!["ThermalThrottling"]));
    assert_eq!(judged(&eval(&hot(70, &["SwThermalSlowdown"])), 0), (Health::Degraded, vec!["ThermalThrottling"]));
    assert_eq!(judged(&eval(&hot(70, &["HwSlowdown", "SwPowerCap"])), 0), healthy(), "power, not heat");
    let e = eval(&hot(97, &["HwThermalSlowdown"]));
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["Overheating", "ThermalThrottling"]));
    let t = cond(&e, "Thermal");
    assert_eq!(status_reason(t), ("True", "Overheating"));
    assert!(t.message.contains("97 °C, at or above the policy's critical 95 °C"), "{}", t.message);
    let p = policy(serde_json::json!({"temperature": {"thermalThrottling": "Ignore", "warningCelsius": 90}}));
    assert_eq!(judged(&evaluate(&hot(88, &["HwThermalSlowdown"]), &p, now()), 0), healthy());
    assert_eq!(status_reason(cond(&eval(&hot(60, &[])), "Thermal")), ("False", "TemperatureNormal"));
}

#[test]
fn gpu_missing_from_nvml_is_unhealthy() {
    let input = node(3);
    let before = eval(&input);
    let mut gone = next(&input, &before);
    gone.status.gpus = Some(vec![gpu(0), gpu(2)]);
    let e = eval(&gone);
    assert_eq!(e.verdicts.iter().map(|v| v.index).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);
    assert_eq!(judged(&e, 1), (Health::Unhealthy, vec!["GpuMissing"]));
    assert_eq!(verdict(&e, 1).uuid, uuid(1));
    let summary = cond(&e, "GPUHealthy");
    assert_eq!(status_reason(summary), ("False", "GpuMissing"));
    // A verdict carries no PCI id, so a GPU remembered only from one is named by index and UUID.
    assert!(
        summary.message.contains(&format!("GPU 1 ({}): NVML no longer lists this GPU.", uuid(1))),
        "{}",
        summary.message
    );
    // It stays missing on the next reconcile: the verdict itself remembers it.
    let again = eval(&next(&gone, &e));
    assert_eq!(judged(&again, 1), (Health::Unhealthy, vec!["GpuMissing"]));

    // A GPU known only from this boot's XID history is missing too.
    let mut seen_in_history = node(1);
    record(&mut seen_in_history, [xid(5, 13, ago("2h"))]);
    let e = eval(&seen_in_history);
    let missing = e.verdicts.iter().find(|v| v.uuid == uuid(5)).expect("verdict for the GPU from the history");
    assert_eq!((missing.health, missing.index), (Health::Unhealthy, None));
    assert_eq!(missing.reasons, ["GpuMissing"]);
}

#[test]
fn a_replaced_gpu_is_forgotten_not_missing_forever() {
    let input = node(2);
    let before = eval(&input);
    let mut swapped = next(&input, &before);
    swapped.status.gpus = Some(vec![gpu(0), GpuInfo { uuid: "GPU-new-board".into(), ..gpu(1) }]);
    let e = eval(&swapped);
    assert_eq!(e.verdicts.iter().map(|v| v.uuid.as_str()).collect::<Vec<_>>(), [uuid(0).as_str(), "GPU-new-board"]);
    assert_eq!(e.health, Health::Healthy);
}

// ---------------------------------------------------------------------------------------------------------------
// Heartbeat and stale data

#[test]
fn stale_heartbeat_makes_probe_reporting_unknown() {
    let fresh = eval(&node(1));
    let p = cond(&fresh, "ProbeReporting");
    assert_eq!(status_reason(p), ("True", "HeartbeatRecent"));
    assert_eq!(p.message, "The node probe renews its Lease within the 2m timeout.");
    assert_eq!(fresh.requeue_after, Some(Duration::from_secs(110)), "the heartbeat times out 2m after the renewal");

    let stale = eval(&EvaluationInput { probe_lease: ProbeLease::RenewedAt(ago("3m")), ..node(1) });
    let p = cond(&stale, "ProbeReporting");
    assert_eq!(status_reason(p), ("Unknown", "HeartbeatTimeout"));
    assert_eq!(
        p.message,
        "The node probe has not renewed its Lease since 2026-11-25T11:57:00Z (timeout 2m); verdicts keep its last \
         report. Check the gpuscope node-probe pod on this node."
    );
    // Stale but healthy data stays Healthy: GPUHealthy goes Unknown only without any data.
    assert_eq!(status_reason(cond(&stale, "GPUHealthy")), ("True", "Healthy"));
    assert!(cond(&stale, "GPUHealthy").message.ends_with("it is not reporting now (see ProbeReporting)."));
    assert_eq!(stale.requeue_after, None, "the Lease watch, not a timer, notices the probe coming back");

    // Exactly at the timeout the heartbeat has expired.
    let edge = eval(&EvaluationInput { probe_lease: ProbeLease::RenewedAt(ago("2m")), ..node(1) });
    assert_eq!(cond(&edge, "ProbeReporting").status, "Unknown");

    let never = eval(&EvaluationInput { probe_lease: ProbeLease::NeverRenewed, ..node(1) });
    assert_eq!(status_reason(cond(&never, "ProbeReporting")), ("Unknown", "HeartbeatTimeout"));
    let p = policy(serde_json::json!({"heartbeatTimeout": "5m"}));
    let lenient = evaluate(&EvaluationInput { probe_lease: ProbeLease::RenewedAt(ago("3m")), ..node(1) }, &p, now());
    assert_eq!(status_reason(cond(&lenient, "ProbeReporting")), ("True", "HeartbeatRecent"));
}

#[test]
fn a_missing_lease_is_reported_as_no_probe_lease() {
    let e = eval(&EvaluationInput { probe_lease: ProbeLease::Absent, ..node(1) });
    assert_eq!(status_reason(cond(&e, "ProbeReporting")), ("Unknown", "NoProbeLease"));
}

#[test]
fn a_silent_probe_keeps_the_last_verdict_instead_of_letting_evidence_expire() {
    let mut input = node(1);
    record(&mut input, [xid(0, 95, ago("23h"))]);
    // The probe went silent 22h ago: "24h without a repeat" cannot be known, so the XID still counts.
    input.probe_lease = ProbeLease::RenewedAt(ago("22h"));
    input.status.probe = input.status.probe.map(|p| ProbeInfo { last_report_time: Some(Time(ago("22h"))), ..p });
    let e = evaluate(&input, &EffectivePolicy::default(), later("3h"));
    assert_eq!(judged(&e, 0), (Health::Unhealthy, vec!["XidCritical"]));
    assert_eq!(cond(&e, "GPUHealthy").status, "False");
    assert_eq!(e.recent_xid_count, 1);
    // The probe comes back with no repeat: the evidence leaves the window at once.
    input.probe_lease = ProbeLease::RenewedAt(later("3h"));
    let e = evaluate(&input, &EffectivePolicy::default(), later("3h"));
    assert_eq!(judged(&e, 0), healthy());
}

#[test]
fn no_data_at_all_is_unknown() {
    let input = EvaluationInput { probe_lease: ProbeLease::Absent, ..Default::default() };
    let e = eval(&input);
    assert_eq!(e.health, Health::Unknown);
    assert!(e.verdicts.is_empty());
    let summary = cond(&e, "GPUHealthy");
    assert_eq!(status_reason(summary), ("Unknown", "NoGpuData"));
    assert_eq!(
        summary.message,
        "The probe has not reported any GPU for this node yet; check the gpuscope node-probe pod on it."
    );
    for type_ in ["XIDErrors", "MemoryErrors", "Thermal"] {
        assert_eq!(status_reason(cond(&e, type_)), ("Unknown", "NoGpuData"), "{type_}");
    }
    assert_eq!(e.recent_xid_count, 0);

    let none_visible =
        EvaluationInput { status: GpuNodeStatusStatus { gpus: Some(vec![]), ..node(0).status }, ..node(0) };
    let e = eval(&none_visible);
    assert_eq!(
        cond(&e, "GPUHealthy").message,
        "NVML reports no GPU on this node; check the NVIDIA driver there (nvidia-smi)."
    );
}

#[test]
fn a_previously_known_gpu_without_inventory_is_unknown_not_healthy() {
    let before = eval(&node(1));
    let mut input = next(&node(1), &before);
    input.status.gpus = None;
    let e = eval(&input);
    assert_eq!(judged(&e, 0), (Health::Unknown, vec!["NoGpuData"]));
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("Unknown", "NoGpuData"));
}

// ---------------------------------------------------------------------------------------------------------------
// Time: windows, lastTransitionTime, requeue, idempotence

#[test]
fn evidence_outside_the_window_clears_the_condition() {
    let mut input = node(1);
    record(&mut input, repeated(0, 13, 6, ago("23h30m")));
    let first = eval(&input);
    assert_eq!(status_reason(cond(&first, "XIDErrors")), ("True", "XidRateExceeded"));
    // Six XIDs, one minute apart, the oldest at 23h35m ago: it leaves the window in 25 minutes; the heartbeat
    // (renewed 10s ago) times out before.
    assert_eq!(first.requeue_after, Some(Duration::from_secs(110)));

    // 25m30s later the oldest left: five remain, not above the rate.
    let t = later("25m30s");
    let mut after = next(&input, &first);
    after.probe_lease = ProbeLease::RenewedAt(t);
    let e = evaluate(&after, &EffectivePolicy::default(), t);
    assert_eq!(judged(&e, 0), healthy());
    assert_eq!(e.recent_xid_count, 5);
    let x = cond(&e, "XIDErrors");
    assert_eq!(status_reason(x), ("False", "XidsBelowThreshold"));
    assert_eq!(x.last_transition_time, Time(t));
    assert_eq!(e.requeue_after, Some(Duration::from_secs(30)), "the next one leaves at +26m");

    // A day later nothing is left: the condition cleared by itself.
    let t = later("25h");
    after.probe_lease = ProbeLease::RenewedAt(t);
    let e = evaluate(&after, &EffectivePolicy::default(), t);
    assert_eq!(status_reason(cond(&e, "XIDErrors")), ("False", "NoRecentXids"));
    assert_eq!(e.recent_xid_count, 0);
}

#[test]
fn last_transition_time_moves_only_on_status_change() {
    let mut input = node(1);
    record(&mut input, [xid(0, 13, ago("1h"))]);
    let first = eval(&input);
    for c in &first.conditions {
        assert_eq!(c.last_transition_time, Time(now()), "{}", c.type_);
        assert_eq!(c.observed_generation, Some(3));
    }

    // An hour later a second XID 13: the message changes, the status (False) does not.
    let t1 = later("1h");
    let mut second = next(&input, &first);
    record(&mut second, [xid(0, 13, t1)]);
    second.probe_lease = ProbeLease::RenewedAt(t1);
    let e = evaluate(&second, &EffectivePolicy::default(), t1);
    let x = cond(&e, "XIDErrors");
    assert_eq!(status_reason(x), ("False", "XidsBelowThreshold"));
    assert_ne!(x.message, cond(&first, "XIDErrors").message);
    assert_eq!(x.last_transition_time, Time(now()), "same status: the time stays");
    assert!(e.transitions.is_empty(), "{:?}", e.transitions);

    // Then a burst above the rate: the status flips and the time moves, to whole seconds.
    let t2: Timestamp = "2026-11-25T14:00:00.750Z".parse().expect("timestamp");
    let mut third = next(&second, &e);
    record(&mut third, repeated(0, 13, 5, t2));
    third.probe_lease = ProbeLease::RenewedAt(t2);
    let e = evaluate(&third, &EffectivePolicy::default(), t2);
    let x = cond(&e, "XIDErrors");
    assert_eq!(status_reason(x), ("True", "XidRateExceeded"));
    assert_eq!(x.last_transition_time, Time("2026-11-25T14:00:00Z".parse().expect("timestamp")));
    assert_eq!(cond(&e, "GPUHealthy").last_transition_time, Time(now()), "GPUHealthy stays True (Degraded)");
}

#[test]
fn reconciling_an_unchanged_object_gives_an_identical_status() {
    let mut input = node(4);
    record(&mut input, [xid(1, 79, ago("2h")), xid(2, 13, ago("1h")), xid154(3, ago("30m"), 0, 3)]);
    input.status.gpus = input.status.gpus.map(|mut g| {
        g[0].temperature_celsius = Some(90);
        g
    });
    let first = eval(&input);
    let again = evaluate(&next(&input, &first), &EffectivePolicy::default(), later("30s"));
    assert_eq!(again.operator_status(), first.operator_status());
    assert!(again.transitions.is_empty());
    assert_eq!(again.node_condition, first.node_condition);
}

#[test]
fn a_lease_renewal_alone_changes_nothing_the_operator_writes() {
    // Every probe renews its Lease every 30 s and each renewal triggers a reconcile: if anything the operator
    // writes carried the renew time, a 1,000-node fleet would cost ~33 status and Node writes a second.
    let mut input = node(8);
    record(&mut input, [xid(1, 13, ago("1h")), xid(3, 79, ago("2h"))]);
    let first = eval(&input);
    let renewed = EvaluationInput { probe_lease: ProbeLease::RenewedAt(later("30s")), ..next(&input, &first) };
    let again = evaluate(&renewed, &EffectivePolicy::default(), later("31s"));
    assert_eq!(again.operator_status(), first.operator_status(), "no status write");
    assert_eq!(again.node_condition, first.node_condition, "no Node write");
    assert!(again.transitions.is_empty(), "no Event");
    let timeout = EffectivePolicy::default().heartbeat_timeout;
    assert_eq!(again.requeue_after, Some(timeout - Duration::from_secs(1)), "only the heartbeat deadline moves");
}

#[test]
fn requeue_follows_the_earliest_change() {
    // A RESET_GPU XID 23h50m ago leaves the window in 10 minutes; the Lease was renewed just now.
    let mut input = EvaluationInput { probe_lease: ProbeLease::RenewedAt(now()), ..node(1) };
    record(&mut input, [xid(0, 95, ago("23h50m"))]);
    assert_eq!(eval(&input).requeue_after, Some(Duration::from_secs(120)));
    let p = policy(serde_json::json!({"heartbeatTimeout": "1h"}));
    assert_eq!(evaluate(&input, &p, now()).requeue_after, Some(Duration::from_secs(600)));
    // XID 79 never expires by time in a confirmed boot; only the heartbeat is left to wait for.
    let mut reboot = EvaluationInput { probe_lease: ProbeLease::RenewedAt(now()), ..node(1) };
    record(&mut reboot, [xid(0, 79, ago("30h"))]);
    assert_eq!(evaluate(&reboot, &p, now()).requeue_after, Some(Duration::from_secs(3600)));
}

// ---------------------------------------------------------------------------------------------------------------
// Events, Node condition, remediation, bounds

#[test]
fn transitions_are_reported_for_changes_and_new_problems() {
    let mut input = node(1);
    record(&mut input, [xid(0, 79, ago("1m"))]);
    let first = eval(&input);
    let kinds: Vec<(&str, Option<&str>, &str, bool)> = first
        .transitions
        .iter()
        .map(|t| (t.condition_type.as_str(), t.from_status.as_deref(), t.to_status.as_str(), t.warning))
        .collect();
    // New conditions that are fine (MemoryErrors False, Thermal False, ProbeReporting True) are no news.
    assert_eq!(kinds, [("GPUHealthy", None, "False", true), ("XIDErrors", None, "True", true)]);

    let rebooted = EvaluationInput { node_boot_id: Some("new-boot".into()), ..next(&input, &first) };
    let e = eval(&rebooted);
    let back: Vec<(&str, Option<&str>, &str, &str, bool)> = e
        .transitions
        .iter()
        .map(|t| {
            (t.condition_type.as_str(), t.from_status.as_deref(), t.to_status.as_str(), t.reason.as_str(), t.warning)
        })
        .collect();
    assert_eq!(
        back,
        [
            ("GPUHealthy", Some("False"), "True", "Healthy", false),
            ("XIDErrors", Some("True"), "False", "NoRecentXids", false)
        ]
    );
    assert_eq!(e.transitions[0].from_reason.as_deref(), Some("XidFallenOffBus"));
}

#[test]
fn a_health_change_within_true_is_a_transition() {
    let input = node(1);
    let first = eval(&input);
    let mut degraded = next(&input, &first);
    degraded.status.gpus =
        Some(vec![GpuInfo { remapped_rows: Some(RemappedRows { pending: true, ..Default::default() }), ..gpu(0) }]);
    let e = eval(&degraded);
    let t = e.transitions.iter().find(|t| t.condition_type == "GPUHealthy").expect("GPUHealthy transition");
    assert_eq!((t.from_status.as_deref(), t.to_status.as_str()), (Some("True"), "True"));
    assert_eq!((t.from_reason.as_deref(), t.reason.as_str(), t.warning), (Some("Healthy"), "RowRemapPending", true));
}

#[test]
fn node_condition_mirrors_gpu_healthy() {
    let mut input = node(1);
    record(&mut input, [xid(0, 95, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(&e.node_condition, cond(&e, "GPUHealthy"));
    assert_eq!(
        e.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
        gpuscope_crds::health::condition_type::ALL
    );
}

#[test]
fn remediation_is_wanted_only_when_unhealthy_and_the_policy_asks() {
    let taint = policy(serde_json::json!({"remediation": {"mode": "taint"}}));
    let mut sick = node(1);
    record(&mut sick, [xid(0, 79, ago("1h"))]);
    assert_eq!(evaluate(&sick, &taint, now()).remediation, Some(RemediationMode::Taint));
    assert_eq!(eval(&sick).remediation, None, "the default mode is none");
    let paused = EvaluationInput { remediation_paused: true, ..sick.clone() };
    assert_eq!(evaluate(&paused, &taint, now()).remediation, None);
    let mut degraded = node(1);
    record(&mut degraded, repeated(0, 13, 6, ago("1h")));
    assert_eq!(evaluate(&degraded, &taint, now()).remediation, None);
    let cordon = EffectivePolicy { remediation_mode: RemediationMode::Cordon, ..EffectivePolicy::default() };
    assert_eq!(evaluate(&sick, &cordon, now()).remediation, Some(RemediationMode::Cordon));
}

#[test]
fn condition_messages_stay_bounded_whatever_the_fleet() {
    let mut input = node(16);
    for i in 0..16 {
        record(&mut input, [xid(i, 95, ago("1h")), xid(i, 13, ago("1h"))]);
    }
    let e = eval(&input);
    let summary = cond(&e, "GPUHealthy");
    assert!(summary.message.starts_with("16 of 16 GPUs Unhealthy."), "{}", summary.message);
    assert!(summary.message.ends_with("… and 8 more (see status.verdicts)."), "{}", summary.message);
    assert!(summary.message.len() < 8_000, "{}", summary.message.len());
    assert_eq!(e.recent_xid_count, 32);
}

#[test]
fn from_object_reads_the_previous_operator_fields() {
    let mut object = gpuscope_crds::GpuNodeStatus::new("gpu-node-1", Default::default());
    object.metadata.generation = Some(7);
    object.spec.remediation_paused = Some(true);
    let first = eval(&node(1));
    object.status = Some(GpuNodeStatusStatus { ..first.operator_status() });
    let input = EvaluationInput::from_object(&object, Some(BOOT.into()), ProbeLease::RenewedAt(ago("5s")));
    assert_eq!(input.generation, Some(7));
    assert!(input.remediation_paused);
    assert_eq!(input.previous_conditions, first.conditions);
    assert_eq!(input.previous_verdicts, first.verdicts);
    assert_eq!(input.probe_lease, ProbeLease::RenewedAt(ago("5s")));
}

#[test]
fn probe_lease_reads_renew_then_acquire_time() {
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let lease = |renew: Option<Timestamp>, acquire: Option<Timestamp>| Lease {
        spec: Some(LeaseSpec {
            renew_time: renew.map(MicroTime),
            acquire_time: acquire.map(MicroTime),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(ProbeLease::from_lease(&lease(Some(ago("5s")), Some(ago("1h")))), ProbeLease::RenewedAt(ago("5s")));
    assert_eq!(ProbeLease::from_lease(&lease(None, Some(ago("1h")))), ProbeLease::RenewedAt(ago("1h")));
    assert_eq!(ProbeLease::from_lease(&lease(None, None)), ProbeLease::NeverRenewed);
    assert_eq!(ProbeLease::from_lease(&Lease::default()), ProbeLease::NeverRenewed);
}

#[test]
fn operator_status_holds_only_operator_fields() {
    let mut input = node(2);
    record(&mut input, [xid(0, 13, ago("1h"))]);
    let s = eval(&input).operator_status();
    assert!(s.probe.is_none() && s.gpus.is_none() && s.xids.is_none() && s.gpu_count.is_none());
    assert_eq!(s.health, Some(Health::Healthy));
    assert_eq!(s.recent_xid_count, Some(1));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.conditions.map(|c| c.len()), Some(5));
    assert_eq!(s.verdicts.map(|v| v.len()), Some(2));
}

// ---------------------------------------------------------------------------------------------------------------
// Blind spots: a probe that reports without NVML or without the kernel log

fn without(mut input: EvaluationInput, source: gpuscope_crds::gpu_node_status::DataSource) -> EvaluationInput {
    use gpuscope_crds::gpu_node_status::UnavailableSource;
    if let Some(p) = input.status.probe.as_mut() {
        p.unavailable_sources
            .get_or_insert_with(Vec::new)
            .push(UnavailableSource { source, message: "libnvidia-ml.so.1: cannot open shared object file".into() });
    }
    if source == gpuscope_crds::gpu_node_status::DataSource::Nvml {
        (input.status.gpus, input.status.gpu_count) = (None, None);
    }
    input
}

#[test]
fn a_node_without_nvml_is_unknown_with_reason_nvml_unavailable_and_a_warning() {
    let input = without(node(0), gpuscope_crds::gpu_node_status::DataSource::Nvml);
    let e = eval(&input);
    assert_eq!(e.health, Health::Unknown);
    let summary = cond(&e, "GPUHealthy");
    assert_eq!(status_reason(summary), ("Unknown", "NvmlUnavailable"));
    assert!(
        summary.message.starts_with("The probe cannot load NVML (libnvidia-ml.so.1: cannot open"),
        "{}",
        summary.message
    );
    assert_eq!(status_reason(cond(&e, "MemoryErrors")), ("Unknown", "NvmlUnavailable"));
    assert_eq!(status_reason(cond(&e, "Thermal")), ("Unknown", "NvmlUnavailable"));
    assert_eq!(e.node_condition.reason, "NvmlUnavailable");
    let warned: Vec<(&str, bool)> =
        e.transitions.iter().map(|t| (t.reason.as_str(), t.warning)).filter(|(r, _)| *r == "NvmlUnavailable").collect();
    assert_eq!(warned, [("NvmlUnavailable", true); 3], "GPUHealthy, MemoryErrors and Thermal each warn once");
    assert!(eval(&next(&input, &e)).transitions.is_empty(), "and only once");
}

#[test]
fn kernel_log_xids_still_judge_a_gpu_when_nvml_is_unavailable() {
    let mut input = without(node(0), gpuscope_crds::gpu_node_status::DataSource::Nvml);
    record(&mut input, [xid(1, 79, ago("5m"))]);
    let e = eval(&input);
    assert_eq!(e.health, Health::Unhealthy);
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("False", "XidFallenOffBus"));
}

#[test]
fn a_node_without_the_kernel_log_says_xids_come_from_nvml_events_only() {
    let input = without(node(2), gpuscope_crds::gpu_node_status::DataSource::KernelLog);
    let e = eval(&input);
    assert_eq!(e.health, Health::Healthy, "NVML's own evidence still judges the GPUs");
    let xids = cond(&e, "XIDErrors");
    assert_eq!(status_reason(xids), ("Unknown", "KernelLogUnavailable"));
    assert!(xids.message.contains("only XIDs from NVML events are seen"), "{}", xids.message);
    let t: Vec<(&str, bool)> = e.transitions.iter().map(|t| (t.reason.as_str(), t.warning)).collect();
    assert_eq!(t, [("KernelLogUnavailable", true)], "one Warning Event");
    // An NVML-delivered XID that escalates still drives the condition, and the blind spot is said beside it.
    let mut input = input;
    record(&mut input, [XidEvent { source: XidSource::Nvml, ..xid(0, 95, ago("5m")) }]);
    let e = eval(&input);
    let xids = cond(&e, "XIDErrors");
    assert_eq!(status_reason(xids), ("True", "XidCritical"));
    assert!(xids.message.ends_with("The kernel log is unreadable: only XIDs from NVML events are seen."));
    // A probe that predates `unavailableSources` lists the kernel log as an unsupported field.
    let mut old = node(1);
    old.status.unsupported_fields = Some(vec!["xids.kernelLog".into()]);
    assert_eq!(cond(&eval(&old), "XIDErrors").reason, "KernelLogUnavailable");
}

// ---------------------------------------------------------------------------------------------------------------
// One ranking, conditions that agree

#[test]
fn the_summary_reason_names_the_gpu_off_the_bus_over_the_drivers_reboot_demand() {
    let mut input = node(8);
    // GPU 5 fell off the bus (and left NVML); the driver asks for a node reboot on GPU 3.
    record(&mut input, [xid(5, 79, ago("10m")), xid154(3, ago("9m"), 0, 2)]);
    input.status.gpus = Some((0..8).filter(|i| *i != 5).map(gpu).collect());
    let e = eval(&input);
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("False", "XidFallenOffBus"));
    assert_eq!(e.node_condition.reason, "XidFallenOffBus");
    // The driver's demand alone keeps the node-level reason.
    let mut demand = node(2);
    record(&mut demand, [xid154(1, ago("9m"), 0, 2)]);
    assert_eq!(cond(&eval(&demand), "GPUHealthy").reason, "RecoveryActionRequired");
}

#[test]
fn memory_errors_counts_memory_xids_beside_the_counters() {
    let mut input = node(2);
    record(&mut input, [xid(1, 48, ago("1h"))]);
    let e = eval(&input);
    assert_eq!(status_reason(cond(&e, "GPUHealthy")), ("False", "UncorrectableEcc"));
    assert_eq!(status_reason(cond(&e, "MemoryErrors")), ("True", "UncorrectableEcc"));
    let mut uncontained = node(1);
    record(&mut uncontained, [xid(0, 95, ago("1h"))]);
    assert_eq!(status_reason(cond(&eval(&uncontained), "MemoryErrors")), ("True", "XidCritical"));
    // An application XID is no memory evidence.
    let mut app = node(1);
    record(&mut app, repeated(0, 13, 6, ago("1m")));
    assert_eq!(status_reason(cond(&eval(&app), "MemoryErrors")), ("False", "NoMemoryErrors"));
}

#[test]
fn a_hot_gpu_that_vanishes_gives_no_back_to_normal_event() {
    let mut input = node(2);
    input.status.gpus = Some(vec![gpu(0), GpuInfo { temperature_celsius: Some(97), ..gpu(1) }]);
    let hot = eval(&input);
    assert_eq!(status_reason(cond(&hot, "Thermal")), ("True", "Overheating"));
    let mut gone = next(&input, &hot);
    gone.status.gpus = Some(vec![gpu(0)]);
    let e = eval(&gone);
    assert_eq!(judged(&e, 1), (Health::Unhealthy, vec!["GpuMissing"]));
    let normal: Vec<&Transition> = e.transitions.iter().filter(|t| t.condition_type == "Thermal").collect();
    assert!(normal.is_empty(), "no TemperatureNormal Event for a GPU that disappeared: {normal:?}");
    // A GPU that really cools down does give one.
    let mut cooled = next(&input, &hot);
    cooled.status.gpus = Some(vec![gpu(0), gpu(1)]);
    let e = eval(&cooled);
    assert!(
        e.transitions.iter().any(|t| t.condition_type == "Thermal" && t.reason == "TemperatureNormal" && !t.warning)
    );
}
