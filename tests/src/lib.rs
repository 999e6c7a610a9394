//! gpuscope's end-to-end harness: a real control plane on loopback and small helpers that keep each test short.

pub mod control_plane;

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use control_plane::{ControlPlane, HarnessError, Identity};

/// A name no other test in this run uses: `<prefix>-<pid>-<n>` (lower case, DNS-safe).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The output of a command that must succeed; the error names the command and carries its stderr.
pub fn run_ok(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The stderr of a command that must fail.
pub fn run_err(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Err(format!("{cmd:?} succeeded but should have failed:\n{}", String::from_utf8_lossy(&out.stdout)))
    } else {
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Poll `check` every 100 ms until it yields `Some`, or fail after `limit` with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if started.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Create a namespace no other test uses (`<prefix>-<pid>-<n>`) and return its name.
pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> Result<String, kube::Error> {
    use k8s_openapi::api::core::v1::Namespace;
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        ..Default::default()
    };
    kube::Api::<Namespace>::all(client.clone()).create(&Default::default(), &ns).await?;
    Ok(name)
}
