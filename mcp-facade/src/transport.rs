//! The two ways to reach the facade: stdio (a local MCP client starts it with a kubeconfig) and streamable HTTP
//! at `/mcp`, mounted next to `/healthz`, `/readyz` and `/metrics`.
//!
//! HTTP is stateless (no in-memory sessions, so any replica behind a Service can answer any request), validates
//! `Host` against an allow-list and `Origin` against another (DNS-rebinding and cross-site protection), caps
//! request bodies, and optionally requires a bearer token.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::auth::{self, BearerToken};
use crate::server::Facade;

/// Hosts accepted when none are configured: loopback only.
pub const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Default cap on an HTTP request body. MCP requests are small; this leaves room for large tool arguments.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// How `/mcp` guards itself.
#[derive(Clone, Debug)]
pub struct HttpGuards {
    /// `Host` values (with or without port) accepted; empty means loopback only.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted (scheme://host[:port], `:*` for any port); requests without `Origin` pass, any
    /// other `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Required bearer token, if any.
    pub token: Option<BearerToken>,
}

impl Default for HttpGuards {
    fn default() -> Self {
        HttpGuards {
            allowed_hosts: DEFAULT_ALLOWED_HOSTS.iter().map(|h| h.to_string()).collect(),
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            token: None,
        }
    }
}

/// A function that stops the MCP service's open streams (call it when shutting down).
pub type Stop = Box<dyn FnOnce() + Send>;

/// The `/mcp` router: stateless streamable HTTP with the guards applied.
pub fn mcp_router(facade: Facade, guards: &HttpGuards) -> (Router, Stop) {
    let hosts = if guards.allowed_hosts.is_empty() {
        DEFAULT_ALLOWED_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        guards.allowed_hosts.clone()
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(guards.allowed_origins.clone())
        // With an empty list this refuses every request that carries an Origin (browsers), as the MCP transport
        // spec asks; CLI clients send none.
        .enforce_origin_validation()
        .with_max_request_body_bytes(guards.max_body_bytes);
    let cancel = config.cancellation_token.clone();
    let service =
        StreamableHttpService::new(move || Ok(facade.clone()), Arc::new(NeverSessionManager::default()), config);
    let mut router = Router::new().nest_service("/mcp", service);
    if let Some(token) = guards.token.clone() {
        router = router.layer(axum::middleware::from_fn_with_state(token, auth::require));
    }
    (router, Box::new(move || cancel.cancel()))
}

/// Serve MCP over stdin/stdout until the client closes stdin or `shutdown` resolves. Logs must go to stderr.
pub async fn serve_stdio(facade: Facade, shutdown: impl Future<Output = ()>) -> Result<(), std::io::Error> {
    let (read, write) = rmcp::transport::io::stdio_pipes();
    let running = facade
        .serve(AsyncRwTransport::new_server(read, write))
        .await
        .map_err(|e| std::io::Error::other(format!("MCP initialization over stdio failed: {e}")))?;
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            quit.map_err(|e| std::io::Error::other(format!("MCP stdio service failed: {e}")))?;
            tracing::info!("stdin closed, exiting");
        }
        () = shutdown => cancel.cancel(),
    }
    Ok(())
}
