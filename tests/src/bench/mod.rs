//! Benchmarks against the real control plane: commands that print measured figures (never timed tests).
//! Run them with release binaries: `cargo build --release --workspace --bins && target/release/gpuscope-bench --help`.

pub mod analyze_log;
pub mod facade;
pub mod facade_calls;
pub mod fleet;
pub mod fleet_plan;
pub mod operator;
pub mod probe;
pub mod stats;
