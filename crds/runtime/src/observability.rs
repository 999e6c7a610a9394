//! The HTTP endpoints every long-running gpuscope program serves: `/healthz` (the process is alive),
//! `/readyz` (it is doing its job: synced, written, leading...) and `/metrics` (Prometheus text format). Stop a
//! server with [`crate::shutdown::Shutdown::wait_owned`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// A readiness flag the program flips when it can do its job; `/readyz` answers 503 until then.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark ready (or not ready again, e.g. after losing the API server).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct Endpoints {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The router with `/healthz`, `/readyz` and `/metrics`; merge more routes into it (the facade adds `/mcp`).
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Endpoints { registry, readiness })
}

async fn readyz(State(e): State<Endpoints>) -> impl IntoResponse {
    if e.readiness.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &e.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response(),
    }
}

/// Why the endpoint server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, or not a local address).
    #[error("cannot listen on {addr} (is another process using the port? choose one with the address flag): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound listener, so callers learn the actual port (e.g. when binding port 0) before serving.
pub struct Listener {
    inner: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Bind `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Listener, ServeError> {
        let inner = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let addr = inner.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Listener { inner, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve `router` until `shutdown` completes, then finish in-flight requests.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let addr = self.addr;
        tracing::info!(%addr, "serving /healthz, /readyz, /metrics");
        axum::serve(self.inner, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ServeError::Serve { addr, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn readyz_follows_the_flag_and_metrics_are_exposed() {
        let mut registry = Registry::default();
        let writes = Counter::<u64>::default();
        registry.register("gpuscope_test_writes", "Writes", writes.clone());
        writes.inc_by(3);
        let readiness = Readiness::default();
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let addr = listener.local_addr();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(listener.serve(router(Arc::new(registry), readiness.clone()), async {
            let _ = stop_rx.await;
        }));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        readiness.set(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("gpuscope_test_writes_total 3"), "{metrics}");

        let _ = stop_tx.send(());
        assert!(server.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn binding_a_used_port_says_which_address() {
        let first = Listener::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let err = Listener::bind(first.local_addr()).await.err().expect("second bind must fail");
        assert!(err.to_string().contains(&first.local_addr().to_string()), "{err}");
    }
}
