//! Logging setup shared by the three programs: human-readable by default, JSON when asked, always on stderr
//! (the facade's stdio transport owns stdout).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event, for log pipelines.
    Json,
}

/// Install the global tracing subscriber. `RUST_LOG` overrides `default_filter` (e.g. "info,kube=warn").
///
/// Returns an error when a subscriber is already installed.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(default_filter))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    result.map_err(|e| LoggingError::Install(e.to_string()))
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter directive (RUST_LOG or the default) is malformed.
    #[error("invalid log filter (check RUST_LOG): {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber exists already.
    #[error("could not install the log subscriber: {0}")]
    Install(String),
}

/// The log filter when neither `--log-level` nor RUST_LOG says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info,rmcp=warn";

/// Logging flags every gpuscope program accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format: human-readable text, or one JSON object per line for log pipelines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "GPUSCOPE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "debug,kube=warn". RUST_LOG overrides it. The
    /// default keeps the MCP library at warn: at info it logs three lines (one a dump of the client's
    /// capabilities) for every stateless HTTP request.
    #[arg(long, default_value = DEFAULT_LOG_FILTER, env = "GPUSCOPE_LOG_LEVEL")]
    pub log_level: String,
}

impl LogArgs {
    /// Install the subscriber these flags describe.
    pub fn init(&self) -> Result<(), LoggingError> {
        init(self.log_format, &self.log_level)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_default_filter_keeps_the_mcp_librarys_per_request_lines_out_and_everything_else_in() {
        let captured = Captured::default();
        let writer = captured.clone();
        let filter = EnvFilter::try_new(DEFAULT_LOG_FILTER).expect("the default parses");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "rmcp::service", "Service initialized as server");
            tracing::warn!(target: "rmcp::transport", "a session failed");
            tracing::info!(target: "gpuscope_mcp::cache", "cache synced");
            tracing::info!(target: "kube_runtime::watcher", "relisting");
            tracing::debug!(target: "gpuscope_mcp::cache", "a debug line");
        });
        let log = String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("UTF-8");
        assert!(!log.contains("Service initialized"), "{log}");
        assert!(!log.contains("a debug line"), "{log}");
        for kept in ["a session failed", "cache synced", "relisting"] {
            assert!(log.contains(kept), "{kept:?} missing from:\n{log}");
        }
    }
}
