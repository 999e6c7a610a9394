//! gpuscope-probe: reads NVML and kernel-log XIDs into the node's GpuNodeStatus.

use std::time::Duration;

use clap::Parser;
use gpuscope_probe::app::{self, Args};
use gpuscope_runtime::shutdown::Shutdown;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // First of all: from here on a SIGTERM, whatever phase it arrives in (NVML initialisation included), ends in a
    // clean exit.
    let shutdown = {
        let _in_runtime = runtime.enter();
        Shutdown::install()?
    };
    let args = Args::parse();
    args.log.init()?;
    let result = runtime.block_on(app::run(args, shutdown));
    // Don't wait for a blocking NVML call on a wedged GPU that may never return.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
