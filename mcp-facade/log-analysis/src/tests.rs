//! Behaviour of the analysis beyond the corpus: verdicts, joins with the caller's knowledge, hostile input, size
//! bounds, property tests and a throughput check.

use proptest::prelude::*;

use super::*;
use gpuscope_crds::health::Health;
use gpuscope_crds::pci::PciBusId;
use gpuscope_crds::xid::RecoveryAction;
use gpuscope_crds::xid::line::{KernelEvent, XidLine, parse_kernel_message, process_name_of};
use gpuscope_crds::xid::rules::GpuAction;

fn pci(s: &str) -> PciBusId {
    PciBusId::parse(s).unwrap()
}

fn report_of(log: &str) -> LogReport {
    analyze(log.as_bytes(), AnalyzeOptions::default()).unwrap()
}

const EXAMPLE: &str = "\
[Mon Aug  5 03:54:11 2024] NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab
[Mon Aug  5 03:54:12 2024] NVRM: Xid (PCI:0000:3b:00): 13, pid=1234, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address
[Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.
[Mon Aug  5 03:54:13 2024] NVRM: GPU at 0000:3b:00.0 has fallen off the bus.
[Mon Aug  5 03:54:13 2024] NVRM: RC all channels for critical error 79.
[Mon Aug  5 03:55:00 2024] NVRM: Xid (PCI:0000:86:00 GPU-I:03 GPU-CI:01): 31, pid='<unknown>', name=<unknown>, MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f6e_8a000000
[Mon Aug  5 03:55:01 2024] nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error (First)
[Mon Aug  5 03:55:02 2024] NVRM: Xid (PCI:...): 79, GPU has fallen off the bus.
[Mon Aug  5 03:55:03 2024] NVRM: _kgspLogXid119: ********************************* GSP Timeout **********************************
";

#[test]
fn the_report_leads_with_the_worst_verdict_and_one_action() {
    let r = report_of(EXAMPLE);
    assert_eq!(r.summary.health, Health::Unhealthy);
    assert_eq!(r.summary.action, GpuAction::RebootNode);
    assert_eq!(r.summary.headline, "reboot node: XID 79 on 0000:3b:00.0");
    let first = r.summary.first.as_ref().unwrap();
    assert_eq!((first.code, first.reason.as_str()), (79, "XidFallenOffBus"));
    assert_eq!(first.uuid.as_deref(), Some("GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab"));
    assert_eq!(
        (r.summary.xid_lines, r.summary.sxid_lines, r.summary.companion_lines, r.summary.not_understood_lines),
        (3, 1, 2, 1)
    );
    assert_eq!((r.summary.gpus_with_xids, r.summary.gpus_needing_action), (2, 1));
    assert_eq!(r.input.other_driver_lines, 1, "the _kgspLogXid119 banner");
    assert!(r.summary.complete);
}

#[test]
fn per_gpu_evidence_has_times_process_mig_catalog_and_verdict() {
    let r = report_of(EXAMPLE);
    let gpu = &r.gpus[0];
    assert_eq!((gpu.pci_bus_id.as_str(), gpu.uuid_source), ("0000:3b:00.0", Some(UuidSource::Log)));
    assert_eq!(
        (gpu.health, gpu.action, gpu.reason.as_str()),
        (Health::Unhealthy, GpuAction::RebootNode, "XidFallenOffBus")
    );
    // Most urgent first: 79 before 13.
    let codes: Vec<u32> = gpu.xids.iter().map(|x| x.code).collect();
    assert_eq!(codes, [79, 13]);
    let x79 = &gpu.xids[0];
    assert_eq!(x79.first_time.as_ref().unwrap().local.as_deref(), Some("2024-08-05T03:54:13"));
    assert_eq!(x79.last_time.as_ref().unwrap().text, "Mon Aug  5 03:54:13 2024");
    assert_eq!(x79.last_process, Some(ProcessReport { pid: Some(1234), name: Some("python3".into()) }));
    assert_eq!((x79.first_line, x79.last_line), (3, 3));
    let x13 = &gpu.xids[1];
    assert_eq!((x13.verdict.health, x13.verdict.action), (Health::Healthy, GpuAction::None));
    let mig = &r.gpus[1].xids[0];
    assert_eq!(mig.mig_instances, [MigInstance { gpu_instance: Some(3), compute_instance: Some(1) }]);
    assert_eq!(mig.last_process, None);
    let catalog: Vec<u32> = r.catalog.iter().map(|c| c.code).collect();
    assert_eq!(catalog, [13, 31, 79]);
    assert_eq!(r.catalog[2].immediate_action, "RESTART_BM");
    assert_eq!(r.sxids[0].severity.as_deref(), Some("Non-fatal"));
    assert!(r.not_understood.samples[0].reason.contains("redacted PCI bus id"));
    assert_eq!(r.not_understood.samples[0].line, 8);
}

#[test]
fn render_text_prints_the_headline_tables_and_evidence() {
    let text = render_text(&report_of(EXAMPLE));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Unhealthy: reboot node: XID 79 on 0000:3b:00.0");
    assert_eq!(lines[1], "2 GPUs with XIDs, 3 XID lines, 1 SXid line, 2 companion lines, 1 line not understood");
    assert!(text.contains("GPU 0000:3b:00.0  GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab (from the log)"), "{text}");
    assert!(text.contains("  Unhealthy (XidFallenOffBus): reboot node\n"), "{text}");
    assert!(
        text.contains(
            "  79   1      2024-08-05T03:54:13  2024-08-05T03:54:13  Unhealthy  reboot node  GPU has fallen off the bus"
        ),
        "{text}"
    );
    assert!(text.contains("    MIG: GI 3 CI 1"), "{text}");
    assert!(text.contains("NVSwitch SXids (switch errors, not GPU XIDs)"), "{text}");
    assert!(text.contains("  RC all channels (XID 79)  -"), "{text}");
    assert!(
        text.contains("  line 8: NVRM Xid line with a redacted PCI bus id \"PCI:...\": cannot tell which GPU"),
        "{text}"
    );
}

#[test]
fn the_callers_gpus_give_uuid_and_index_and_a_differing_uuid_is_flagged() {
    let mut options = AnalyzeOptions::default();
    options.known_gpus.insert(pci("0000:86:00.0"), KnownGpu { uuid: Some("GPU-86".into()), index: Some(4) });
    options.known_gpus.insert(pci("0000:3b:00.0"), KnownGpu { uuid: Some("GPU-other".into()), index: Some(1) });
    let r = analyze(EXAMPLE.as_bytes(), options).unwrap();
    let g86 = &r.gpus[1];
    assert_eq!((g86.uuid.as_deref(), g86.uuid_source, g86.index), (Some("GPU-86"), Some(UuidSource::Caller), Some(4)));
    let g3b = &r.gpus[0];
    assert_eq!(g3b.uuid_source, Some(UuidSource::Log));
    assert_eq!(g3b.caller_uuid_differs.as_deref(), Some("GPU-other"));
    assert!(render_text(&r).contains("the GPU may have been replaced"));
}

#[test]
fn a_policy_override_changes_the_verdict_like_in_the_operator() {
    let mut options = AnalyzeOptions::default();
    options.policy.xid_overrides.insert(
        79,
        gpuscope_crds::policy::EffectiveXidOverride {
            health: gpuscope_crds::policy::XidOverrideHealth::Healthy,
            reason: None,
        },
    );
    let r = analyze(EXAMPLE.as_bytes(), options).unwrap();
    assert_eq!((r.summary.health, r.summary.action), (Health::Healthy, GpuAction::None));
    assert_eq!(r.rules.overrides, 1);
}

#[test]
fn a_none_recovery_action_remedies_only_when_it_is_the_newest() {
    let lines = |tail: &str| {
        format!(
            "NVRM: Xid (PCI:0000:01:00): 95, Uncontained\n\
             NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)\n{tail}"
        )
    };
    assert_eq!(report_of(&lines("")).summary.health, Health::Healthy);
    // A newer 154 asking for a reset undoes the remedy, as in the operator.
    let r = report_of(&lines(
        "NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)\n",
    ));
    assert_eq!((r.summary.health, r.summary.action), (Health::Unhealthy, GpuAction::ResetGpu));
    let x154 = r.gpus[0].xids.iter().find(|x| x.code == 154).unwrap();
    assert_eq!(x154.recovery_action, Some(RecoveryActionReport::new(RecoveryAction::GpuReset)));
    // A repeat after the None is not remedied.
    let r = report_of(&lines("NVRM: Xid (PCI:0000:01:00): 95, Uncontained\n"));
    assert_eq!(r.summary.health, Health::Unhealthy);
}

#[test]
fn the_headline_counts_above_rate_codes_and_other_gpus() {
    let mut log = String::new();
    for _ in 0..7 {
        log.push_str("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a, Graphics Exception\n");
    }
    assert_eq!(report_of(&log).summary.headline, "restart the application: XID 13 (7 times) on 0000:3b:00.0");
    log.push_str("NVRM: Xid (PCI:0000:86:00): 95, Uncontained\nNVRM: Xid (PCI:0000:87:00): 48, DBE\n");
    // Equally urgent (reset GPU): the more recent leads.
    assert_eq!(report_of(&log).summary.headline, "reset GPU: XID 48 on 0000:87:00.0; 2 more GPUs need attention");
    let quiet = report_of("NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a, Graphics Exception\n");
    assert_eq!(quiet.summary.headline, "no action: 1 XID line on 1 GPU, none escalates under the operator's rules");
}

#[test]
fn empty_input_is_a_healthy_report_with_no_xids() {
    for input in ["", "\n", "\n\n\n", "\r\n"] {
        let r = report_of(input);
        assert_eq!(r.summary.headline, "no action: no NVIDIA XID in this log", "{input:?}");
        assert!(r.gpus.is_empty() && r.sxids.is_empty() && r.companions.is_empty());
    }
    assert_eq!(report_of("").input.lines, 0);
    assert_eq!(report_of("\n\n").input.lines, 2);
    let sxid_only = report_of("nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, Non-fatal, Link 32 egress error\n");
    assert_eq!(sxid_only.summary.headline, "no action: no NVIDIA XID in this log; 1 NVSwitch SXid line");
}

#[test]
fn binary_and_non_utf8_input_is_read_line_by_line() {
    let mut input: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    input.extend_from_slice(
        b"\n\xff\xfe NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=\xe9t\xe9, GPU has fallen off the bus.\r\n",
    );
    input.extend_from_slice(b"\0\0\0NVRM\0SXid (\0\n");
    let r = analyze(&input, AnalyzeOptions::default()).unwrap();
    assert_eq!(r.summary.xid_lines, 1);
    let x = &r.gpus[0].xids[0];
    assert_eq!(x.last_process.as_ref().unwrap().name.as_deref(), Some("\u{fffd}t\u{fffd}"));
    assert!(r.input.non_utf8_lines >= 1, "{:?}", r.input);
    assert!(!render_text(&r).is_empty());
}

#[test]
fn a_one_mebibyte_line_is_read_up_to_the_line_limit() {
    let tail = "x".repeat(1 << 20);
    let log = format!(
        "[ 1.0] NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=a, {tail}\n[ 2.0] NVRM: Xid (PCI:0000:3b:00): 79, b\n"
    );
    let r = report_of(&log);
    assert_eq!(r.input.long_lines, 1);
    assert_eq!(r.summary.xid_lines, 2);
    let x13 = r.gpus[0].xids.iter().find(|x| x.code == 13).unwrap();
    assert_eq!(x13.last_message.chars().count(), Limits::default().max_text_chars + 1, "truncated with an ellipsis");
    // A record that starts past the limit on one huge line is not seen: the limit is documented.
    let hidden = format!("{tail} NVRM: Xid (PCI:0000:3b:00): 79, b\n");
    assert_eq!(report_of(&hidden).summary.xid_lines, 0);
    // Streaming in small chunks gives the same report.
    let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
    for chunk in log.as_bytes().chunks(1000) {
        analyzer.push_bytes(chunk);
    }
    assert_eq!(analyzer.finish(), r);
}

#[test]
fn a_flood_of_one_code_is_counted_exactly_in_a_small_report() {
    let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
    for i in 0..200_000u32 {
        let line = format!("[{i:>6}.000000] NVRM: Xid (PCI:0000:3b:00): 95, pid={i}, name=python3, Uncontained: FBHUB");
        analyzer.push_line(line.as_bytes());
    }
    let r = analyzer.finish();
    let x = &r.gpus[0].xids[0];
    assert_eq!((x.count, x.first_line, x.last_line), (200_000, 1, 200_000));
    assert_eq!(x.last_time.as_ref().unwrap().uptime_seconds, Some(199_999.0));
    assert_eq!(x.last_process.as_ref().unwrap().pid, Some(199_999));
    assert!(serde_json::to_string(&r).unwrap().len() < 10_000);
}

#[test]
fn limits_bound_gpus_codes_sxids_and_samples() {
    let mut log = String::new();
    for bus in 0..40u32 {
        log.push_str(&format!("NVRM: Xid (PCI:0000:{bus:02x}:00): 79, GPU has fallen off the bus.\n"));
    }
    for code in 1..=40u32 {
        log.push_str(&format!("NVRM: Xid (PCI:0000:00:00): {code}, m\n"));
    }
    for code in 0..50u32 {
        log.push_str(&format!("nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): {}, Fatal, x\n", 10_000 + code));
        log.push_str("NVRM: Xid (PCI:...): 79, redacted\n");
    }
    let r = report_of(&log);
    let limits = Limits::default();
    assert_eq!(r.gpus.len(), limits.max_gpus);
    assert_eq!(r.not_shown.gpus, 40 - limits.max_gpus as u64);
    assert_eq!(r.gpus[0].xids.len(), limits.max_codes_per_gpu);
    assert_eq!(r.gpus[0].codes_not_shown, 40 - limits.max_codes_per_gpu as u64 + 1, "79 is one of the shown codes");
    assert_eq!(r.sxids.len(), limits.max_sxids);
    assert_eq!(r.not_shown.sxid_lines, 50 - limits.max_sxids as u64);
    assert_eq!((r.not_understood.lines, r.not_understood.samples.len()), (50, limits.max_samples));
    assert!(!r.summary.complete);
    // 79 on the 24 GPUs not shown, and codes 16-40 beyond the per-GPU limit on 0000:00:00.0.
    let mut codes: Vec<u32> = (16..=40).collect();
    codes.push(79);
    assert_eq!(r.not_shown.codes, codes);
    assert!(render_text(&r).contains("Incomplete: size limits left out"));
}

#[test]
fn the_one_shot_api_refuses_input_over_the_documented_size() {
    let input = vec![b'\n'; MAX_INPUT_BYTES + 1];
    let e = analyze(&input, AnalyzeOptions::default()).unwrap_err();
    assert!(
        matches!(e, AnalyzeError::TooLarge { len, max } if len == MAX_INPUT_BYTES as u64 + 1 && max == MAX_INPUT_BYTES as u64)
    );
    assert!(e.to_string().contains("more than the 67108864 bytes (64 MiB) analysed at once"), "{e}");
}

#[test]
fn a_failing_reader_is_an_io_error() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }
    }
    let e = analyze_reader(Failing, AnalyzeOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "reading the log failed: disk gone");
}

