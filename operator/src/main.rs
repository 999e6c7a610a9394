//! gpuscope-operator: turns GpuNodeStatus observations into health conditions by policy.

use clap::Parser;
use gpuscope_operator::app::{self, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.log.init()?;
    app::run(args).await
}
