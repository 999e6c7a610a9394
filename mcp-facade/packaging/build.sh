#!/usr/bin/env bash
# Builds the one-line-install packages of gpuscope-mcp from its release binary, publishing nothing:
#   <out>/npm/gpuscope-mcp-<version>.tgz                  the launcher `npx -y gpuscope-mcp` runs
#   <out>/npm/gpuscope-mcp-<platform>-<arch>-<version>.tgz  the binary for this platform (an optionalDependency)
#   <out>/pypi/gpuscope_mcp-<version>-py3-none-<tag>.whl   maturin `bindings = "bin"`: `uvx gpuscope-mcp`
#   <out>/server.json                                      the MCP Registry entry, its versions checked
# Usage: mcp-facade/packaging/build.sh [--out DIR] [--binary PATH]
#   --binary  the release gpuscope-mcp (default: target/release/gpuscope-mcp, built with --locked if missing)
# Needs cargo, node/npm and python3; maturin is installed on first use into the gpuscope cache folder
# ($GPUSCOPE_CACHE or ~/.cache/gpuscope). A release pipeline runs it once per platform and publishes the platform
# tarballs, then one launcher whose optionalDependencies name them all (--platform-packages).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/packages"
binary=""
extra_platforms=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --platform-packages) IFS=, read -r -a extra_platforms <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(cd "$root" && cargo pkgid -p gpuscope-mcp | sed 's/.*[@#]//')
target_dir=${CARGO_TARGET_DIR:-$root/target}
if [[ -z $binary ]]; then
  binary="$target_dir/release/gpuscope-mcp"
  (cd "$root" && cargo build --release --locked -p gpuscope-mcp)
fi
[[ -x $binary ]] || { echo "no executable at $binary" >&2; exit 1; }

# npm's names for this machine.
case $(uname -s) in Linux) os=linux ;; Darwin) os=darwin ;; *) echo "unsupported OS $(uname -s)" >&2; exit 1 ;; esac
case $(uname -m) in x86_64|amd64) cpu=x64 ;; aarch64|arm64) cpu=arm64 ;; *) echo "unsupported CPU $(uname -m)" >&2; exit 1 ;; esac
platform_pkg="gpuscope-mcp-$os-$cpu"

stage="$out/stage"
rm -rf "$stage" "$out/npm" "$out/pypi"
mkdir -p "$stage/$platform_pkg/bin" "$stage/gpuscope-mcp" "$out/npm" "$out/pypi"

# The platform package: the binary, with os/cpu so npm installs it only where it runs.
install -m 0755 "$binary" "$stage/$platform_pkg/bin/gpuscope-mcp"
node - "$stage/$platform_pkg/package.json" "$platform_pkg" "$version" "$os" "$cpu" <<'JS'
const [file, name, version, os, cpu] = process.argv.slice(2);
const pkg = {
  name, version,
  description: `The gpuscope-mcp binary for ${os}-${cpu} (installed by the gpuscope-mcp package)`,
  license: "Apache-2.0",
  repository: { type: "git", url: "git+https://github.com/gpuscope/gpuscope.git" },
  os: [os], cpu: [cpu], files: ["bin/gpuscope-mcp"],
  preferUnplugged: true,
};
if (os === "linux") pkg.libc = ["glibc"];
require("fs").writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
JS

# The launcher: its version and optionalDependencies (this platform, plus any named with --platform-packages).
cp -r "$here/npm/gpuscope-mcp/." "$stage/gpuscope-mcp/"
node - "$stage/gpuscope-mcp/package.json" "$version" "$platform_pkg" "${extra_platforms[@]}" <<'JS'
const [file, version, ...platforms] = process.argv.slice(2);
const pkg = JSON.parse(require("fs").readFileSync(file, "utf8"));
pkg.version = version;
pkg.optionalDependencies = Object.fromEntries([...new Set(platforms)].sort().map((p) => [p, version]));
require("fs").writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
JS
for pkg in "$platform_pkg" gpuscope-mcp; do
  (cd "$stage/$pkg" && npm pack --silent --pack-destination "$out/npm" >/dev/null)
done

# The wheel. maturin compiles the binary itself, with the same release profile and target folder, so cargo finds
# it built (the check below says if the wheel's binary differs from --binary).
tools="${GPUSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuscope}/packaging-venv"
if ! "$tools/bin/maturin" --version >/dev/null 2>&1; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet "maturin==1.16.0"
fi
(cd "$here/pypi" && CARGO_TARGET_DIR="$target_dir" "$tools/bin/maturin" build --release --locked --quiet --out "$out/pypi" >&2)
wheel=$(ls "$out/pypi"/gpuscope_mcp-"$version"-*.whl)
python3 - "$wheel" "$binary" <<'PY'
import hashlib, sys, zipfile
wheel, binary = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/gpuscope-mcp"))
    inside = hashlib.sha256(z.read(name)).hexdigest()
built = hashlib.sha256(open(binary, "rb").read()).hexdigest()
print(f"wheel binary {name}: {'the release binary' if inside == built else 'rebuilt by maturin (differs from ' + binary + ')'}")
PY

# server.json names these versions.
python3 - "$here/server.json" "$version" "$out/server.json" <<'PY'
import json, sys
path, version, dest = sys.argv[1:]
server = json.load(open(path))
versions = {server["version"]} | {p["version"] for p in server["packages"]}
if versions != {version}:
    sys.exit(f"{path} names versions {sorted(versions)}, the crate is {version}")
if len(server["description"]) > 100:
    sys.exit(f"{path}: the registry caps the description at 100 characters")
json.dump(server, open(dest, "w"), indent=2)
PY
rm -rf "$stage"
ls -l "$out/npm" "$out/pypi"
