//! gpuscope-demo: the whole system on this machine, no cluster and no GPU needed. Ctrl-C stops everything.

use std::net::SocketAddr;

use clap::Parser;
use gpuscope_tests::demo::{self, Demo, DemoOptions};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;

/// gpuscope demo: a real Kubernetes control plane on loopback, four simulated GPU nodes (one loses a GPU to XID
/// 79 two minutes in), the operator and the MCP facade. Needs the binaries: `cargo build --release --workspace
/// --bins` (tests/scripts/demo.sh does both).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where the MCP facade listens (streamable HTTP at /mcp).
    #[arg(long, default_value = "127.0.0.1:8765")]
    mcp_listen: SocketAddr,
    /// Start, print what a user sees, and stop (no waiting for Ctrl-C).
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut demo = Demo::start(&DemoOptions { mcp_listen: args.mcp_listen }).await?;
    show(&demo).await?;
    if !args.once {
        println!("\nRunning. The XID 79 on gpu-h100-b arrives about two minutes after start; watch it with");
        println!("  KUBECONFIG={} kubectl get gns -w", demo.control_plane.kubeconfig().display());
        println!("Ctrl-C stops everything.");
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => demo.check()?,
            }
        }
    }
    eprintln!("[demo] stopping");
    drop(demo);
    eprintln!("[demo] stopped");
    Ok(())
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
    println!("\n{}", demo::client_instructions(&demo.mcp_url, &demo::demo_kubeconfig(demo), &mcp_binary));
    Ok(())
}
