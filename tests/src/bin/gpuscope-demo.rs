//! gpuscope-demo: the whole system on this machine, no cluster and no GPU needed. Ctrl-C stops everything.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use gpuscope_tests::demo::{self, Demo, DemoOptions, StopRequest};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;

/// gpuscope demo: a real Kubernetes control plane on loopback, five simulated GPU nodes (one reports an
/// uncorrectable ECC error at once, one loses a GPU to XID 79 two minutes in), the operator and the MCP facade.
/// Needs the binaries: `cargo build --release --workspace --bins` (tests/scripts/demo.sh does both).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the MCP facade listens (streamable HTTP at /mcp).
    #[arg(long, default_value = "127.0.0.1:8765")]
    mcp_listen: SocketAddr,
    /// Start, print what a user sees, and stop (no waiting for Ctrl-C).
    #[arg(long)]
    once: bool,
}

/// Exit status when a stop request (Ctrl-C) came before the demo had shown anything: 128 + SIGINT, as a shell
/// reports a program killed by Ctrl-C, so `demo --once && next` does not go on.
const INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Before anything starts: from here on Ctrl-C is a request the demo honours between steps, never a kill
    // that leaves the control plane's and the scratch folders behind.
    let stop = match StopRequest::on_signals() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("[demo] cannot catch Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args, stop.clone()).await {
        Ok(code) => code,
        Err(e) => {
            // A Ctrl-C also reaches the short-lived helpers the demo runs (openssl, kubectl: they share the
            // terminal's process group), so a failure after a stop request is the interruption, not a fault. The
            // helper can fail a moment before the signal task has recorded the request: allow it that moment.
            let mut waiting = stop.clone();
            let stopping = stop.requested()
                || tokio::time::timeout(std::time::Duration::from_millis(500), waiting.wait()).await.is_ok();
            if stopping {
                eprintln!("[demo] stopped before it was ready");
                ExitCode::from(INTERRUPTED)
            } else {
                eprintln!("[demo] error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(args: &Args, mut stop: StopRequest) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Every early return below drops `demo`, which stops the components in reverse order, then the control plane,
    // then removes the scratch folder.
    let mut demo = Demo::start(&DemoOptions { mcp_listen: args.mcp_listen }, &stop).await?;
    show(&demo).await?;
    if !args.once {
        println!("\nRunning. The XID 79 on gpu-h100-b arrives about two minutes after start; watch it with");
        println!("  KUBECONFIG={} kubectl get gns -w", demo.kubeconfig().display());
        println!("Ctrl-C stops everything.");
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                () = stop.wait() => break,
                _ = tick.tick() => demo.check()?,
            }
        }
    }
    demo::step("stopping the facade, the operator, the probes, then the control plane");
    demo.stop();
    demo::step("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn show(demo: &Demo) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n$ kubectl get gpunodestatus");
    print!("{}", demo.kubectl_get(&["get", "gpunodestatus"])?);
    println!("\n$ kubectl get nodes -o custom-columns=...GPUHealthy...");
    print!(
        "{}",
        demo.kubectl_get(&[
            "get",
            "nodes",
            "-o",
            "custom-columns=NODE:.metadata.name,GPU-HEALTHY:.status.conditions[?(@.type==\"GPUHealthy\")].status,\
             REASON:.status.conditions[?(@.type==\"GPUHealthy\")].reason",
        ])?
    );
    let transport = StreamableHttpClientTransport::from_uri(demo.mcp_url.clone());
    let client = ClientConfig::default().serve(transport).await?;
    for tool in ["get_fleet_summary", "get_gpu_health"] {
        let result = client.call_tool(CallToolRequestParams::new(tool.to_string())).await?;
        let text: Vec<String> = result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
        println!("\nMCP {tool}:\n{}", text.join("\n"));
    }
    client.cancel().await?;
    let mcp_binary = gpuscope_tests::workspace_binary("gpuscope-mcp")?;
    println!("\n{}", demo::client_instructions(&demo.mcp_url, &demo.kubeconfig(), &mcp_binary));
    Ok(())
}
