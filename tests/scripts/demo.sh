#!/usr/bin/env bash
# The gpuscope demo on this machine: no cluster, no GPU. Builds what it needs (the first run also builds the
# Kubernetes control plane, ~5 minutes), then runs it until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z ${KUBEBUILDER_ASSETS:-} ]]; then
  tests/scripts/build-control-plane.sh
fi
echo "[demo] building gpuscope (release)" >&2
cargo build --release --workspace --bins
exec target/release/gpuscope-demo "$@"
