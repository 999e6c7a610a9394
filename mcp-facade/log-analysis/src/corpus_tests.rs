//! The corpus (`mcp-facade/log-analysis/tests-data/corpus.txt`): realistic lines in every accepted format, each case with
//! its expected result, run through the library case by case and as one log.

use super::*;
use gpuscope_crds::health::Health;

const CORPUS: &str = include_str!("../tests-data/corpus.txt");

/// One case of the corpus.
struct Case {
    name: String,
    /// Line number of the `===` line in the corpus file.
    at: usize,
    expects: Vec<Vec<String>>,
    lines: Vec<String>,
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (i, line) in CORPUS.lines().enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case { name: name.to_string(), at: i + 1, expects: Vec::new(), lines: Vec::new() });
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else if let Some(case) = cases.last_mut() {
            match line.strip_prefix("expect ") {
                Some(expect) if case.lines.is_empty() => case.expects.push(words(expect)),
                _ => case.lines.push(line.to_string()),
            }
        }
    }
    cases
}

/// Split at spaces, keeping double-quoted values (`msg="a b"` → `msg=a b`) whole.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn run(lines: &[String]) -> LogReport {
    let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
    for line in lines {
        analyzer.push_line(line.as_bytes());
    }
    analyzer.finish()
}

fn camel<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Checks one `expect` line against the report; the error says what differs.
fn check(report: &LogReport, expect: &[String]) -> Result<(), String> {
    let arg = |i: usize| expect.get(i).map(String::as_str).unwrap_or_default();
    let keys = |from: usize| {
        expect.iter().skip(from).filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string()))
    };
    match arg(0) {
        "xid" => {
            let gpu = report.gpus.iter().find(|g| g.pci_bus_id == arg(1)).ok_or(format!("no GPU {}", arg(1)))?;
            let code: u32 = arg(2).parse().map_err(|_| "bad code".to_string())?;
            let x = gpu.xids.iter().find(|x| x.code == code).ok_or(format!("no XID {code} on {}", arg(1)))?;
            let time = x.last_time.as_ref();
            for (k, v) in keys(3) {
                let actual = match k.as_str() {
                    "count" => x.count.to_string(),
                    "gi" => {
                        x.mig_instances.first().and_then(|m| m.gpu_instance).map(|n| n.to_string()).unwrap_or_default()
                    }
                    "ci" => x
                        .mig_instances
                        .first()
                        .and_then(|m| m.compute_instance)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    "pid" => x.last_process.as_ref().and_then(|p| p.pid).map_or("-".into(), |p| p.to_string()),
                    "name" => x.last_process.as_ref().and_then(|p| p.name.clone()).unwrap_or_else(|| "-".into()),
                    "msg" => x.last_message.clone(),
                    "time" => time.map(|t| t.text.clone()).unwrap_or_default(),
                    "utc" => time.and_then(|t| t.utc.clone()).unwrap_or_default(),
                    "local" => time.and_then(|t| t.local.clone()).unwrap_or_default(),
                    "uptime" => time.and_then(|t| t.uptime_seconds).map(|s| s.to_string()).unwrap_or_default(),
                    "format" => {
                        let found = report.input.formats.iter().any(|f| camel(f.format) == v);
                        if found { v.clone() } else { format!("{:?}", report.input.formats) }
                    }
                    other => return Err(format!("unknown key {other}")),
                };
                if actual != v {
                    return Err(format!("XID {code} {k}: expected {v:?}, got {actual:?}"));
                }
            }
            Ok(())
        }
        "sxid" => {
            let code: u32 = arg(2).parse().map_err(|_| "bad code".to_string())?;
            let s = report
                .sxids
                .iter()
                .find(|s| s.pci_bus_id == arg(1) && s.code == code)
                .ok_or(format!("no SXid {code} on {}", arg(1)))?;
            for (k, v) in keys(3) {
                let actual = match k.as_str() {
                    "switch" => s.nvswitch.map(|n| n.to_string()).unwrap_or_default(),
                    "severity" => s.severity.clone().unwrap_or_default(),
                    other => return Err(format!("unknown key {other}")),
                };
                if actual != v {
                    return Err(format!("SXid {code} {k}: expected {v:?}, got {actual:?}"));
                }
            }
            Ok(())
        }
        "companion" => {
            let kind = arg(1);
            let c = report.companions.iter().find(|c| camel(c.kind) == kind).ok_or(format!("no companion {kind}"))?;
            for (k, v) in keys(2) {
                let actual = match k.as_str() {
                    "pci" => c.pci_bus_id.clone().unwrap_or_default(),
                    "code" => c.code.map(|n| n.to_string()).unwrap_or_default(),
                    other => return Err(format!("unknown key {other}")),
                };
                if actual != v {
                    return Err(format!("companion {k}: expected {v:?}, got {actual:?}"));
                }
            }
            Ok(())
        }
        "uuid" => {
            let gpu = report.gpus.iter().find(|g| g.pci_bus_id == arg(1)).ok_or(format!("no GPU {}", arg(1)))?;
            if gpu.uuid.as_deref() == Some(arg(2)) && gpu.uuid_source == Some(UuidSource::Log) {
                Ok(())
            } else {
                Err(format!("uuid: expected {}, got {:?} from {:?}", arg(2), gpu.uuid, gpu.uuid_source))
            }
        }
        "not-understood" => {
            if report.not_understood.samples.iter().any(|s| s.reason.contains(arg(1))) {
                Ok(())
            } else {
                Err(format!("no not-understood reason containing {:?}: {:?}", arg(1), report.not_understood))
            }
        }
        "verdict" => {
            let actual = (camel(report.summary.health), camel(report.summary.action));
            if actual == (arg(1).to_string(), arg(2).to_string()) {
                Ok(())
            } else {
                Err(format!("verdict: expected {} {}, got {actual:?} ({})", arg(1), arg(2), report.summary.headline))
            }
        }
        "reboots" => {
            let actual = report.input.reboots_seen.to_string();
            if actual == arg(1) { Ok(()) } else { Err(format!("reboots: expected {}, got {actual}", arg(1))) }
        }
        "nothing" => {
            let empty = report.gpus.is_empty()
                && report.sxids.is_empty()
                && report.companions.is_empty()
                && report.not_understood.lines == 0;
            if empty { Ok(()) } else { Err(format!("expected nothing, got {}", render_text(report))) }
        }
        other => Err(format!("unknown expectation {other}")),
    }
}