#[test]
fn a_kmsg_fragment_at_the_end_of_input_is_still_read() {
    let r = report_of("4,900,77000000,c;NVRM: Xid (PCI:0000:3b:00): 13, pid=2001, name=train.py, Graphics");
    assert_eq!(r.gpus[0].xids[0].last_message, "Graphics");
}

#[test]
fn the_report_schema_is_an_object_and_the_report_serializes_in_camel_case() {
    let schema = serde_json::to_value(schemars::schema_for!(LogReport)).unwrap();
    assert_eq!(schema["type"], "object");
    assert!(schema["properties"]["notUnderstood"].is_object(), "{schema}");
    let json = serde_json::to_value(report_of(EXAMPLE)).unwrap();
    assert_eq!(json["summary"]["action"], "rebootNode");
    assert_eq!(json["gpus"][0]["xids"][0]["verdict"]["rule"]["effect"], "unhealthyUntilReboot");
    assert_eq!(json["gpus"][0]["xids"][0]["lastTime"]["kind"], "local");
    let explanation = serde_json::to_value(schemars::schema_for!(XidExplanation)).unwrap();
    assert_eq!(explanation["type"], "object");
}

#[test]
fn explain_xid_gives_the_catalog_and_the_default_rule() {
    let policy = gpuscope_crds::policy::EffectivePolicy::default();
    let e = explain_xid(13, &policy);
    assert_eq!(
        (e.catalog.immediate_action.as_str(), e.once.health, e.above_rate.health),
        ("RESTART_APP", Health::Healthy, Health::Degraded)
    );
    assert!(e.by_recovery_action.is_empty());
    let e = explain_xid(154, &policy);
    let reboot = e.by_recovery_action.iter().find(|v| v.recovery_action.name == "NodeReboot").unwrap();
    assert_eq!((reboot.verdict.health, reboot.verdict.action), (Health::Unhealthy, GpuAction::RebootNode));
    assert_eq!(e.by_recovery_action.len(), 8);
    assert!(!explain_xid(9_999, &policy).catalog.known);
}

