#!/usr/bin/env bash
# The gpuscope demo on this machine: no cluster, no GPU. Builds what it needs (the first run also builds the
# Kubernetes control plane, ~5 minutes), then runs it until Ctrl-C (or, with --once, prints and stops).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { printf '[demo] %s\n' "$*" >&2; }

if [[ -z ${KUBEBUILDER_ASSETS:-} ]]; then
  # The same cache location build-control-plane.sh uses; when it is warm the script returns at once.
  cache=${GPUSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuscope}/kube-1.20.2
  if [[ ! -x $cache/kube-apiserver || ! -x $cache/kube-controller-manager || ! -x $cache/etcd ]]; then
    # Its compile step prints nothing for minutes: say so up front, and show that it is still going.
    say "first run: building the Kubernetes control plane (kube-apiserver, kube-controller-manager 1.20.2) into $cache"
    say "this takes about 5 minutes on 2 cores and is silent; the build log is" \
      "${TMPDIR:-/tmp}/gpuscope-kube-build.*/build.log (tail -f it to watch)"
    started=$SECONDS
    (
      # The nap runs in the background so that the TERM below interrupts `wait` and takes the nap with it.
      trap 'kill "$nap" 2>/dev/null; exit 0' TERM
      while :; do
        sleep 30 &
        nap=$!
        wait "$nap"
        say "still building the control plane ($(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s)"
      done
    ) &
    ticker=$!
    trap 'kill "$ticker" 2>/dev/null || true' EXIT
    tests/scripts/build-control-plane.sh
    kill "$ticker" 2>/dev/null || true
    trap - EXIT
    say "control plane built in $(((SECONDS - started) / 60))m$(((SECONDS - started) % 60))s"
  else
    tests/scripts/build-control-plane.sh
  fi
fi
say "building gpuscope (release; the first build takes a few minutes)"
cargo build --release --workspace --bins
exec target/release/gpuscope-demo "$@"
