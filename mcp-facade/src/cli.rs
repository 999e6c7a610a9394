//! The command line: flags, their checks, and wiring the cache, server and transport together; and the
//! `analyze-log` subcommand's flags (its work is in [`crate::analyze_log`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use gpuscope_runtime::kube_config::client_config;
use gpuscope_runtime::logging::LogArgs;
use gpuscope_runtime::observability::{self, Listener, Readiness};
use gpuscope_runtime::shutdown::Shutdown;
use prometheus_client::registry::Registry;

use crate::auth::{BearerToken, TOKEN_ENV, TokenError};
use crate::cache::ClusterCache;
use crate::clusters::Clusters;
use crate::metrics::Metrics;
use crate::offline::Export;
use crate::server::Facade;
use crate::transport::{self, DEFAULT_MAX_BODY_BYTES, HttpGuards};

/// Where `--transport http` listens when `--listen` is not given.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

/// How MCP clients reach the facade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout: a local MCP client starts this program (logs go to stderr).
    Stdio,
    /// Streamable HTTP at /mcp (stateless), next to /healthz, /readyz and /metrics.
    Http,
}

/// gpuscope MCP facade: answers AI assistants' questions about GPU nodes (inventory, health, XID errors, pod
/// allocation) from a watch cache of the cluster's GpuNodeStatus objects, Nodes and GPU pods. Read-only.
#[derive(Debug, Parser)]
#[command(
    version,
    // Server flags before `analyze-log` would be silently ignored: refuse them instead.
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  gpuscope-mcp                                   # stdio, current kubeconfig context\n  \
                  gpuscope-mcp --kubeconfig ~/.kube/lab.yaml     # that file, as kubectl --kubeconfig\n  \
                  gpuscope-mcp --context prod --context lab      # two clusters; tools take `cluster`\n  \
                  gpuscope-mcp --from-file fleet.yaml            # offline, from `kubectl get gns -o yaml`\n  \
                  gpuscope-mcp --no-cluster                      # no cluster: only the kernel-log and XID tools\n  \
                  gpuscope-mcp --transport http --listen 0.0.0.0:8080 --allowed-hosts gpuscope-mcp.gpuscope-system.svc \\\n      \
                  --bearer-token-file /var/run/secrets/gpuscope/token\n  \
                  gpuscope-mcp analyze-log dmesg.txt             # explain a kernel log on the command line"
)]
pub struct Args {
    /// Run a command instead of serving MCP.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How MCP clients reach the facade.
    #[arg(long, value_enum, default_value_t = Transport::Stdio, env = "GPUSCOPE_MCP_TRANSPORT")]
    pub transport: Transport,
    /// Address to serve HTTP on: /mcp (with --transport http) and /healthz, /readyz, /metrics. Defaults to
    /// 127.0.0.1:8080 with --transport http; with stdio the endpoints are served only when this is given.
    #[arg(long, value_name = "ADDR", env = "GPUSCOPE_MCP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host header values /mcp accepts, comma-separated or repeated (e.g. gpuscope-mcp.gpuscope-system.svc,
    /// with or without a port). Default: loopback only (localhost, 127.0.0.1, ::1), which refuses in-cluster
    /// clients that use a Service name.
    #[arg(long, value_name = "HOST", value_delimiter = ',', env = "GPUSCOPE_MCP_ALLOWED_HOSTS")]
    pub allowed_hosts: Vec<String>,
    /// Origin values /mcp accepts (scheme://host:port, ":*" for any port), comma-separated or repeated. Requests
    /// without an Origin header (CLI and server-side clients) always pass. Listening on loopback, pages from this
    /// machine (http(s)://localhost, 127.0.0.1 or [::1], any port) also pass; any other Origin (a browser page
    /// elsewhere) is refused unless named here.
    #[arg(long, value_name = "ORIGIN", value_delimiter = ',', env = "GPUSCOPE_MCP_ALLOWED_ORIGINS")]
    pub allowed_origins: Vec<String>,
    /// Largest HTTP request body in bytes (1 KiB to 64 MiB); larger requests get 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, value_parser = parse_body_limit, env = "GPUSCOPE_MCP_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// File holding the token HTTP clients must send as `Authorization: Bearer <token>` (at least 16 characters).
    /// Without this flag the token is read from $GPUSCOPE_MCP_BEARER_TOKEN if set. A token is required when
    /// --transport http listens on a non-loopback address.
    #[arg(long, value_name = "FILE", env = "GPUSCOPE_MCP_BEARER_TOKEN_FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// Path of the kubeconfig file, as kubectl's --kubeconfig (default: $KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["from_files", "no_cluster"])]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to serve; repeat for several clusters, each with its own cache (tools take `cluster`,
    /// default the first). Default: the current context, or the in-cluster service account.
    #[arg(long = "context", value_name = "CONTEXT")]
    pub contexts: Vec<String>,
    /// Serve exported objects instead of a live cluster (post-mortems, air-gapped support): YAML or JSON as
    /// `kubectl get gns -o yaml` writes it, plus optional exports of nodes and pods. Repeatable.
    #[arg(long = "from-file", value_name = "FILE", conflicts_with = "contexts")]
    pub from_files: Vec<PathBuf>,
    /// Name of the single cluster (default: the kubeconfig's current context, "in-cluster", or "offline" with
    /// --from-file). With --context the names are the contexts.
    #[arg(long, value_name = "NAME", conflicts_with = "contexts")]
    pub cluster_name: Option<String>,
    /// Serve with no cluster at all (no kubeconfig needed): analyze_kernel_log and explain_xid answer, the cluster
    /// tools answer that no cluster is connected. For explaining pasted kernel logs on a laptop.
    #[arg(long, conflicts_with_all = ["contexts", "from_files", "cluster_name"])]
    pub no_cluster: bool,
    /// Logging flags.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Commands other than serving MCP.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Explain a kernel log: which GPU, which XID, what NVIDIA says it means, what to do first.
    ///
    /// Reads dmesg (any time format), journalctl -k, syslog, /dev/kmsg records or a support bundle's file and prints
    /// per GPU each NVIDIA XID with NVIDIA's meaning and the verdict the operator's default rules give, the worst
    /// verdict and the first action on top. Any size: the input is streamed. Exit status 0 when the analysis ran,
    /// whatever it found (see --fail-on), 1 when the input cannot be read.
    #[command(after_help = "Examples:\n  \
                  gpuscope-mcp analyze-log /var/log/kern.log\n  \
                  journalctl -k -b -1 | gpuscope-mcp analyze-log -\n  \
                  gpuscope-mcp analyze-log bundle/dmesg.txt --output json | jq .report.summary\n  \
                  gpuscope-mcp analyze-log bundle/dmesg.txt --limit 16     # the MCP tool's bounded answer\n  \
                  gpuscope-mcp analyze-log dmesg.txt --fail-on unhealthy   # exit status 3 when a GPU needs a reset or reboot")]
    AnalyzeLog(AnalyzeLogArgs),
}

