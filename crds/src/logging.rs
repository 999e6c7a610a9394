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

/// Logging flags every gpuscope program accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format: human-readable text, or one JSON object per line for log pipelines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "GPUSCOPE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. "info" or "debug,kube=warn". RUST_LOG overrides it.
    #[arg(long, default_value = "info", env = "GPUSCOPE_LOG_LEVEL")]
    pub log_level: String,
}

impl LogArgs {
    /// Install the subscriber these flags describe.
    pub fn init(&self) -> Result<(), LoggingError> {
        init(self.log_format, &self.log_level)
    }
}
