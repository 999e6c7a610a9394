//! gpuscope's end-to-end suite: one test binary (link time on 2 cores adds up), one module per behaviour, all
//! against the real control plane in `gpuscope_tests::ControlPlane`.

mod api;
mod blind;
mod conformance;
mod demo;
mod fleet;
mod help;
mod install;
mod kubeconfig;
mod log_analysis;
mod mcp;
mod nvml_backend;
mod operator;
mod probe;
mod probe_snapshot;
mod system;
mod workloads;
