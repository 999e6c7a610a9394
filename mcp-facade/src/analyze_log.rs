//! `gpuscope-mcp analyze-log`: the analyze_kernel_log tool on the command line, for a file or standard input of
//! any size. The input is streamed through the analysis, so memory does not grow with it; binary and non-UTF-8
//! input is read line by line and never fails. Unlike the MCP tool, whose answer must stay small, it shows every
//! GPU and code the log holds unless `--limit` bounds it; `--output json` prints the tool's answer for a log analysed
//! alone with those limits (`--limit 16`: exactly the tool's answer).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gpuscope_crds::Health;
use gpuscope_log_analysis::{AnalyzeError, AnalyzeOptions, Limits, analyze_reader, render_text};

use crate::cli::{AnalyzeLogArgs, FailOn, OutputFormat};
use crate::tools::kernel_log;

/// The exit status when the verdict reaches `--fail-on` (1 is an error, 2 a usage error).
pub const VERDICT_EXIT_STATUS: u8 = 3;

/// Why `analyze-log` could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeLogError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading failed part way.
    #[error("cannot read {what}: {source}")]
    Read {
        /// The file's path, or "standard input".
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The answer could not be written to standard output.
    #[error("cannot write the answer: {0}")]
    Write(#[source] io::Error),
}

/// Run `analyze-log`, print the answer to standard output and errors to standard error, and give the exit status.
pub fn run(args: &AnalyzeLogArgs) -> ExitCode {
    let mut out = BufWriter::new(io::stdout().lock());
    match analyze(args, &mut out).and_then(|health| out.flush().map(|()| health).map_err(AnalyzeLogError::Write)) {
        Ok(health) => ExitCode::from(exit_status(health, args.fail_on)),
        // `analyze-log big.log | head` closed the pipe: what was asked for has been printed.
        Err(AnalyzeLogError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpuscope-mcp analyze-log: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Analyse `args.file` (or standard input for `-`), write the answer to `out`, and give the worst verdict.
pub fn analyze(args: &AnalyzeLogArgs, out: &mut impl Write) -> Result<Health, AnalyzeLogError> {
    let limits = limits(args.limit);
    if args.file == Path::new("-") {
        return analyze_input(io::stdin().lock(), "standard input", args.output, limits, out);
    }
    let file = File::open(&args.file).map_err(|source| AnalyzeLogError::Open { path: args.file.clone(), source })?;
    analyze_input(file, &args.file.display().to_string(), args.output, limits, out)
}

/// The report's limits for `--limit`: everything without it, else at most `n` GPUs within the tool's other bounds.
pub fn limits(limit: Option<u32>) -> Limits {
    match limit {
        None => Limits::everything(),
        Some(n) => Limits { max_gpus: usize::try_from(n).unwrap_or(usize::MAX), ..Limits::default() },
    }
}

/// Analyse `input` (named `what` in errors) within `limits`, write the answer to `out` as `output` says, and give
/// the worst verdict.
pub fn analyze_input(
    input: impl Read,
    what: &str,
    output: OutputFormat,
    limits: Limits,
    out: &mut impl Write,
) -> Result<Health, AnalyzeLogError> {
    let options = AnalyzeOptions { limits, ..AnalyzeOptions::default() };
    let report = analyze_reader(input, options).map_err(|e| match e {
        AnalyzeError::Io(source) => AnalyzeLogError::Read { what: what.to_string(), source },
        // analyze_reader streams and has no size limit; keep the message if that ever changes.
        other => AnalyzeLogError::Read { what: what.to_string(), source: io::Error::other(other.to_string()) },
    })?;
    let health = report.summary.health;
    match output {
        OutputFormat::Text => {
            out.write_all(render_text(&report).as_bytes()).map_err(AnalyzeLogError::Write)?;
            if !report.summary.complete {
                // Only --limit cuts a command-line report.
                out.write_all(b"\n--limit left GPUs or codes out: run without it to see every one.\n")
                    .map_err(AnalyzeLogError::Write)?;
            }
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &kernel_log::alone(report))
                .map_err(|e| AnalyzeLogError::Write(e.into()))?;
            out.write_all(b"\n").map_err(AnalyzeLogError::Write)?;
        }
    }
    Ok(health)
}

/// 0, or [`VERDICT_EXIT_STATUS`] when `fail_on` is given and the verdict is that bad or worse.
pub fn exit_status(health: Health, fail_on: Option<FailOn>) -> u8 {
    let fails = match fail_on {
        None => false,
        Some(FailOn::Unhealthy) => health == Health::Unhealthy,
        Some(FailOn::Degraded) => matches!(health, Health::Degraded | Health::Unhealthy),
    };
    if fails { VERDICT_EXIT_STATUS } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOG: &str = "[Mon Aug  5 03:54:13 2024] NVRM: GPU at PCI:0000:3b:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab\n\
                       [Mon Aug  5 03:54:13 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has \
                       fallen off the bus.\n";

    fn run_on(input: &[u8], output: OutputFormat) -> (Health, String) {
        run_limited(input, output, None)
    }

    fn run_limited(input: &[u8], output: OutputFormat, limit: Option<u32>) -> (Health, String) {
        let mut out = Vec::new();
        let health = analyze_input(input, "test.log", output, limits(limit), &mut out).expect("analysed");
        (health, String::from_utf8(out).expect("UTF-8 output"))
    }

    #[test]
    fn text_output_is_the_readable_table_led_by_the_verdict() {
        let (health, text) = run_on(LOG.as_bytes(), OutputFormat::Text);
        assert_eq!(health, Health::Unhealthy);
        assert!(text.starts_with("Unhealthy: reboot node: XID 79 on 0000:3b:00.0\n"), "{text}");
        assert!(text.contains("GPU 0000:3b:00.0  GPU-5a4c2e1b-8f3e-4c1d-9e2a-0123456789ab (from the log)"), "{text}");
    }

    #[test]
    fn json_output_is_the_tools_answer_for_the_same_log() {
        let (_, json) = run_on(LOG.as_bytes(), OutputFormat::Json);
        let printed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let args = kernel_log::KernelLogArgs { text: LOG.to_string(), node_name: None, cluster: None };
        let tool = kernel_log::answer(None, &args).expect("tool answer");
        assert_eq!(printed, serde_json::to_value(&tool).expect("serializes"));
        assert_eq!(printed["verdict"], "Unhealthy: reboot node: XID 79 on 0000:3b:00.0");
        assert_eq!(printed["report"]["gpus"][0]["xids"][0]["code"], 79);
    }

    /// A support bundle's kernel logs from several nodes: XID 13 on each of `gpus` GPUs, each announced by its UUID
    /// line, and an XID 79 on the last one.
    fn bundle(gpus: u32) -> String {
        let mut log = String::new();
        for i in 0..gpus {
            let bus = 0x10 + i;
            log.push_str(&format!(
                "[ 10.{i:06}] NVRM: GPU at PCI:0000:{bus:02x}:00: GPU-5a4c2e1b-8f3e-4c1d-9e2a-{i:012x}\n"
            ));
            log.push_str(&format!(
                "[ 11.{i:06}] NVRM: Xid (PCI:0000:{bus:02x}:00): 13, pid=1, name=a, Graphics Exception\n"
            ));
        }
        let last = 0x10 + gpus - 1;
        log.push_str(&format!("[ 12.0] NVRM: Xid (PCI:0000:{last:02x}:00): 79, GPU has fallen off the bus.\n"));
        log
    }

    #[test]
    fn the_command_line_shows_every_gpu_of_a_big_bundle_unless_limited() {
        let log = bundle(35);
        let (health, text) = run_on(log.as_bytes(), OutputFormat::Text);
        assert_eq!(health, Health::Unhealthy);
        assert_eq!(text.matches("\nGPU 0000:").count(), 35, "{text}");
        assert!(!text.contains("Incomplete"), "{text}");
        assert!(
            text.contains("GPU-5a4c2e1b-8f3e-4c1d-9e2a-000000000022 (from the log)"),
            "the 35th GPU's UUID: {text}"
        );
        let (_, json) = run_on(log.as_bytes(), OutputFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["report"]["gpus"].as_array().map(Vec::len), Some(35));
        assert_eq!((&v["report"]["summary"]["complete"], &v["report"]["notShown"]["gpus"]), (&json!(true), &json!(0)));

        let (_, limited) = run_limited(log.as_bytes(), OutputFormat::Text, Some(16));
        assert_eq!(limited.matches("\nGPU 0000:").count(), 16, "{limited}");
        assert!(
            limited.contains("on 19 more GPUs") && limited.ends_with("run without it to see every one.\n"),
            "{limited}"
        );
        let (_, json) = run_limited(log.as_bytes(), OutputFormat::Json, Some(16));
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        // --limit 16 is exactly the MCP tool's answer, which keeps its bounds.
        let args = kernel_log::KernelLogArgs { text: log.clone(), node_name: None, cluster: None };
        let tool = serde_json::to_value(kernel_log::answer(None, &args).expect("tool answer")).expect("serializes");
        assert_eq!(v, tool);
        assert_eq!(
            (tool["report"]["gpus"].as_array().map(Vec::len), &tool["report"]["notShown"]["gpus"]),
            (Some(16), &json!(19))
        );
    }

    #[test]
    fn binary_and_non_utf8_input_is_analysed_not_refused() {
        let mut input: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        input.extend_from_slice(
            b"\n\xff\xfe NVRM: Xid (PCI:0000:3b:00): 13, pid=1, name=\xe9t\xe9, Graphics Exception\n",
        );
        let (health, text) = run_on(&input, OutputFormat::Text);
        assert_eq!(health, Health::Healthy);
        assert!(text.contains("1 XID line"), "{text}");
        let (_, json) = run_on(&input, OutputFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON even for binary input");
        assert_eq!(v["report"]["input"]["nonUtf8Lines"], 1);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_the_path() {
        let args = AnalyzeLogArgs {
            file: PathBuf::from("/nonexistent/kern.log"),
            output: OutputFormat::Text,
            fail_on: None,
            limit: None,
        };
        let e = analyze(&args, &mut Vec::new()).expect_err("missing").to_string();
        assert!(e.starts_with("cannot open /nonexistent/kern.log: No such file or directory"), "{e}");
    }

    #[test]
    fn the_exit_status_follows_fail_on_only() {
        assert_eq!(exit_status(Health::Unhealthy, None), 0);
        assert_eq!(exit_status(Health::Unhealthy, Some(FailOn::Unhealthy)), VERDICT_EXIT_STATUS);
        assert_eq!(exit_status(Health::Degraded, Some(FailOn::Unhealthy)), 0);
        assert_eq!(exit_status(Health::Degraded, Some(FailOn::Degraded)), VERDICT_EXIT_STATUS);
        assert_eq!(exit_status(Health::Healthy, Some(FailOn::Degraded)), 0);
    }
}
