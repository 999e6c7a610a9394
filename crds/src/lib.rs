//! gpuscope's shared API: the `GpuNodeStatus` custom resource, the NVIDIA XID catalog, the health
//! vocabulary, and the few pieces of plumbing all three programs share.
//!
//! Everything in gpuscope depends on this crate; it depends on nothing of ours.

pub mod crd_yaml;
pub mod duration;
pub mod gpu_node_status;
pub mod health;
pub mod kmsg;
pub mod log_analysis;
pub mod logging;
pub mod observability;
pub mod pci;
pub mod policy;
pub mod shutdown;
pub mod xid;

pub use gpu_node_status::{GpuNodeStatus, GpuNodeStatusSpec, GpuNodeStatusStatus};
pub use health::Health;