// ---- property tests ----

fn xid_line() -> impl Strategy<Value = XidLine> {
    (
        (any::<u16>(), any::<u8>(), 0u8..=0x1f),
        proptest::option::of((0u32..100, proptest::option::of(0u32..100))),
        prop_oneof![4 => 0u32..=200, 1 => Just(154u32), 1 => 0u32..=9999],
        proptest::option::of(any::<u32>()),
        proptest::option::of(
            "[A-Za-z0-9_./:-]([A-Za-z0-9_./: -]{0,13}[A-Za-z0-9_./:-])?"
                .prop_filter("a placeholder is no name", |n| process_name_of(n).as_deref() == Some(n.as_str())),
        ),
        prop_oneof![
            "[A-Za-z0-9 ,.:;()=_'<>/+#*-]{0,80}".prop_map(|s| s.trim().to_string()),
            "(0x[0-9a-f]{8} ?){1,6}".prop_map(|s| s.trim().to_string()),
            (0u32..8).prop_map(|b| format!("GPU recovery action changed from 0x0 (None) to 0x{b:x} (Whatever)")),
        ],
    )
        .prop_map(|((domain, bus, device), mig, code, pid, process_name, message)| {
            let recovery_action = if code == 154 { RecoveryAction::from_xid154_message(&message) } else { None };
            XidLine {
                pci_bus_id: PciBusId { domain: u32::from(domain), bus, device, function: 0 },
                gpu_instance: mig.map(|(gi, _)| gi),
                compute_instance: mig.and_then(|(_, ci)| ci),
                code,
                pid,
                process_name,
                message,
                recovery_action,
            }
        })
}

