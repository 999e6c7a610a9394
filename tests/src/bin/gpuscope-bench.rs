//! gpuscope-bench: measures the real programs against a private control plane and prints the figures.

use std::time::Duration;

use clap::{Parser, Subcommand};
use gpuscope_tests::bench;

/// gpuscope benchmarks. Each starts its own control plane (built on first use) and the real binaries found next
/// to this one: build them with `cargo build --release --workspace --bins` first.
#[derive(Debug, Parser)]
#[command(version)]
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
        /// Pod-churn phase length (one pod start or stop per second on the kubelet's pod-resources API).
        #[arg(long, default_value = "2m", value_parser = gpuscope_crds::duration::parse_duration)]
        churn_for: Duration,
    },
    /// The scale run: N simulated nodes (the probe's write path in-process), the real operator and facade: request
    /// rates by component, RSS, convergence time, and the facade's latency and answer size per tool.
    Fleet {
        /// Fleet sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000, 5000])]
        nodes: Vec<usize>,
        /// Steady-state window for request rates.
        #[arg(long, default_value = "60s", value_parser = gpuscope_crds::duration::parse_duration)]
        steady: Duration,
        /// Calls per facade tool.
        #[arg(long, default_value_t = 200)]
        calls: usize,
    },
    /// The kernel-log CLI (`gpuscope-mcp analyze-log`) on generated logs of each size: MB/s and peak RSS. No
    /// control plane.
    AnalyzeLog {
        /// Log sizes, comma-separated (KB, MB, GB: powers of 1000; KiB, MiB, GiB: powers of 1024).
        #[arg(long, value_delimiter = ',', default_value = "100MB,1GB", value_parser = bench::analyze_log::parse_size)]
        size: Vec<u64>,
        /// One XID line in this many lines.
        #[arg(long, default_value_t = 1000)]
        xid_every: u64,
        /// Directory for the generated logs (default: the system temp dir); each is deleted after its run.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// What the CLI prints: text or json (json is checked against the generated counts).
        #[arg(long, default_value = "json", value_parser = ["text", "json"])]
        output: String,
    },
    /// The facade over N simulated nodes x 8 GPUs (written with the probe's API calls, judged by the real
    /// operator): time to sync, per tool p50/p99 and response bytes over HTTP, and RSS, against the targets.
    Facade {
        /// Fleet sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000, 5000])]
        nodes: Vec<usize>,
        /// Calls per tool.
        #[arg(long, default_value_t = 500)]
        calls: usize,
        /// Keep the last size's control plane and facade up until Ctrl-C (for profiling by hand).
        #[arg(long)]
        hold: bool,
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
        What::Probe { steady, latency_samples, flood_rate, flood_for, churn_for } => {
            let cfg = bench::probe::ProbeBench { steady, latency_samples, flood_rate, flood_for, churn_for };
            bench::probe::run(cfg).await
        }
        What::Operator { nodes, flips } => bench::operator::run(&nodes, flips).await,
        What::AnalyzeLog { size, xid_every, dir, output } => {
            bench::analyze_log::run(&bench::analyze_log::AnalyzeLogBench { sizes: size, xid_every, dir, output })
        }
        What::Facade { nodes, calls, hold } => {
            bench::facade::run(bench::facade::FacadeBench { sizes: nodes, calls, hold }).await.map(|_| ())
        }
        What::Fleet { nodes, steady, calls } => {
            bench::fleet::run(bench::fleet::FleetBench { sizes: nodes, steady, calls }).await.map(|_| ())
        }
    }
}