/// What the expectations add up to: (XID lines, SXid lines, companion lines, not-understood lines).
fn expected_totals(case: &Case) -> (u64, u64, u64, u64) {
    let mut totals = (0, 0, 0, 0);
    for e in &case.expects {
        match e.first().map(String::as_str) {
            Some("xid") => {
                let count = e.iter().find_map(|kv| kv.strip_prefix("count=")).and_then(|n| n.parse().ok());
                totals.0 += count.unwrap_or(1);
            }
            Some("sxid") => totals.1 += 1,
            Some("companion") => totals.2 += 1,
            Some("not-understood") => totals.3 += 1,
            _ => {}
        }
    }
    totals
}

#[test]
fn corpus_cases_give_their_expected_results() {
    let cases = cases();
    assert!(cases.len() >= 70, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        assert!(!case.expects.is_empty() && !case.lines.is_empty(), "case {:?} at line {}", case.name, case.at);
        let report = run(&case.lines);
        for expect in &case.expects {
            if let Err(e) = check(&report, expect) {
                failures.push(format!("line {} {:?}: {e}", case.at, case.name));
            }
        }
        // Exactly what is expected, nothing more.
        let s = &report.summary;
        let actual = (s.xid_lines, s.sxid_lines, s.companion_lines, s.not_understood_lines);
        if actual != expected_totals(case) {
            failures.push(format!(
                "line {} {:?}: totals (XID, SXid, companion, not understood) {actual:?}, expected {:?}",
                case.at,
                case.name,
                expected_totals(case)
            ));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_expected_xid_parses_like_the_bare_driver_line() {
    // The analysis and the probe's parser agree: the same record with every prefix removed parses the same.
    for case in cases() {
        for line in &case.lines {
            let parsed = parse_log_line(line);
            if let Ok(Some(gpuscope_crds::xid::line::KernelEvent::Xid(x))) = &parsed.event {
                let bare = x.to_kernel_text();
                let again = gpuscope_crds::xid::line::parse_kernel_message(&bare);
                assert_eq!(again.ok().flatten(), Some(gpuscope_crds::xid::line::KernelEvent::Xid(x.clone())), "{line}");
            }
        }
    }
}

#[test]
fn the_whole_corpus_as_one_log_adds_up() {
    let cases = cases();
    for line in CORPUS.lines().filter(|l| l.starts_with("===") || l.starts_with("expect") || l.starts_with('#')) {
        assert!(!line.contains("NVRM") && !line.contains("SXid"), "markers outside log lines: {line}");
    }
    let report = analyze(CORPUS.as_bytes(), AnalyzeOptions::default()).expect("the corpus is small");
    let want =
        cases.iter().map(expected_totals).fold((0, 0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3));
    let s = &report.summary;
    assert_eq!((s.xid_lines, s.sxid_lines, s.companion_lines, s.not_understood_lines), want);
    // Every prefix kind shows in the statistics of driver lines; continuation lines carry no marker of their own,
    // so they show as joined lines instead.
    let formats: Vec<PrefixKind> = report.input.formats.iter().map(|f| f.format).collect();
    for kind in PrefixKind::ALL.into_iter().filter(|k| *k != PrefixKind::Continuation) {
        assert!(formats.contains(&kind), "{kind:?} missing from {formats:?}");
    }
    assert_eq!(report.input.joined_lines, 2, "the kmsg fragment and the wrapped line");
    // Three reboots in the file (two `Linux version` lines, one journal separator); the last is in the last case,
    // after every XID: nothing counts, as in the operator after a reboot.
    assert_eq!(report.input.reboots_seen, 3);
    assert_eq!((s.health, s.action), (Health::Healthy, gpuscope_crds::xid::rules::GpuAction::None));
    assert!(report.gpus.iter().flat_map(|g| &g.xids).all(|x| x.before_last_reboot == x.count));
    // The whole corpus shares one GPU address across cases: limits keep the report bounded.
    assert!(report.gpus.len() <= Limits::default().max_gpus);
    let json = serde_json::to_string(&report).expect("serializes");
    assert!(json.len() < 400_000, "{} bytes", json.len());
}

#[test]
fn the_corpus_streams_the_same_in_any_chunking() {
    let whole = analyze(CORPUS.as_bytes(), AnalyzeOptions::default()).expect("small");
    for chunk in [1, 7, 64, 4096] {
        let mut analyzer = LogAnalyzer::new(AnalyzeOptions::default());
        for piece in CORPUS.as_bytes().chunks(chunk) {
            analyzer.push_bytes(piece);
        }
        assert_eq!(analyzer.finish(), whole, "chunks of {chunk}");
    }
    let from_reader = analyze_reader(CORPUS.as_bytes(), AnalyzeOptions::default()).expect("reads");
    assert_eq!(from_reader, whole);
}
