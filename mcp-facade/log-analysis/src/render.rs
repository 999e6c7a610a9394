//! The report as a readable table for a terminal (the CLI prints it; `--output json` prints the report itself).

use std::fmt::Write;

use super::report::{CompanionKindReport, LogReport, XidReport};
use super::time::LogTime;
use gpuscope_crds::health::Health;

/// The report as text: the verdict and the first action, then per-GPU tables, SXids, companion lines and what
/// was not understood. Lines are at most about 120 characters except quoted log text.
pub fn render_text(report: &LogReport) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(out, "{}: {}", s.health, s.headline);
    let mut counts =
        vec![count(s.gpus_with_xids, "GPU with XIDs", "GPUs with XIDs"), count(s.xid_lines, "XID line", "XID lines")];
    if s.sxid_lines > 0 {
        counts.push(count(s.sxid_lines, "SXid line", "SXid lines"));
    }
    if s.companion_lines > 0 {
        counts.push(count(s.companion_lines, "companion line", "companion lines"));
    }
    if s.not_understood_lines > 0 {
        counts.push(count(s.not_understood_lines, "line not understood", "lines not understood"));
    }
    let _ = writeln!(out, "{}", counts.join(", "));
    let input = &report.input;
    let formats: Vec<String> = input.formats.iter().map(|f| format!("{} ({})", f.label, f.lines)).collect();
    let _ = write!(out, "Read {} in {} bytes", count(input.lines, "line", "lines"), input.bytes);
    if !formats.is_empty() {
        let _ = write!(out, "; driver-line prefixes: {}", formats.join(", "));
    }
    if input.reboots_seen > 0 {
        let reboots = count(input.reboots_seen, "reboot", "reboots");
        let _ = write!(out, "; {reboots} after driver lines (only XIDs after the last count)");
    }
    out.push('\n');
    if !s.complete {
        let n = &report.not_shown;
        let _ = writeln!(
            out,
            "Incomplete: size limits left out {} on {} more GPUs (codes {:?}), {} and {}.",
            count(n.xid_lines, "XID line", "XID lines"),
            n.gpus,
            n.codes,
            count(n.sxid_lines, "SXid line", "SXid lines"),
            count(n.companion_lines, "companion line", "companion lines")
        );
    }

    for gpu in &report.gpus {
        out.push('\n');
        let _ = write!(out, "GPU {}", gpu.pci_bus_id);
        if let Some(index) = gpu.index {
            let _ = write!(out, " (index {index})");
        }
        if let Some(uuid) = &gpu.uuid {
            let source = match gpu.uuid_source {
                Some(super::report::UuidSource::Caller) => "from the cluster",
                _ => "from the log",
            };
            let _ = write!(out, "  {uuid} ({source})");
        }
        out.push('\n');
        if let Some(other) = &gpu.caller_uuid_differs {
            let _ = writeln!(out, "  The cluster names this PCI address {other}: the GPU may have been replaced.");
        }
        let reason = if gpu.reason.is_empty() { String::new() } else { format!(" ({})", gpu.reason) };
        let _ = writeln!(out, "  {}{reason}: {}", gpu.health, gpu.action);
        let mut rows = vec![row(["XID", "COUNT", "FIRST", "LAST", "VERDICT", "ACTION", "MEANING"])];
        rows.extend(gpu.xids.iter().map(xid_row));
        table(&mut out, "  ", &rows);
        for x in &gpu.xids {
            xid_details(&mut out, x, report);
        }
        if gpu.codes_not_shown > 0 {
            let _ = writeln!(
                out,
                "  … {} more codes in {} not shown.",
                gpu.codes_not_shown,
                count(gpu.xid_lines_not_shown, "line", "lines")
            );
        }
    }

    if !report.sxids.is_empty() {
        let _ = writeln!(out, "\nNVSwitch SXids (switch errors, not GPU XIDs)");
        let mut rows = vec![row(["SWITCH", "SXID", "COUNT", "SEVERITY", "LAST", "LAST MESSAGE"])];
        for x in &report.sxids {
            let switch = match x.nvswitch {
                Some(n) => format!("{} (nvswitch{n})", x.pci_bus_id),
                None => x.pci_bus_id.clone(),
            };
            rows.push(vec![
                switch,
                x.code.to_string(),
                x.count.to_string(),
                x.severity.clone().unwrap_or_else(|| "-".into()),
                time_cell(x.last_time.as_ref(), x.last_line),
                x.last_message.clone(),
            ]);
        }
        table(&mut out, "  ", &rows);
    }

    if !report.companions.is_empty() {
        let _ = writeln!(out, "\nCompanion lines (evidence next to XIDs, not counted as XIDs)");
        let mut rows = vec![row(["LINE", "GPU", "COUNT", "LAST", "TEXT"])];
        for c in &report.companions {
            let what = match (c.kind, c.code) {
                (CompanionKindReport::FallenOffBus, _) => "fallen off the bus".to_string(),
                (CompanionKindReport::RcAllChannels, Some(code)) => format!("RC all channels (XID {code})"),
                (CompanionKindReport::RcAllChannels, None) => "RC all channels".to_string(),
            };
            rows.push(vec![
                what,
                c.pci_bus_id.clone().unwrap_or_else(|| "-".into()),
                c.count.to_string(),
                time_cell(c.last_time.as_ref(), c.last_line),
                c.last_text.clone(),
            ]);
        }
        table(&mut out, "  ", &rows);
    }

    let nu = &report.not_understood;
    if nu.lines > 0 {
        let _ = writeln!(out, "\nNot understood: {}", count(nu.lines, "driver line", "driver lines"));
        for sample in &nu.samples {
            let _ = writeln!(out, "  line {}: {}", sample.line, sample.reason);
            let _ = writeln!(out, "    {}", sample.text);
        }
        let more = nu.lines.saturating_sub(nu.samples.len() as u64);
        if more > 0 {
            let _ = writeln!(out, "  … {} more.", count(more, "line", "lines"));
        }
    }

    let _ = writeln!(out, "\n{}", report.rules.note);
    let _ = writeln!(out, "Catalog: {} ({})", report.rules.catalog_revision, report.rules.catalog_source);
    out
}

