//! The two ways to reach the facade: stdio (a local MCP client starts it with a kubeconfig) and streamable HTTP
//! at `/mcp`, mounted next to `/healthz`, `/readyz` and `/metrics`.
//!
//! HTTP is stateless (no in-memory sessions, so any replica behind a Service can answer any request), validates
//! `Host` against an allow-list and `Origin` against another (DNS-rebinding and cross-site protection; a facade
//! listening on loopback also accepts loopback origins, as the MCP transport spec asks), caps
//! request bodies, optionally requires a bearer token, and answers a body that is no JSON-RPC message with a
//! JSON-RPC error (rmcp alone answers such bodies with a plain-text 415).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::auth::{self, BearerToken};
use crate::server::Facade;

/// Hosts accepted when none are configured: loopback only.
pub const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Origins accepted when the facade listens on loopback: pages served from this machine (MCP Inspector's UI, local
/// web agents), any port. A loopback server refuses every other origin unless `--allowed-origins` names it.
pub const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];
/// Default cap on an HTTP request body. MCP requests are small; this leaves room for large tool arguments.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// How `/mcp` guards itself.
#[derive(Clone, Debug)]
pub struct HttpGuards {
    /// `Host` values (with or without port) accepted; empty means loopback only.
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted (scheme://host[:port], `:*` for any port); requests without `Origin` pass, any
    /// other `Origin` is refused (but see `loopback_origins`).
    pub allowed_origins: Vec<String>,
    /// Also accept [`LOOPBACK_ORIGINS`]: true when the facade listens on a loopback address, where a page on this
    /// machine is as local as the server; false beyond loopback, where only `allowed_origins` pass.
    pub loopback_origins: bool,
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
            loopback_origins: true,
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
    let mut origins = guards.allowed_origins.clone();
    if guards.loopback_origins {
        origins.extend(LOOPBACK_ORIGINS.iter().map(|o| o.to_string()));
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        // With an empty list this refuses every request that carries an Origin (browsers); CLI clients send none.
        .enforce_origin_validation()
        .with_max_request_body_bytes(guards.max_body_bytes);
    let cancel = config.cancellation_token.clone();
    let service =
        StreamableHttpService::new(move || Ok(facade.clone()), Arc::new(NeverSessionManager::default()), config);
    let mut router = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(guards.max_body_bytes, jsonrpc_errors));
    // Added last, so it runs first: an unauthenticated client cannot even make the server buffer its body.
    if let Some(token) = guards.token.clone() {
        router = router.layer(axum::middleware::from_fn_with_state(token, auth::require));
    }
    (router, Box::new(move || cancel.cancel()))
}

/// The start of rmcp's plain-text answer to a JSON body that is no JSON-RPC message.
const RMCP_NOT_JSONRPC: &[u8] = b"fail to deserialize request body";
/// JSON-RPC 2.0: the body is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC 2.0: the JSON is not a valid request object.
const INVALID_REQUEST: i64 = -32600;

/// axum middleware on `/mcp`: a POST whose JSON body does not parse gets HTTP 400 with a JSON-RPC Parse error
/// (-32700), one whose JSON is no JSON-RPC message gets 400 with Invalid Request (-32600), as JSON-RPC 2.0 and the
/// other MCP SDKs answer; everything else reaches rmcp unchanged.
async fn jsonrpc_errors(State(max_body_bytes): State<usize>, request: Request, next: Next) -> Response {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    // Other methods carry no body; another content type is rmcp's to refuse (415).
    if request.method() != Method::POST || !is_json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.to_string() == "length limit exceeded");
            return if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Payload Too Large: request body exceeds {max_body_bytes} bytes"),
                )
                    .into_response()
            } else {
                (StatusCode::BAD_REQUEST, format!("Bad Request: cannot read the request body: {e}")).into_response()
            };
        }
    };
    // rmcp parses the body itself; only its refusal is parsed again here, so a good request is parsed once.
    let response = next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    let (head, body) = response.into_parts();
    // rmcp's refusals are one short line; anything longer is passed on as it was.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    if !text.starts_with(RMCP_NOT_JSONRPC) {
        return Response::from_parts(head, Body::from(text));
    }
    let id = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) => value.get("id").filter(|id| id.is_string() || id.is_number()).cloned(),
        Err(e) => return jsonrpc_error(None, PARSE_ERROR, format!("Parse error: the body is not JSON: {e}")),
    };
    let detail = String::from_utf8_lossy(&text[RMCP_NOT_JSONRPC.len()..]).trim().to_string();
    jsonrpc_error(
        id,
        INVALID_REQUEST,
        format!("Invalid Request: the body is JSON but no JSON-RPC 2.0 request, notification or response ({detail})"),
    )
}

