#!/usr/bin/env bash
# Proves the one-line installs without publishing anything: builds the release gpuscope-mcp, packs it for npm and
# PyPI (mcp-facade/packaging/build.sh), installs each from the local files into scratch folders, and drives an MCP
# initialize and an explain_xid call over stdio through each way an MCP client would start it:
#   npx -y gpuscope-mcp (npm, from the tarballs)   pip's console script (the wheel)   uvx --from <wheel> gpuscope-mcp
# Not part of .ci/run: the release build takes several minutes on 2 cores. Needs cargo, node/npm, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/gpuscope-packages.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
check="$root/tests/scripts/mcp-stdio-check.py"

cargo build --release --locked -p gpuscope-mcp
mcp-facade/packaging/build.sh --out "$scratch/dist" --binary "${CARGO_TARGET_DIR:-$root/target}/release/gpuscope-mcp"

echo "== npm: install the tarballs, run npx -y gpuscope-mcp"
mkdir -p "$scratch/npm-project"
# --offline: everything comes from the local tarballs; a lookup in the registry would be a packaging bug.
npm install --prefix "$scratch/npm-project" --offline --no-audit --no-fund --loglevel=error "$scratch"/dist/npm/*.tgz
(cd "$scratch/npm-project" && python3 "$check" npx --offline -y gpuscope-mcp --no-cluster)

echo "== PyPI: pip install the wheel into a fresh venv, run its gpuscope-mcp"
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --no-index "$scratch"/dist/pypi/*.whl
python3 "$check" "$scratch/venv/bin/gpuscope-mcp" --no-cluster

echo "== uvx: run the wheel the way uvx gpuscope-mcp does"
tools="${GPUSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuscope}/packaging-venv"
[[ -x $tools/bin/uv ]] || "$tools/bin/pip" install --quiet "uv==0.13.8"
wheel=$(ls "$scratch"/dist/pypi/*.whl)
UV_CACHE_DIR="$scratch/uv-cache" UV_TOOL_DIR="$scratch/uv-tools" \
  python3 "$check" "$tools/bin/uvx" --offline --from "$wheel" gpuscope-mcp --no-cluster

echo "all package checks passed"