/// Flags of `gpuscope-mcp analyze-log`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeLogArgs {
    /// The log file, or `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// `text`: a readable table. `json`: the answer the analyze_kernel_log MCP tool gives for the same log.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Exit with status 3 when the log's worst verdict is this bad or worse (for scripts and CI).
    #[arg(long, value_enum, value_name = "VERDICT")]
    pub fail_on: Option<FailOn>,
    /// Show at most N GPUs, and the other lists within the analyze_kernel_log tool's bounds (`--limit 16` gives
    /// the tool's answer); what is left out is counted. Default: every GPU, code and line kind the log holds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// How `analyze-log` prints its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The verdict and first action, then per-GPU tables.
    Text,
    /// The analyze_kernel_log tool's structured answer, pretty-printed.
    Json,
}

/// The least bad verdict that makes `analyze-log --fail-on` exit with status 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Degraded or Unhealthy.
    Degraded,
    /// Unhealthy only.
    Unhealthy,
}

fn parse_body_limit(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("not a byte count: {e}"))?;
    if (1024..=64 * 1024 * 1024).contains(&n) { Ok(n) } else { Err("must be between 1024 and 67108864".to_string()) }
}

/// A flag combination that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Serving /mcp beyond loopback without authentication.
    #[error(
        "--listen {0} is reachable from other hosts, so /mcp needs a bearer token: give --bearer-token-file or set \
         {TOKEN_ENV} (or listen on 127.0.0.1)"
    )]
    NeedsToken(SocketAddr),
    /// The token could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What to serve and how, after checking the flags.
