//! gpuscope-bench: measures the real programs against a private control plane and prints the figures.

use std::time::Duration;

use clap::{Parser, Subcommand};
use gpuscope_tests::bench;

/// gpuscope benchmarks. Each starts its own control plane (built on first use) and the real binaries found next
/// to this one: build them with `cargo build --release --workspace --bins` first.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// One node probe: writes per minute, bytes per write, RSS, CPU, XID latency, and a flood.
    Probe {
        /// Steady-state phase length.
        #[arg(long, default_value = "2m", value_parser = gpuscope_crds::duration::parse_duration)]
        steady: Duration,
        /// XID lines timed one by one.
        #[arg(long, default_value_t = 100)]
        latency_samples: usize,
        /// Kernel-log lines per second in the flood phase.
        #[arg(long, default_value_t = 10_000)]
        flood_rate: u32,
        /// Flood phase length.
        #[arg(long, default_value = "10s", value_parser = gpuscope_crds::duration::parse_duration)]
        flood_for: Duration,
    },
    /// The operator over N nodes: convergence time, writes, XID-to-condition latency.
    Operator {
        /// Fleet sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000])]
        nodes: Vec<usize>,
        /// XID 79 writes timed per size.
        #[arg(long, default_value_t = 50)]
        flips: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Args::parse().what {
        What::Probe { steady, latency_samples, flood_rate, flood_for } => {
            bench::probe::run(bench::probe::ProbeBench { steady, latency_samples, flood_rate, flood_for }).await
        }
        What::Operator { nodes, flips } => bench::operator::run(&nodes, flips).await,
    }
}
