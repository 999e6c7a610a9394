//! The API crate stays the vocabulary: a program that only reads or writes `GpuNodeStatus` must not compile an
//! HTTP server, a CLI parser or an async runtime because of it. Process plumbing belongs in `gpuscope-runtime`,
//! the log analyzer in `gpuscope-log-analysis`.

use std::path::Path;
use std::process::Command;

/// Packages that must never be among the API crate's normal dependencies, and why each is there in the programs.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("hyper", "an HTTP stack"),
    ("hyper-util", "an HTTP stack"),
    ("axum", "an HTTP server"),
    ("tower", "an HTTP middleware stack"),
    ("clap", "a CLI parser"),
    ("tracing-subscriber", "log output setup"),
    ("prometheus-client", "metrics exposition"),
    ("kube-client", "a Kubernetes client"),
    ("kube-runtime", "the controller runtime"),
    ("rustls", "a TLS stack"),
];

/// The names of the packages in `cargo tree -p gpuscope-crds -e normal`.
fn normal_dependencies() -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-p", "gpuscope-crds", "-e", "normal", "--prefix", "none"])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn the_api_crate_pulls_in_no_server_no_cli_parser_and_no_runtime() {
    let deps = normal_dependencies();
    assert!(deps.iter().any(|d| d == "kube-core"), "the tree was read: {deps:?}");
    let found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(name, _)| deps.iter().any(|d| d == name))
        .map(|(name, what)| format!("{name} ({what})"))
        .collect();
    assert!(found.is_empty(), "gpuscope-crds depends on {found:?}: move that code to gpuscope-runtime or a program");
}
