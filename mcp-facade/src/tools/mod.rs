//! The tools, one module each: argument struct, answer struct, and a pure function from a [`Snapshot`] and the
//! arguments to the answer (`kernel_log` and `explain` take an optional snapshot: they work without a cluster).
//!
//! [`Snapshot`]: crate::snapshot::Snapshot

pub mod allocation;
pub mod common;
pub mod describe;
pub mod explain;
pub mod fleet;
pub mod health;
pub mod inventory;
pub mod kernel_log;
pub mod pod_failure;
pub mod xids;

#[cfg(test)]
mod scale;
