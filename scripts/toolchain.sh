#!/usr/bin/env bash
# Build the Pulumi CLI and the Python language host from Go modules into a directory keyed by version,
# and lay out the two scripts the host needs beside them. A second run finds the directory complete and
# returns at once. A user's own install is used instead when it already has the pinned version.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$(toolchain_dir pulumi)
want="v$PULUMI_PKG_VERSION"
stamp="$out/.complete"

# Plain scripts from the sdk module that the engine runs beside the CLI: the language host's executor,
# the Python dynamic-provider host and the Python policy-pack analyzer. The module loses their run bits.
SDK_SCRIPTS=(cmd/pulumi-language-python-exec dist/pulumi-resource-pulumi-python dist/pulumi-analyzer-policy-python)
install_sdk_scripts() { # DIR
  local sdk
  sdk=$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_SDK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  for s in "${SDK_SCRIPTS[@]}"; do install -m 755 "$sdk/python/$s" "$1/${s#*/}"; done
}

if [[ -f $stamp ]]; then
  for s in "${SDK_SCRIPTS[@]}"; do [[ -x $out/${s#*/} ]] || install_sdk_scripts "$out"; done
  say "pulumi $want and pulumi-language-python v$PULUMI_SDK_VERSION: cached in $out"
  exit 0
fi
if command -v pulumi >/dev/null && [[ $(pulumi version 2>/dev/null) == "$want" ]] \
   && command -v pulumi-language-python >/dev/null && command -v pulumi-resource-pulumi-python >/dev/null \
   && command -v pulumi-analyzer-policy-python >/dev/null; then
  say "using the pulumi $want already installed at $(command -v pulumi)"
  exit 0
fi
command -v go >/dev/null || die "Go is needed to build the Pulumi CLI (apt-get install golang, or put go on PATH)"

say "building pulumi $want and pulumi-language-python v$PULUMI_SDK_VERSION from Go modules into $out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throw-away wrapper module: pkg/v3's own go.mod has replace directives, which `go install` refuses but
# which are ignored when pkg/v3 is a dependency.
cat >"$work/go.mod" <<MOD
module fetchml-infra/toolchain

go 1.21
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
	_ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
)
GO
cd "$work"
go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_PKG_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_SDK_VERSION"
go mod tidy
mkdir -p "$out.tmp"
cli_ldflags="-X github.com/pulumi/pulumi/pkg/v3/version.Version=$want"
cli_ldflags+=" -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$want"
go build -trimpath -o "$out.tmp/pulumi" -ldflags "$cli_ldflags" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
go build -trimpath -o "$out.tmp/pulumi-language-python" \
  -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_SDK_VERSION" \
  github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
install_sdk_scripts "$out.tmp"
rm -rf "$out" && mv "$out.tmp" "$out"
date -u +%FT%TZ >"$stamp"
say "built: $("$out/pulumi" version) in $out (${SECONDS} s)"