#[derive(Debug)]
pub struct Settings {
    /// stdio or http.
    pub transport: Transport,
    /// HTTP address, if any.
    pub listen: Option<SocketAddr>,
    /// /mcp guards.
    pub guards: HttpGuards,
}

/// Check the flags (`token_env`: the value of $GPUSCOPE_MCP_BEARER_TOKEN).
pub fn settings(args: &Args, token_env: Option<String>) -> Result<Settings, ConfigError> {
    let listen = match (args.transport, args.listen) {
        (_, Some(addr)) => Some(addr),
        (Transport::Http, None) => DEFAULT_HTTP_LISTEN.parse().ok(),
        (Transport::Stdio, None) => None,
    };
    let token = BearerToken::load(args.bearer_token_file.as_deref(), token_env)?;
    if let (Transport::Http, Some(addr), None) = (args.transport, listen, &token)
        && !addr.ip().is_loopback()
    {
        return Err(ConfigError::NeedsToken(addr));
    }
    Ok(Settings {
        transport: args.transport,
        listen,
        guards: HttpGuards {
            allowed_hosts: args.allowed_hosts.iter().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect(),
            allowed_origins: args
                .allowed_origins
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            loopback_origins: listen.is_some_and(|addr| addr.ip().is_loopback()),
            max_body_bytes: args.max_body_bytes,
            token,
        },
    })
}

async fn live_clusters(args: &Args, metrics: &Metrics) -> anyhow::Result<Vec<ClusterCache>> {
    let kubeconfig = args.kubeconfig.as_deref();
    if args.contexts.is_empty() {
        let (config, context) = client_config(kubeconfig, None).await.context(
            "pass --kubeconfig PATH, --from-file for exported objects, or --no-cluster to serve only \
             analyze_kernel_log and explain_xid",
        )?;
        let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
        let name = args.cluster_name.clone().or(context).unwrap_or_else(|| "in-cluster".to_string());
        return Ok(vec![ClusterCache::watch(&name, &client, metrics)]);
    }
    let mut caches = Vec::new();
    for context in &args.contexts {
        let (config, _) = client_config(kubeconfig, Some(context)).await?;
        let client = kube::Client::try_from(config).with_context(|| format!("client for context {context}"))?;
        caches.push(ClusterCache::watch(context, &client, metrics));
    }
    Ok(caches)
}

