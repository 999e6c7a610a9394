//! gpuscope-mcp: an MCP server that answers GPU questions about a Kubernetes fleet from a watch cache of
//! GpuNodeStatus objects, Nodes and GPU-requesting Pods. Read-only; never contacts a node.
//!
//! Layers, bottom up: [`cache`] (reflector stores, stripped objects, and the [`index`]es their events keep) →
//! [`snapshot`] (a read view) → [`tools`]
//! (pure functions from a snapshot and arguments to answer structs) → [`server`] (the rmcp handler: tools,
//! prompts, resources, metrics) → [`transport`] (stdio, streamable HTTP) → [`cli`]. [`analyze_log`] is the
//! `analyze-log` command: the kernel-log tool on the command line, no server.

pub mod actions;
pub mod analyze_log;
pub mod answer;
pub mod args;
pub mod auth;
pub mod cache;
pub mod cached;
pub mod cli;
pub mod clusters;
pub mod error;
pub mod freshness;
pub mod gpu_ref;
pub mod gpu_resources;
pub mod index;
pub mod malloc;
pub mod matching;
pub mod metrics;
pub mod offline;
pub mod packed;
pub mod problems;
pub mod prompts;
pub mod resources;
pub mod schema;
pub mod server;
pub mod snapshot;
pub mod status_facts;
pub mod time;
pub mod tools;
pub mod transport;
pub mod xid_view;

#[cfg(test)]
mod status_fixtures;
