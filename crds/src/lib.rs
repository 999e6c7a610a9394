//! gpuscope's shared API: the `GpuNodeStatus` custom resource, the NVIDIA XID catalog and kernel-line parser, and
//! the health vocabulary and policy.
//!
//! Everything in gpuscope depends on this crate; it depends on nothing of ours. It is the vocabulary only: process
//! plumbing lives in `gpuscope-runtime` and the kernel-log analyzer in `gpuscope-log-analysis`, so a program that
//! only reads `GpuNodeStatus` compiles no HTTP server, CLI parser or async runtime.

pub mod crd_yaml;
pub mod duration;
pub mod gpu_node_status;
pub mod health;
pub mod kmsg;
pub mod pci;
pub mod policy;
pub mod xid;

pub use gpu_node_status::{GpuNodeStatus, GpuNodeStatusSpec, GpuNodeStatusStatus};
pub use health::Health;
