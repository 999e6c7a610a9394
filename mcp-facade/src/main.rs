//! gpuscope-mcp: an MCP server that answers GPU questions from a watch cache, and `gpuscope-mcp analyze-log` for
//! kernel logs on the command line. All the work is in the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gpuscope_mcp::cli::{self, Args, Command};
use gpuscope_mcp::{analyze_log, malloc};
use gpuscope_runtime::shutdown::Shutdown;

fn main() -> anyhow::Result<ExitCode> {
    // Before any thread exists: an arena limit does not shrink arenas already made.
    let malloc = malloc::tune(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()));
    let args = Args::parse();
    if let Some(Command::AnalyzeLog(log)) = &args.command {
        // A command-line tool: Ctrl-C keeps its default meaning (stop at once), so no handlers.
        args.log.init()?;
        return Ok(analyze_log::run(log));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Before anything that can take time: from here on a SIGTERM or SIGINT, whatever phase it arrives in (cluster
    // configuration, waiting for the MCP client's `initialize`), ends in a clean exit.
    let shutdown = {
        let _in_runtime = runtime.enter();
        Shutdown::install()?
    };
    args.log.init()?;
    malloc.log();
    let result = runtime.block_on(cli::run(args, shutdown));
    // Don't wait for a blocking stdin read that can never finish.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map(|()| ExitCode::SUCCESS)
}
