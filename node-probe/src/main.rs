//! gpuscope-probe: reads NVML and kernel-log XIDs into the node's GpuNodeStatus.

use clap::Parser;
use gpuscope_crds::logging::LogArgs;

/// gpuscope node probe: reads the node's GPUs through NVML and XID errors from the kernel log, and writes them
/// into the GpuNodeStatus named after the node.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "gpuscope-probe starting");
    anyhow::bail!(
        "the NVML and kernel-log readers are not built yet (issue #3): this binary only carries the shared CLI"
    )
}
