//! gpuscope-operator: turns GpuNodeStatus observations into health conditions by policy.

use clap::Parser;
use gpuscope_operator::app::{self, Args};
use gpuscope_runtime::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First of all: from here on a SIGTERM, whatever phase it arrives in, ends in a clean exit.
    let shutdown = Shutdown::install()?;
    let args = Args::parse();
    args.log.init()?;
    app::run(args, shutdown).await
}