const MONTHS: [&str; 9] = ["Aug", "aug", "Dez", "Mär", "août", "dic", "8月", "Jan", "OCT"];
const LEVELS: [&str; 6] = ["emerg", "alert", "crit", "err", "warning", "info"];

fn clock() -> impl Strategy<Value = String> {
    (0u32..24, 0u32..60, 0u32..60).prop_map(|(h, m, s)| format!("{h:02}:{m:02}:{s:02}"))
}

fn rfc3339() -> impl Strategy<Value = String> {
    (
        2000u32..2100,
        1u32..=12,
        1u32..=28,
        clock(),
        prop_oneof![Just(""), Just(".123456"), Just(",5")],
        prop_oneof![Just("Z"), Just("+0000"), Just("+02:00"), Just("-0530")],
    )
        .prop_map(|(y, mo, d, c, frac, off)| format!("{y}-{mo:02}-{d:02}T{c}{frac}{off}"))
}

/// (prefix, suffix, the time text the prefix carries) for every format the analysis lists.
fn wrapping() -> impl Strategy<Value = (String, String, Option<String>)> {
    let host = "[a-z][a-z0-9-]{0,15}";
    let one = prop_oneof![
        (0u32..192, any::<u64>(), any::<u64>()).prop_map(|(p, s, t)| (
            format!("{p},{s},{t},-;"),
            String::new(),
            Some(t.to_string())
        )),
        (0u32..1_000_000, 0u32..1_000_000).prop_map(|(s, us)| {
            let t = format!("{s}.{us:06}");
            (format!("[{t:>12}] "), String::new(), Some(t))
        }),
        (0usize..7, 0usize..9, 1u32..=31, clock(), 1990u32..2100).prop_map(|(w, m, d, c, y)| {
            let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            let t = format!("{} {} {d:>2} {c} {y}", days[w], MONTHS[m]);
            (format!("[{t}] "), String::new(), Some(t))
        }),
        (0usize..6, rfc3339()).prop_map(|(l, t)| (format!("kern  :{:<6}: {t} ", LEVELS[l]), String::new(), Some(t))),
        (0usize..9, 1u32..=31, clock(), proptest::option::of(host), any::<bool>()).prop_map(|(m, d, c, h, pad)| {
            let t = if pad { format!("{} {d:>2} {c}", MONTHS[m]) } else { format!("{} {d:02} {c}", MONTHS[m]) };
            let host = h.map(|h| format!("{h} ")).unwrap_or_default();
            (format!("{t} {host}kernel: "), String::new(), Some(t))
        }),
        (rfc3339(), host).prop_map(|(t, h)| (format!("{t} {h} kernel: "), String::new(), Some(t))),
        (0usize..9, 1u32..=31, clock(), host, 0u32..100_000).prop_map(|(m, d, c, h, up)| {
            let t = format!("{} {d:>2} {c}", MONTHS[m]);
            (format!("{t} {h} kernel: [{up:>5}.000001] "), String::new(), Some(t))
        }),
        Just(("kernel: ".to_string(), String::new(), None)),
        ((1u8..255, 0u8..255), 0usize..6, rfc3339()).prop_map(|((a, b), l, t)| {
            (format!("10.{a}.{b}.7: kern: {:>7}: [{t}]: ", LEVELS[l]), String::new(), Some(t))
        }),
        Just(("> ".to_string(), String::new(), None)),
        Just(("```".to_string(), "```".to_string(), None)),
        Just(("- `".to_string(), "`".to_string(), None)),
        Just(("level=error msg=\"".to_string(), "\" node=gpu-7".to_string(), None)),
        Just(("someone pasted: ".to_string(), String::new(), None)),
    ];
    // A markdown quote may wrap any of them.
    (any::<bool>(), one).prop_map(|(quote, (p, s, t))| if quote { (format!("> {p}"), s, t) } else { (p, s, t) })
}

