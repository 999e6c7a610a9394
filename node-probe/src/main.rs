//! gpuscope-probe: reads NVML and kernel-log XIDs into the node's GpuNodeStatus.

use std::time::Duration;

use gpuscope_probe::app;
use gpuscope_probe::snapshot::{self, Invocation};
use gpuscope_runtime::shutdown::Shutdown;

fn main() -> anyhow::Result<()> {
    let args = match snapshot::parse_command_line() {
        Invocation::Run(args) => *args,
        Invocation::Snapshot(snapshot) => {
            // A one-shot read, before any signal handling: Ctrl-C must stop it even inside a hung NVML call.
            snapshot.log.init()?;
            return snapshot::run(&snapshot);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // First of all: from here on a SIGTERM, whatever phase it arrives in (NVML initialisation included), ends in a
    // clean exit.
    let shutdown = {
        let _in_runtime = runtime.enter();
        Shutdown::install()?
    };
    args.log.init()?;
    let result = runtime.block_on(app::run(args, shutdown));
    // Don't wait for a blocking NVML call on a wedged GPU that may never return.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
