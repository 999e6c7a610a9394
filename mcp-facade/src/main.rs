//! gpuscope-mcp: an MCP server that answers GPU questions from a watch cache.

use clap::Parser;
use gpuscope_crds::logging::LogArgs;

/// gpuscope MCP facade: answers AI assistants' questions about GPU nodes (inventory, health, XID errors) from a
/// watch cache of the cluster's GpuNodeStatus objects, over stdio or streamable HTTP.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "gpuscope-mcp starting");
    anyhow::bail!("the MCP server is not built yet (issue #5): this binary only carries the shared CLI")
}