proptest! {
    #[test]
    fn any_listed_prefix_before_a_valid_xid_line_parses_like_the_bare_line(
        x in xid_line(),
        (prefix, suffix, time) in wrapping(),
    ) {
        let bare = x.to_kernel_text();
        let expected = parse_kernel_message(&bare);
        prop_assert_eq!(&expected, &Ok(Some(KernelEvent::Xid(x.clone()))));
        let line = format!("{prefix}{bare}{suffix}");
        let parsed = parse_log_line(&line);
        prop_assert_eq!(&parsed.event, &expected, "{}", line);
        prop_assert_eq!(parsed.time.map(|t| t.text), time, "{}", line);
        // And through the analyzer.
        let r = analyze(line.as_bytes(), AnalyzeOptions::default()).unwrap();
        prop_assert_eq!(r.summary.xid_lines, 1);
        let got = &r.gpus[0].xids[0];
        prop_assert_eq!(got.code, x.code);
        prop_assert_eq!(&r.gpus[0].pci_bus_id, &x.pci_bus_id.to_string());
        prop_assert_eq!(got.last_process.as_ref().and_then(|p| p.pid), x.pid);
    }

    #[test]
    // No double quotes in the tokens: `msg="..."` wrappers end at the first one (a shipper escapes them).
    fn an_xid_with_any_pid_and_name_token_is_counted_not_left_not_understood(
        (prefix, suffix, _) in wrapping(),
        pid in proptest::sample::select(vec![
            "", "pid=1234, ", "pid='1234', ", "pid='N/A', ", "pid=N/A, ", "pid=, ", "pid='', ",
            "pid='<unknown>', ", "pid=<unknown>, ", "pid=-, ", "pid=?, ", "pid=(null), ", "pid=-1, ",
        ]),
        name in proptest::sample::select(vec![
            "", "name=python3, ", "name='python3', ", "name=<unknown>, ", "name='<unknown>', ", "name=N/A, ",
            "name=, ", "name='', ", "name=(null), ",
        ]),
        code in 0u32..=999,
    ) {
        let line = format!("{prefix}NVRM: Xid (PCI:0000:3b:00): {code}, {pid}{name}Ch 00000010{suffix}");
        let r = analyze(line.as_bytes(), AnalyzeOptions::default()).unwrap();
        prop_assert_eq!((r.summary.xid_lines, r.summary.not_understood_lines), (1, 0), "{}", line);
        let x = &r.gpus[0].xids[0];
        prop_assert_eq!(x.code, code);
        prop_assert_eq!(&x.last_message, "Ch 00000010", "{}", line);
        let expected_pid = pid.contains("1234").then_some(1234);
        prop_assert_eq!(x.last_process.as_ref().and_then(|p| p.pid), expected_pid, "{}", line);
    }

    #[test]
    fn arbitrary_bytes_never_panic_in_any_chunking(
        bytes in proptest::collection::vec(
            prop_oneof![
                8 => any::<u8>(),
                1 => Just(b'\n'),
                1 => proptest::sample::select(b"NVRM: Xid (PCI:0000:3b:00): 79, SXid ([]<>,;:`>".to_vec()),
            ],
            0..2000,
        ),
        chunk in 1usize..300,
    ) {
        let whole = analyze(&bytes, AnalyzeOptions::default()).unwrap();
        let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
        for piece in bytes.chunks(chunk) {
            analyzer.push_bytes(piece);
        }
        prop_assert_eq!(analyzer.finish(), whole.clone());
        let _ = render_text(&whole);
        prop_assert!(serde_json::to_string(&whole).is_ok());
    }
}

