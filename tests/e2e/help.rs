//! Each program says what it is: `--help` of every binary opens with a description of its own, not the crate's.

use std::process::Command;

use gpuscope_tests::workspace_binary;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn every_program_describes_itself_in_its_help() -> TestResult {
    let mut seen: Vec<String> = Vec::new();
    for (binary, says) in [
        ("gpuscope-probe", "node probe"),
        ("gpuscope-operator", "operator"),
        ("gpuscope-mcp", "MCP facade"),
        ("gpuscope-demo", "gpuscope demo"),
        ("gpuscope-bench", "gpuscope benchmarks"),
    ] {
        for flag in ["--help", "-h"] {
            let out = Command::new(workspace_binary(binary)?).arg(flag).output()?;
            assert!(out.status.success(), "{binary} {flag}: {}", String::from_utf8_lossy(&out.stderr));
            let help = String::from_utf8(out.stdout)?;
            let first = help.lines().next().unwrap_or_default().to_string();
            assert!(first.contains(says), "{binary} {flag} opens with {first:?}, not its own description");
            assert!(!first.contains("end-to-end suite"), "{binary} {flag}: the tests crate's description: {first}");
            if flag == "--help" {
                assert!(!seen.contains(&first), "{binary} shares its description with another program: {first}");
                seen.push(first);
            }
        }
    }
    Ok(())
}
