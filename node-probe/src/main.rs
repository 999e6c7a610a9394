//! gpuscope-probe: reads NVML and kernel-log XIDs into the node's GpuNodeStatus.

use clap::Parser;
use gpuscope_probe::app::{self, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    app::run(args).await
}