proptest! {
    // Each case builds a log of hundreds of records: fewer cases keep the debug-build run short.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_text_never_panics_in_the_prefix_scanner(text in "\\PC{0,200}") {
        let p = split_prefix(&text);
        // The kernel text is always a piece of the line.
        prop_assert!(text.contains(p.text));
        let _ = parse_log_line(&text);
    }

    #[test]
    fn the_report_size_stays_bounded(
        records in proptest::collection::vec((any::<u8>(), 0u32..10_000, 0u8..4, "[ -~]{0,40}"), 0..600),
    ) {
        let mut log = String::new();
        for (bus, code, kind, text) in &records {
            match kind {
                0 => log.push_str(&format!("NVRM: Xid (PCI:0000:{bus:02x}:00): {code}, {text}\n")),
                1 => log.push_str(&format!("nvidia-nvswitch1: SXid (PCI:0000:{bus:02x}:00.0): {code}, {text}\n")),
                2 => log.push_str(&format!("NVRM: Xid (PCI:{text}): {code}, m\n")),
                _ => log.push_str(&format!("NVRM: RC all channels for critical error {code}.\n")),
            }
        }
        let r = report_of(&log);
        let limits = Limits::default();
        prop_assert!(r.gpus.len() <= limits.max_gpus);
        prop_assert!(r.gpus.iter().all(|g| g.xids.len() <= limits.max_codes_per_gpu));
        prop_assert!(r.sxids.len() <= limits.max_sxids && r.companions.len() <= limits.max_companions);
        prop_assert!(r.not_understood.samples.len() <= limits.max_samples);
        prop_assert!(r.not_shown.codes.len() <= 64);
        prop_assert!(serde_json::to_string(&r).unwrap().len() < 400_000);
    }
}

