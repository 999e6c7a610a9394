//! gpuscope-operator: the pure health evaluation ([`evaluate`]) and the reconciler that gathers its inputs and
//! applies its result to GpuNodeStatus objects, Nodes and Events.

pub mod app;
pub mod evaluate;
pub mod events;
pub mod metrics;
pub mod node_sync;
pub mod policy_watch;
pub mod reconciler;
pub mod remediation;