/// Run the facade until the client goes away (stdio: stdin closed) or `shutdown` (SIGTERM/SIGINT) is requested; a
/// request at any phase, startup included (cluster configuration, loading exports, waiting for an MCP client to
/// initialize over stdio), ends in a clean return (exit 0).
pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    let settings = settings(&args, std::env::var(TOKEN_ENV).ok())?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let caches = if args.no_cluster {
        tracing::info!("no cluster: only analyze_kernel_log and explain_xid answer");
        Vec::new()
    } else if args.from_files.is_empty() {
        let Some(caches) = shutdown.unless(live_clusters(&args, &metrics)).await else { return stopped_early() };
        caches?
    } else {
        let files = args.from_files.clone();
        let Some(export) = shutdown.unless_blocking("load-exports", move || Export::load(&files)).await? else {
            return stopped_early();
        };
        let export = export?;
        let name = args.cluster_name.clone().unwrap_or_else(|| "offline".to_string());
        tracing::info!(
            cluster = %name,
            gpu_node_statuses = export.statuses.len(),
            nodes = export.nodes.len(),
            pods = export.pods.len(),
            "serving exported objects"
        );
        vec![export.into_cache(&name)]
    };
    for c in &caches {
        let (s, n, p) = c.sizes();
        metrics.cache_size(c.name(), "GpuNodeStatus", s);
        metrics.cache_size(c.name(), "Node", n);
        metrics.cache_size(c.name(), "Pod", p);
    }
    let clusters = if args.no_cluster { Clusters::none() } else { Clusters::new(caches)? };
    let names: Vec<&str> = clusters.all().iter().map(ClusterCache::name).collect();
    tracing::info!(clusters = ?names, transport = ?settings.transport, "gpuscope-mcp starting");

    let readiness = Readiness::default();
    let facade = Facade::new(clusters, metrics);
    spawn_readiness(facade.clone(), readiness.clone());
    let endpoints = observability::router(Arc::new(registry), readiness);

    match settings.transport {
        Transport::Http => {
            let addr = settings.listen.context("no HTTP address")?;
            let listener = Listener::bind(addr).await?;
            let (mcp, stop) = transport::mcp_router(facade, &settings.guards);
            tracing::info!(addr = %listener.local_addr(), allowed_hosts = ?settings.guards.allowed_hosts,
                auth = settings.guards.token.is_some(), "serving MCP at /mcp");
            let stopping = shutdown.wait_owned();
            listener
                .serve(mcp.merge(endpoints), async move {
                    stopping.await;
                    stop();
                })
                .await?;
        }
        Transport::Stdio => {
            if let Some(addr) = settings.listen {
                let listener = Listener::bind(addr).await?;
                tokio::spawn(listener.serve(endpoints, shutdown.wait_owned()));
            }
            // Once a client has initialized, `serve_stdio` stops at the request itself (or when stdin closes);
            // before that it waits for the client's `initialize`, and only `unless` can cut that wait short.
            let stdio = transport::serve_stdio(facade, shutdown.wait_owned());
            match shutdown.unless(stdio).await {
                Some(served) => served?,
                None => tracing::info!("shutdown requested, exiting"),
            }
        }
    }
    Ok(())
}

fn stopped_early() -> anyhow::Result<()> {
    tracing::info!("gpuscope-mcp stopped before it had started");
    Ok(())
}