/// Not run by default: `cargo test --release -p gpuscope-crds -- --ignored --nocapture log_analysis_throughput`.
#[test]
#[ignore = "timing; run in release to measure"]
fn log_analysis_throughput() {
    let noise = [
        "[ 1234.567890] usb 1-1: new high-speed USB device number 2 using xhci_hcd",
        "[ 1234.567891] EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.",
        "[ 1234.567892] pcieport 0000:00:01.0: AER: Corrected error received: 0000:3b:00.0",
        "[ 1234.567893] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
        "[ 1234.567894] systemd[1]: Started Journal Service.",
        "[ 1234.567895] audit: type=1400 audit(1722830053.123:42): apparmor=\"STATUS\" operation=\"profile_load\"",
        "[ 1234.567896] cali1234abcd: Gained IPv6LL",
        "[ 1234.567897] nvidia-modeset: Loading NVIDIA Kernel Mode Setting Driver for UNIX platforms  550.54.15",
    ];
    let xid = "[ 1234.567898] NVRM: Xid (PCI:0000:3b:00): 13, pid=1234, name=python3, Graphics SM Warp Exception";
    let build = |xid_every: usize| {
        let mut log = Vec::with_capacity(260 << 20);
        let mut i = 0usize;
        while log.len() < 256 << 20 {
            let line = if xid_every > 0 && i.is_multiple_of(xid_every) { xid } else { noise[i % noise.len()] };
            log.extend_from_slice(line.as_bytes());
            log.push(b'\n');
            i += 1;
        }
        log
    };
    for (label, log) in [
        ("no driver lines", build(0)),
        ("one XID per 1000 lines", build(1000)),
        ("one XID per 10 lines", build(10)),
        ("XID flood (every line)", build(1)),
    ] {
        let start = std::time::Instant::now();
        let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
        for chunk in log.chunks(1 << 20) {
            analyzer.push_bytes(chunk);
        }
        let report = analyzer.finish();
        let secs = start.elapsed().as_secs_f64();
        let mbps = log.len() as f64 / secs / 1e6;
        println!(
            "{label}: {} MB in {secs:.3} s = {mbps:.0} MB/s ({} XID lines)",
            log.len() / 1_000_000,
            report.summary.xid_lines
        );
        if !cfg!(debug_assertions) {
            assert!(mbps > 100.0, "{label}: {mbps:.0} MB/s");
        }
    }
}

