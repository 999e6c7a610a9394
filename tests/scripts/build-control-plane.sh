#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager 1.20.2 from Debian's source package and caches them
# (with a link to Debian's etcd) in $GPUSCOPE_CACHE/kube-1.20.2. Idempotent: a warm cache returns at once.
# Recipe and rationale: ../shared/reference/control-plane.md (Debian's 1.20 source is the one that vendors
# its Go dependencies, so it builds offline from the package mirror).
set -euo pipefail

version=1.20.2
cache_root=${GPUSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuscope}
dest="$cache_root/kube-$version"

log() { printf '[control-plane] %s\n' "$*" >&2; }

if [[ -x "$dest/kube-apiserver" && -x "$dest/kube-controller-manager" && -x "$dest/etcd" ]]; then
  log "cached in $dest"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi

need_pkgs=()
for p in etcd-server golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev openssl; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
src_list=/etc/apt/sources.list.d/gpuscope-src.sources
if [[ ! -f $src_list ]]; then
  log "adding a deb-src entry ($src_list)"
  # The first stanza of the machine's own sources, as deb-src.
  awk 'BEGIN{RS=""; ORS="\n\n"} NR==1 {sub(/Types: deb/, "Types: deb-src"); print; exit}' \
    /etc/apt/sources.list.d/debian.sources | $sudo tee "$src_list" >/dev/null
  need_update=1
fi
if [[ ${#need_pkgs[@]} -gt 0 || -n ${need_update:-} ]]; then
  log "apt-get update"
  $sudo apt-get update -qq
fi
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
  log "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/gpuscope-kube-build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
log "downloading the kubernetes source package"
apt-get source --download-only kubernetes >/dev/null 2>&1
orig=$(ls kubernetes_*.orig.tar.gz | head -n1)
mkdir src
log "unpacking $orig"
tar xzf "$orig" -C src
tree=$(find src -mindepth 1 -maxdepth 1 -type d | head -n1)
[[ -d $tree/cmd/kube-apiserver ]] || tree=src
cd "$tree"

# The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian's 1.0.2 does not.
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
for f in /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s; do
  [[ -e $f ]] || continue
  case $f in *_test.go) continue ;; esac
  cp "$f" vendor/github.com/modern-go/reflect2/
done

mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
log "building kube-apiserver and kube-controller-manager (about 4-5 minutes on 2 cores)"
GOPATH=$PWD/.go GO111MODULE=off CGO_ENABLED=0 GOFLAGS= \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$scratch/build.log" 2>&1 || {
  tail -n 40 "$scratch/build.log" >&2
  log "build failed; full log above"
  exit 1
}

mkdir -p "$dest.partial"
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$dest.partial/"
ln -sfn "$(command -v etcd || echo /usr/bin/etcd)" "$dest.partial/etcd"
rm -rf "$dest"
mv "$dest.partial" "$dest"
log "cached in $dest"
