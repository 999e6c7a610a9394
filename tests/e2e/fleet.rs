//! The scale-run command at a tiny size: it must work end to end (a private control plane with its audit log,
//! the probe's write path, the real operator and facade) and measure what it claims, so the figures in the
//! README come from a command that is itself tested.

use std::time::Duration;

use gpuscope_tests::bench::fleet::{FleetBench, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_scale_run_converges_and_measures_every_component_and_tool() -> Result<(), Box<dyn std::error::Error>> {
    // Eight nodes: node 3 logs application XIDs, node 7 an XID 79 (the plan in the bench).
    let reports = run(FleetBench { sizes: vec![8], steady: Duration::from_secs(3), calls: 10 }).await?;
    let [r] = reports.as_slice() else { return Err(format!("one report expected, got {}", reports.len()).into()) };
    assert_eq!(r.nodes, 8);
    assert_eq!((r.planned_unhealthy, r.unhealthy), (1, 1), "exactly the XID 79 node is Unhealthy");
    for component in ["probes", "operator", "facade", "bench harness"] {
        assert!(
            r.converge_requests.get(component).is_some_and(|&k| k > 0),
            "{component} made requests while converging: {:?}",
            r.converge_requests
        );
    }
    // Eight nodes write a status each, and renew a Lease each (at least once while converging).
    assert!(r.converge_requests["probes"] >= 16, "{:?}", r.converge_requests);
    for process in ["kube-apiserver", "etcd", "operator", "facade", "facade peak"] {
        assert!(r.rss_mib.get(process).is_some_and(|&m| m > 1.0), "RSS of {process}: {:?}", r.rss_mib);
    }
    assert_eq!(r.tools.len(), 11, "five fleet-wide, five single-node and one single-pod call");
    for t in &r.tools {
        assert!(t.wire_bytes > 100 && t.p50 > Duration::ZERO && t.p99 >= t.p50, "{t:?}");
    }
    let describe = r.tools.iter().find(|t| t.call == "describe_gpu_node (one node)").ok_or("describe timed")?;
    assert!(describe.single_node);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_benchmark_loads_the_fleet_and_measures_every_tool_and_the_facades_memory()
-> Result<(), Box<dyn std::error::Error>> {
    use gpuscope_tests::bench::facade::{FacadeBench, run};
    let reports = run(FacadeBench { sizes: vec![8], calls: 10, hold: false }).await?;
    let [r] = reports.as_slice() else { return Err(format!("one report expected, got {}", reports.len()).into()) };
    assert_eq!(r.nodes, 8);
    assert!(r.ready_after > Duration::ZERO);
    for what in ["synced", "after the calls", "peak"] {
        assert!(r.rss_mib.get(what).is_some_and(|&m| m > 1.0), "facade RSS {what}: {:?}", r.rss_mib);
    }
    assert!(r.rss_mib["peak"] >= r.rss_mib["synced"], "{:?}", r.rss_mib);
    assert_eq!(r.tools.len(), 11, "five fleet-wide, five single-node and one single-pod call");
    for t in &r.tools {
        assert!(t.wire_bytes > 100 && t.p50 > Duration::ZERO && t.p99 >= t.p50, "{t:?}");
    }
    Ok(())
}