#[test]
fn a_fatal_sxid_alone_drives_the_verdict_and_counts_once_with_its_detail_lines() {
    let log = "\
[  77.1] nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 20034, Fatal, Link 28 LTSSM Fault Up
[  77.1] nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 20034, Severity 5 Engine instance 28 Sub-engine instance 00
[  77.1] nvidia-nvswitch3: SXid (PCI:0000:c1:00.0): 20034, Data {0x50610002, 0x10100030, 0x00000000}
";
    let r = report_of(log);
    assert_eq!((r.summary.health, r.summary.action), (Health::Unhealthy, GpuAction::RebootNode));
    assert_eq!(
        r.summary.headline,
        "reboot node: fatal NVSwitch SXid 20034 on switch 0000:c1:00.0; NVLink is down on this node"
    );
    let first = r.summary.first.as_ref().unwrap();
    assert_eq!(
        (first.code, first.reason.as_str(), first.pci_bus_id.as_str()),
        (20034, "NvswitchFatalSxid", "0000:c1:00.0")
    );
    assert_eq!(r.sxids.len(), 1);
    let sxid = &r.sxids[0];
    assert_eq!((sxid.count, sxid.severity.as_deref()), (1, Some("Fatal")), "one SXid, its header's severity");
    assert_eq!(sxid.last_message, "Fatal, Link 28 LTSSM Fault Up", "the detail lines do not replace the header");
    assert_eq!(r.summary.sxid_lines, 3, "every line is still read and counted as a line");
}

#[test]
fn a_non_fatal_sxid_changes_no_verdict_and_a_worse_xid_still_leads() {
    let nonfatal = report_of(
        "[ 1.0] nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): 12028, Non-fatal, Link 32 egress non-posted PRIV error\n",
    );
    assert_eq!((nonfatal.summary.health, nonfatal.summary.action), (Health::Healthy, GpuAction::None));
    assert_eq!(nonfatal.sxids[0].severity.as_deref(), Some("Non-fatal"));
    // XID 79 demands as much as a fatal SXid: the GPU's own verdict leads.
    let both = report_of(&format!(
        "{}[ 2.0] nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): 20034, Fatal, Link 28 LTSSM Fault Up\n",
        "[ 1.0] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=x, GPU has fallen off the bus.\n"
    ));
    assert_eq!(both.summary.first.as_ref().map(|f| f.code), Some(79));
    // A fatal SXid before the reboot the log shows no longer counts.
    let rebooted = report_of(
        "[ 1.0] nvidia-nvswitch0: SXid (PCI:0000:c1:00.0): 20034, Fatal, Link 28 LTSSM Fault Up\n\
         [ 0.0] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)\n",
    );
    assert_eq!(rebooted.summary.health, Health::Healthy);
}

#[test]
fn nvlink5_lines_are_judged_by_their_fatal_token_and_150_always_resets() {
    let line = |code: u32, text: &str| format!("[ 1.0] NVRM: Xid (PCI:0000:3b:00): {code}, {text}\n");
    let fatal = report_of(&line(149, "NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x00000001 0x00000000)"));
    assert_eq!((fatal.summary.health, fatal.summary.action), (Health::Unhealthy, GpuAction::ResetGpu));
    let nonfatal = report_of(&line(145, "RLW_REMAP Nonfatal XC0 i1 Link 03 (0x00000100)"));
    assert_eq!(nonfatal.summary.health, Health::Healthy, "Non-fatal: ignored unless it repeats");
    let untagged = report_of(&line(147, "TREX error status 0x4"));
    assert_eq!(untagged.summary.health, Health::Degraded, "no token: the decode is unknown");
    let mse = report_of(&line(150, "MSE_WATCHDOG XC0 (0x00000002)"));
    assert_eq!((mse.summary.health, mse.summary.action), (Health::Unhealthy, GpuAction::ResetGpu));
}

#[test]
fn a_driver_reload_after_a_reset_gpu_xid_is_the_remedy() {
    let log = "\
[ 10.0] NVRM: Xid (PCI:0000:3b:00): 95, pid=1, name=x, Uncontained: FBHUB. RST: Yes, D-RST: No
[ 20.0] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.86.15  Fri Jan 10 2025
";
    let r = report_of(log);
    assert_eq!(r.summary.health, Health::Healthy);
    assert!(r.gpus[0].xids[0].verdict.explanation.contains("the driver reloaded"));
    let without = report_of(log.lines().next().map(|l| format!("{l}\n")).as_deref().unwrap_or_default());
    assert_eq!(without.summary.health, Health::Unhealthy);
}
