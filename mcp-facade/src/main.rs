//! gpuscope-mcp: an MCP server that answers GPU questions from a watch cache. All the work is in the library.

use std::time::Duration;

use clap::Parser;
use gpuscope_mcp::cli::{self, Args};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(cli::run(args));
    // Don't wait for a blocking stdin read that can never finish.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