/// Flip `/readyz` once every cache has synced; it stays ready through later watch failures, because the cache
/// keeps answering from what it has.
fn spawn_readiness(facade: Facade, readiness: Readiness) {
    tokio::spawn(async move {
        while !facade.clusters().all_ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        readiness.set(true);
    });
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("gpuscope-mcp").chain(argv.iter().copied())).expect("parse")
    }

    /// `run` spawned with a shutdown nobody has requested yet: it must still be running after a while, and return
    /// `Ok` soon after the request.
    async fn stops_cleanly_on_request(argv: &[&str]) {
        let (tx, shutdown) = Shutdown::manual();
        let facade = tokio::spawn(run(args(argv), shutdown));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!facade.is_finished(), "{argv:?} should still be running: {:?}", facade.await);
        let _ = tx.send(true);
        let out = tokio::time::timeout(Duration::from_secs(5), facade).await;
        assert!(matches!(out, Ok(Ok(Ok(())))), "{argv:?}: a requested shutdown must return Ok: {out:?}");
    }

    #[tokio::test]
    async fn a_shutdown_while_serving_http_is_a_clean_return() {
        stops_cleanly_on_request(&["--no-cluster", "--transport", "http", "--listen", "127.0.0.1:0"]).await;
    }

    #[tokio::test]
    async fn a_shutdown_while_loading_an_export_that_never_arrives_is_a_clean_return() {
        let dir = std::env::temp_dir().join(format!("gpuscope-mcp-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Reading a FIFO nobody writes to blocks in open(2): an export that never finishes loading.
        let fifo = dir.join("fleet.yaml");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        let path = fifo.to_str().expect("utf-8 temp path");
        stops_cleanly_on_request(&["--from-file", path, "--transport", "http", "--listen", "127.0.0.1:0"]).await;
        // The abandoned loader thread stays blocked in open(2) until the test process exits.
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn http_defaults_to_loopback_without_a_token() {
        let s = settings(&args(&["--transport", "http"]), None).expect("settings");
        assert_eq!(s.listen, DEFAULT_HTTP_LISTEN.parse().ok());
        assert!(s.guards.token.is_none());
        assert_eq!(s.guards.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn loopback_origins_are_accepted_only_when_listening_on_loopback() {
        for listen in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:9000"] {
            let s = settings(&args(&["--transport", "http", "--listen", listen]), None).expect("settings");
            assert!(s.guards.loopback_origins, "{listen}");
        }
        assert!(settings(&args(&["--transport", "http"]), None).expect("settings").guards.loopback_origins);
        let public =
            args(&["--transport", "http", "--listen", "0.0.0.0:8080", "--allowed-origins", "https://c.example"]);
        let s = settings(&public, Some("0123456789abcdef-token".into())).expect("settings");
        assert!(!s.guards.loopback_origins);
        assert_eq!(s.guards.allowed_origins, ["https://c.example"]);
    }

    #[test]
    fn non_loopback_http_requires_a_token() {
        let a = args(&["--transport", "http", "--listen", "0.0.0.0:8080"]);
        let e = settings(&a, None).expect_err("no token").to_string();
        assert!(e.contains("--bearer-token-file") && e.contains(TOKEN_ENV), "{e}");
        assert!(settings(&a, Some("0123456789abcdef-token".into())).expect("env token").guards.token.is_some());
        // stdio with metrics on all interfaces serves no /mcp, so no token is needed.
        assert!(settings(&args(&["--listen", "0.0.0.0:9090"]), None).is_ok());
    }

    #[test]
    fn lists_split_on_commas_and_bad_flags_are_refused() {
        let s = settings(&args(&["--allowed-hosts", "a.svc,b.svc", "--allowed-hosts", "c"]), None).expect("settings");
        assert_eq!(s.guards.allowed_hosts, ["a.svc", "b.svc", "c"]);
        assert!(Args::try_parse_from(["gpuscope-mcp", "--max-body-bytes", "10"]).is_err());
        assert!(Args::try_parse_from(["gpuscope-mcp", "--context", "a", "--from-file", "x.yaml"]).is_err());
        let a = args(&["--context", "a", "--context", "b"]);
        assert_eq!(a.contexts, ["a", "b"]);
    }

    #[test]
    fn no_cluster_excludes_every_cluster_source() {
        assert!(args(&["--no-cluster", "--transport", "http"]).no_cluster);
        for clash in [&["--context", "a"][..], &["--from-file", "x.yaml"], &["--cluster-name", "c"]] {
            let argv = ["gpuscope-mcp", "--no-cluster"].into_iter().chain(clash.iter().copied());
            assert!(Args::try_parse_from(argv).is_err(), "--no-cluster with {clash:?}");
        }
    }

    #[test]
    fn analyze_log_is_a_subcommand_and_serving_stays_the_default() {
        let a = args(&["analyze-log", "-", "--output", "json", "--fail-on", "unhealthy"]);
        let Some(Command::AnalyzeLog(log)) = &a.command else { panic!("expected analyze-log: {a:?}") };
        assert_eq!(log.file, PathBuf::from("-"));
        assert_eq!((log.output, log.fail_on), (OutputFormat::Json, Some(FailOn::Unhealthy)));
        assert_eq!(args(&["analyze-log", "kern.log"]).command.as_ref().map(|_| ()), Some(()));
        let served = args(&["--transport", "http", "--listen", "127.0.0.1:9000"]);
        assert!(served.command.is_none());
        assert_eq!(served.transport, Transport::Http);
        // Server flags mean nothing to analyze-log: refused rather than ignored.
        assert!(Args::try_parse_from(["gpuscope-mcp", "--transport", "http", "analyze-log", "x"]).is_err());
        assert!(Args::try_parse_from(["gpuscope-mcp", "analyze-log"]).is_err(), "FILE is required");
    }
}
