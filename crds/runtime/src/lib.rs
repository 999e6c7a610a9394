//! Process plumbing gpuscope's three programs share: logging setup, signal-driven shutdown, retry backoff, and the
//! `/healthz` `/readyz` `/metrics` server.
//!
//! It lives beside the API crate (`gpuscope-crds`) rather than in it, so that a program that only reads or writes
//! `GpuNodeStatus` compiles no HTTP server, no CLI parser and no tokio runtime.

pub mod backoff;
pub mod kube_config;
pub mod logging;
pub mod observability;
pub mod shutdown;
