//! gpuscope node probe: reads the node's GPUs (NVML or a simulated scenario) and XID errors (kernel log and NVML
//! events) and writes them into the node's GpuNodeStatus.

pub mod app;
pub mod backend;
pub mod kmsg_source;
pub mod kube_io;
pub mod metrics;
pub mod pod_resources;
pub mod publisher;
pub mod report;
pub mod snapshot;
pub mod spool;
pub mod xid_ledger;
