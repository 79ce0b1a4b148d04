#!/usr/bin/env bash
# Build the Pulumi resource plugin `pulumi-resource-docker` into OUTDIR, only from Go modules the
# module proxy serves:
#   * github.com/pulumi/pulumi-terraform-bridge/v3 (the bridge) and Pulumi's fork of terraform-plugin-sdk,
#   * github.com/kreuzwerker/terraform-provider-docker (the Terraform provider, served as a pseudo-version).
# The provider lives in an internal package, so its module is copied from the module cache into a
# writable build dir, given the module path our wrapper requires and a tiny exported `shim` package, and
# our wrapper module (go.mod, main.go, resources.go beside this script) points at it with a replace.
# The plugin is stamped with the version of the PyPI pulumi-docker SDK it serves, so the engine picks it.
#
# Usage: build.sh OUTDIR
# Environment (all optional):
#   DOCKER_PROVIDER_VERSION  version to stamp (default: DOCKER_PROVIDER_VERSION from ../../toolchain.env, else 4.2.3)
#   KREUZWERKER_VERSION      kreuzwerker module version (default below)
#   DOCKER_PROVIDER_BUILD_DIR  build dir (default: ${TMPDIR:-/tmp}/pulumi-docker-provider-build)
#   FORCE=1                  rebuild even if OUTDIR already holds this build
set -euo pipefail

say() { printf '[docker-provider] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)

if [[ -z ${DOCKER_PROVIDER_VERSION:-} && -f $here/../../toolchain.env ]]; then
  DOCKER_PROVIDER_VERSION=$(sed -n 's/^DOCKER_PROVIDER_VERSION=//p' "$here/../../toolchain.env" | tail -1)
fi
version=${DOCKER_PROVIDER_VERSION:-4.2.3}
version=${version#v}
# The only kreuzwerker version the proxy serves here (kreuzwerker v4.6.0+, SDKv2 muxed with the plugin
# framework; only the SDKv2 half is bridged). Its go.mod declares this module path:
kw_module=github.com/kreuzwerker/terraform-provider-docker
kw_version=${KREUZWERKER_VERSION:-v0.0.0-20260916201441-96d331c98ff4}
kw_path=github.com/terraform-providers/terraform-provider-docker
build=${DOCKER_PROVIDER_BUILD_DIR:-${TMPDIR:-/tmp}/pulumi-docker-provider-build}
bin=$outdir/pulumi-resource-docker

command -v go >/dev/null || { [[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH; } \
  || die "Go (>= 1.25.8) is needed"
export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod"

# Idempotence: skip when OUTDIR already holds a plugin built from the same inputs.
inputs_hash=$( { echo "$version $kw_module@$kw_version $(go env GOVERSION)"; \
  cat "$here/go.mod" "$here/main.go" "$here/resources.go" "$here/shim/shim.go.tmpl"; \
  if [[ -f $here/go.sum ]]; then cat "$here/go.sum"; fi; } | sha256sum | cut -c1-16)
stamp=$outdir/.pulumi-resource-docker.stamp
if [[ -z ${FORCE:-} && -x $bin && -f $stamp && $(cat "$stamp") == "$inputs_hash" ]]; then
  say "up to date: $bin (v$version, $kw_module@$kw_version)"
  exit 0
fi

say "building pulumi-resource-docker v$version with $(go env GOVERSION) in $build"
say "downloading $kw_module@$kw_version"
kw_dir=$(go mod download -json "$kw_module@$kw_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -n $kw_dir && -d $kw_dir ]] || die "could not download $kw_module@$kw_version"

mkdir -p "$build"
rm -rf "$build/wrapper"
mkdir -p "$build/wrapper"
say "copying $kw_dir -> $build/wrapper/upstream (writable)"
cp -R "$kw_dir" "$build/wrapper/upstream"
chmod -R u+w "$build/wrapper/upstream"
up=$build/wrapper/upstream
# Only the provider's library code is needed: drop its tests, tool pins, docs and examples.
rm -rf "$up/tools" "$up/docs" "$up/examples" "$up/testdata" "$up/website" "$up/scripts" "$up/templates"
find "$up" -name '*_test.go' -delete
decl=$(sed -n 's/^module[[:space:]]\{1,\}//p' "$up/go.mod" | tr -d '\r')
if [[ $decl != "$kw_path" ]]; then
  say "renaming module $decl -> $kw_path"
  sed -i "s#^module .*#module $kw_path#" "$up/go.mod"
  grep -rl --include='*.go' -F "\"$decl" "$up" | xargs -r sed -i "s#\"$decl/#\"$kw_path/#g; s#\"$decl\"#\"$kw_path\"#g"
fi
# Only the SDKv2 half of the provider is bridged. Its plugin-framework half (actions, compose, a few data
# sources) and the muxing main need terraform-plugin-go >= v0.31, which Pulumi's SDK fork does not
# implement, so those files are dropped and go.mod pins terraform-plugin-go to the fork's v0.29.0.
rm -rf "$up/main.go" "$up/internal/provider/actiontests"
for f in $(grep -l --include='*.go' -r -e '"github.com/hashicorp/terraform-plugin-framework' \
             -e '"github.com/hashicorp/terraform-plugin-mux' "$up/internal" || true); do
  say "  dropping framework file ${f#"$up"/}"
  rm -f "$f"
done
mkdir -p "$up/shim"
cp "$here/shim/shim.go.tmpl" "$up/shim/shim.go"
say "added $kw_path/shim"

cp "$here/go.mod" "$here/main.go" "$here/resources.go" "$build/wrapper/"
if [[ -f $here/go.sum ]]; then cp "$here/go.sum" "$build/wrapper/"; fi
cd "$build/wrapper"
say "go mod tidy"
nice go mod tidy
ldflags="-s -w -X main.Version=$version"
say "go build (tags no_compose) -> $bin"
start=$(date +%s)
nice go build -trimpath -tags no_compose -ldflags "$ldflags" -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
say "built in $(( $(date +%s) - start ))s: $("$bin" -version) ($(du -h "$bin" | cut -f1))"
go list -m github.com/pulumi/pulumi-terraform-bridge/v3 github.com/hashicorp/terraform-plugin-sdk/v2 \
  github.com/pulumi/pulumi/sdk/v3 | sed 's/^/[docker-provider]   /' >&2
echo "$inputs_hash" >"$stamp"