fn xid_row(x: &XidReport) -> Vec<String> {
    let meaning =
        if x.mnemonic == "UNKNOWN" { "unknown XID (not in the catalog)".to_string() } else { x.description.clone() };
    vec![
        x.code.to_string(),
        x.count.to_string(),
        time_cell(x.first_time.as_ref(), x.first_line),
        time_cell(x.last_time.as_ref(), x.last_line),
        x.verdict.health.to_string(),
        x.verdict.action.to_string(),
        meaning,
    ]
}

fn xid_details(out: &mut String, x: &XidReport, report: &LogReport) {
    let _ = writeln!(out, "  XID {} {}", x.code, x.mnemonic);
    if !x.last_message.is_empty() {
        let _ = writeln!(out, "    last message: {}", x.last_message);
    }
    if let Some(p) = &x.last_process {
        let name = p.name.as_deref().unwrap_or("?");
        match p.pid {
            Some(pid) => {
                let _ = writeln!(out, "    process: {name} (pid {pid})");
            }
            None => {
                let _ = writeln!(out, "    process: {name}");
            }
        }
    }
    if !x.mig_instances.is_empty() {
        let list: Vec<String> = x
            .mig_instances
            .iter()
            .map(|m| match (m.gpu_instance, m.compute_instance) {
                (Some(gi), Some(ci)) => format!("GI {gi} CI {ci}"),
                (Some(gi), None) => format!("GI {gi}"),
                (None, Some(ci)) => format!("CI {ci}"),
                (None, None) => "-".to_string(),
            })
            .collect();
        let _ = writeln!(out, "    MIG: {}", list.join(", "));
    }
    if let Some(r) = &x.recovery_action {
        let _ = writeln!(out, "    recovery action: {} (0x{:x}): {}", r.name, r.value, r.advice);
    }
    if x.before_last_reboot > 0 {
        let _ = writeln!(out, "    {} before the last reboot the log shows (not counted).", x.before_last_reboot);
    }
    if let Some(entry) = report.catalog.iter().find(|c| c.code == x.code) {
        let _ = writeln!(
            out,
            "    NVIDIA: immediate {}, investigatory {}. {}",
            entry.immediate_action, entry.investigatory_action, entry.recommended_action
        );
    }
    let health = if x.verdict.health == Health::Healthy { "no escalation" } else { x.verdict.reason.as_str() };
    let _ = writeln!(out, "    verdict ({health}): {}", x.verdict.explanation);
}

/// A time for a table cell: the log's time, or the line number when the line has none.
fn time_cell(time: Option<&LogTime>, line: u64) -> String {
    match time {
        Some(t) => t.display(),
        None => format!("line {line}"),
    }
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::from(indent);
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(c).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
