//! gpuscope-mcp: an MCP server that answers GPU questions from a watch cache, and `gpuscope-mcp analyze-log` for
//! kernel logs on the command line. All the work is in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gpuscope_mcp::analyze_log;
use gpuscope_mcp::cli::{self, Args, Command};

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    args.log.init()?;
    if let Some(Command::AnalyzeLog(log)) = &args.command {
        return Ok(analyze_log::run(log));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(cli::run(args));
    // Don't wait for a blocking stdin read that can never finish.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}
