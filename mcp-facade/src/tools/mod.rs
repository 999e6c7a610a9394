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
pub mod xids;

#[cfg(test)]
mod scale {
    //! Answer sizes and latencies on large simulated fleets: fleet answers must stay small whatever the fleet.

    use std::time::Instant;

    use gpuscope_crds::Health;
    use gpuscope_crds::health::reason;

    use super::*;
    use crate::gpu_resources::fixtures::{node, pod};
    use crate::snapshot::Snapshot;
    use crate::snapshot::fixtures::snapshot;
    use crate::status_fixtures::{healthy, stale, with_verdict, with_xid};

    /// `n` nodes x 8 GPUs; every 50th unhealthy after an XID 79, every 70th with a stale probe, every 10th with
    /// application XIDs, one 4-GPU pod per node.
    fn fleet(n: usize) -> Snapshot {
        let mut statuses = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("gpu-node-{i:05}");
            let mut o = healthy(&name, 8);
            if i % 10 == 0 {
                o = with_xid(o, 2, 13, 4, "2026-11-25T08:00:00Z", "2026-11-25T11:30:00Z");
            }
            if i % 50 == 0 {
                o = with_verdict(o, 5, Health::Unhealthy, &[reason::XID_FALLEN_OFF_BUS], "");
                o = with_xid(o, 5, 79, 1, "2026-11-25T11:00:00Z", "2026-11-25T11:00:00Z");
            }
            if i % 70 == 1 {
                o = stale(o, "2026-11-25T10:00:00Z");
            }
            statuses.push(o);
        }
        let nodes = (0..n).map(|i| node(&format!("gpu-node-{i:05}"), 8)).collect();
        let pods = (0..n)
            .map(|i| {
                pod(
                    &format!("team-{}", i % 25),
                    &format!("job-{i}"),
                    Some(&format!("gpu-node-{i:05}")),
                    "nvidia.com/gpu",
                    4,
                    "Running",
                )
            })
            .collect();
        snapshot(statuses, nodes, pods)
    }

    /// (tool, JSON bytes, microseconds) for every tool with default (fleet-wide) arguments and one single-node call.
    fn measure(snap: &Snapshot) -> Vec<(&'static str, usize, u128)> {
        let mut out = Vec::new();
        let mut run = |name: &'static str, f: &dyn Fn() -> serde_json::Value| {
            let started = Instant::now();
            let v = f();
            out.push((name, serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0), started.elapsed().as_micros()));
        };
        let json = |r: Result<serde_json::Value, crate::error::ToolError>| r.unwrap_or_else(|e| panic!("{e}"));
        run("get_fleet_summary", &|| {
            json(fleet::answer(snap, &Default::default()).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        run("get_gpu_health", &|| {
            json(health::answer(snap, &Default::default()).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        run("get_gpu_inventory", &|| {
            json(inventory::answer(snap, &Default::default()).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        run("analyze_xid_errors", &|| {
            json(xids::answer(snap, &Default::default()).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        run("get_pod_gpu_allocation", &|| {
            json(allocation::answer(snap, &Default::default()).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        let one = describe::DescribeArgs { node_name: "gpu-node-00050".into(), ..Default::default() };
        run("describe_gpu_node", &|| {
            json(describe::answer(snap, &one).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        let one = health::HealthArgs { node_name: Some("gpu-node-00050".into()), ..Default::default() };
        run("get_gpu_health(node)", &|| {
            json(health::answer(snap, &one).map(|a| serde_json::to_value(a).unwrap_or_default()))
        });
        out
    }

    #[test]
    fn fleet_wide_answers_stay_under_16_kib_at_1000_nodes() {
        for (tool, bytes, _) in measure(&fleet(1_000)) {
            assert!(bytes < 16 * 1024, "{tool}: {bytes} bytes");
        }
    }

    /// `cargo test -p gpuscope-mcp --release -- --ignored --nocapture answer_sizes` prints the table.
    #[test]
    #[ignore = "measurement, not a check: run by hand"]
    fn answer_sizes_and_latencies_at_scale() {
        for n in [100, 1_000, 5_000] {
            let snap = fleet(n);
            for (tool, bytes, micros) in measure(&snap) {
                println!("{n:>5} nodes  {tool:<24} {bytes:>6} bytes  {micros:>6} us");
            }
        }
    }
}
