//! gpuscope-operator: turns GpuNodeStatus observations into health conditions by policy.

use clap::Parser;
use gpuscope_crds::logging::LogArgs;

/// gpuscope operator: reads every GpuNodeStatus and the GpuHealthPolicy, and publishes health conditions on the
/// object and its Node (and, where the policy asks, taints or cordons).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "gpuscope-operator starting");
    anyhow::bail!("the health reconciler is not built yet (issue #4): this binary only carries the shared CLI")
}