/// HTTP 400 carrying a JSON-RPC error object.
fn jsonrpc_error(id: Option<serde_json::Value>, code: i64, message: String) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": { "code": code, "message": message },
    });
    let mut response = (StatusCode::BAD_REQUEST, Bytes::from(body.to_string())).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::clusters::Clusters;
    use crate::metrics::Metrics;

    async fn serve(guards: HttpGuards) -> SocketAddr {
        let (router, _stop) = mcp_router(Facade::new(Clusters::none(), Metrics::unregistered()), &guards);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// A raw POST /mcp: status, and the body parsed as JSON when it is JSON (else as a string).
    async fn post(addr: SocketAddr, content_type: &str, body: &str) -> (u16, Value) {
        post_with(addr, content_type, "", body).await
    }

    /// [`post`] with extra header lines (each ending in CRLF).
    async fn post_with(addr: SocketAddr, content_type: &str, extra: &str, body: &str) -> (u16, Value) {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nAccept: \
             application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string())))
    }

    #[tokio::test]
    async fn bodies_that_are_no_json_rpc_get_json_rpc_errors_and_the_server_keeps_serving() {
        let addr = serve(HttpGuards::default()).await;
        let (status, body) = post(addr, "application/json", "{not json").await;
        assert_eq!(status, 400);
        assert_eq!((body["jsonrpc"].clone(), body["id"].clone()), (json!("2.0"), Value::Null), "{body}");
        assert_eq!(body["error"]["code"], PARSE_ERROR, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("Parse error: the body is not JSON")));

        let (status, body) = post(addr, "application/json", r#"{"jsonrpc":"2.0","id":7,"method":17}"#).await;
        assert_eq!(status, 400);
        assert_eq!((body["id"].clone(), body["error"]["code"].clone()), (json!(7), json!(INVALID_REQUEST)), "{body}");
        let (status, body) = post(addr, "application/json", "[1, 2]").await;
        assert_eq!((status, body["error"]["code"].clone()), (400, json!(INVALID_REQUEST)), "{body}");

        // Not JSON at all is rmcp's to refuse, as it always did.
        let (status, body) = post(addr, "text/plain", "hello").await;
        assert_eq!(status, 415, "{body}");
        assert_eq!(body, json!("Unsupported Media Type: Content-Type must be application/json"));

        let ping =
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"explain_xid","arguments":{"code":79}}}"#;
        let (status, body) = post(addr, "application/json", ping).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"]["structuredContent"]["explanation"]["catalog"]["code"], 79, "{body}");
    }

    /// The HTTP status of an `initialize` sent with `Origin: origin`.
    async fn initialize_from(addr: SocketAddr, origin: &str) -> u16 {
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"page","version":"1"}}}"#;
        post_with(addr, "application/json", &format!("Origin: {origin}\r\n"), init).await.0
    }

    const PAGES_ON_THIS_MACHINE: [&str; 6] = [
        "http://localhost:6274",
        "http://localhost",
        "http://127.0.0.1:8765",
        "http://[::1]:3000",
        "https://localhost:8443",
        "HTTP://LOCALHOST:1",
    ];
    const PAGES_ELSEWHERE: [&str; 5] = [
        "http://evil.example",
        "http://localhost.evil.example:6274",
        "http://127.0.0.1.nip.io:8765",
        "http://192.168.1.10:6274",
        "null",
    ];

    #[tokio::test]
    async fn on_loopback_pages_from_this_machine_are_accepted_and_others_refused() {
        let addr = serve(HttpGuards::default()).await;
        for origin in PAGES_ON_THIS_MACHINE {
            assert_eq!(initialize_from(addr, origin).await, 200, "{origin}");
        }
        for origin in PAGES_ELSEWHERE {
            assert_eq!(initialize_from(addr, origin).await, 403, "{origin}");
        }
        // A named origin passes too; loopback ones still do.
        let named =
            HttpGuards { allowed_origins: vec!["https://console.example:8443".into()], ..HttpGuards::default() };
        let addr = serve(named).await;
        assert_eq!(initialize_from(addr, "https://console.example:8443").await, 200);
        assert_eq!(initialize_from(addr, "https://console.example:9443").await, 403);
        assert_eq!(initialize_from(addr, "http://localhost:6274").await, 200);
    }

    #[tokio::test]
    async fn beyond_loopback_only_named_origins_are_accepted() {
        let guards = HttpGuards {
            allowed_hosts: vec!["127.0.0.1".into()],
            allowed_origins: vec!["https://console.example:8443".into()],
            loopback_origins: false,
            ..HttpGuards::default()
        };
        let addr = serve(guards).await;
        assert_eq!(initialize_from(addr, "https://console.example:8443").await, 200);
        for origin in PAGES_ON_THIS_MACHINE.iter().chain(&PAGES_ELSEWHERE) {
            assert_eq!(initialize_from(addr, origin).await, 403, "{origin}");
        }
        // No Origin at all (CLI and server-side clients) still passes.
        let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
        assert_eq!(post(addr, "application/json", ping).await.0, 200);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_before_parsing() {
        let addr = serve(HttpGuards { max_body_bytes: 1024, ..HttpGuards::default() }).await;
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(2048));
        let (status, body) = post(addr, "application/json", &big).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body, json!("Payload Too Large: request body exceeds 1024 bytes"));
    }
}
