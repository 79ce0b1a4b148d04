#!/usr/bin/env bash
# The Pulumi toolchain, built from Go modules into directories keyed by version (scripts/toolchain.env):
#   scripts/toolchain.sh           the CLI (PULUMI_VERSION) and the Python language host, unless the
#                                  user's own `pulumi` is at least PULUMI_OLDEST_VERSION: then that is used
#   scripts/toolchain.sh --oldest  also the oldest supported CLI (the tests run a smoke on it)
#   scripts/toolchain.sh --plan    say what would be used or built, build nothing (with --oldest too)
# A second run finds the directories complete and returns at once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

plan=false oldest=false
for arg in "$@"; do
  case $arg in
    --plan) plan=true ;;
    --oldest) oldest=true ;;
    *) die "unknown argument '$arg' (expected --plan and/or --oldest)" ;;
  esac
done
cli_dir=$(toolchain_dir pulumi)
oldest_dir=$(toolchain_dir pulumi-oldest)
host_dir=$(toolchain_dir python-host)

# Plain scripts from the sdk module that the engine runs beside the host: the host's executor, the Python
# dynamic-provider host and the Python policy-pack analyzer. The module loses their run bits.
SDK_SCRIPTS=(cmd/pulumi-language-python-exec dist/pulumi-resource-pulumi-python dist/pulumi-analyzer-policy-python)

at_least() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]; } # VERSION MINIMUM

# A throw-away wrapper module that requires MODULE@VERSION and builds PACKAGE from it: the module's own
# go.mod has replace directives, which `go install` refuses; as a dependency they are ignored, so its
# non-local ones (forks it builds against) are copied into the wrapper.
build() { # MODULE VERSION PACKAGE OUT LDFLAGS
  local module=$1 version=$2 package=$3 out=$4 ldflags=$5 work mod
  work=$(mktemp -d)
  printf 'module fetchml-infra/toolchain\n\ngo 1.21\n' >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$package" >"$work/tools.go"
  mod=$(cd "$work" && go mod download -json "$module@v$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  grep -E '^replace .* => [^./][^ ]* v[^ ]+$' "$mod" >>"$work/go.mod" || true
  (cd "$work" && go get "$module@v$version" && go mod tidy \
    && go build -trimpath -o "$out" -ldflags "$ldflags" "$package")
  rm -rf "$work"
}

# The CLI's directory also gets a copy of the language host and its scripts: the engine looks for these
# bundled plugins next to its own binary (a copy found on PATH instead draws a warning on every run).
build_cli() { # VERSION DIR
  local v=$1 dir=$2
  [[ -f $dir/.complete ]] && { say "pulumi v$v: cached in $dir"; return; }
  build_host "$PULUMI_PYTHON_HOST_VERSION" "$host_dir"
  command -v go >/dev/null || die "Go is needed to build the Pulumi CLI (apt-get install golang, or put go on PATH)"
  say "building pulumi v$v from github.com/pulumi/pulumi/pkg/v3 into $dir (a few minutes)"
  local start=$SECONDS flags="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  build github.com/pulumi/pulumi/pkg/v3 "$v" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$dir.tmp/pulumi" \
    "$flags -X github.com/pulumi/pulumi/pkg/v3/version.Version=v$v"
  cp -p "$host_dir"/pulumi-* "$dir.tmp/"
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && date -u +%FT%TZ >"$dir/.complete"
  say "built: pulumi $("$dir/pulumi" version) in $((SECONDS - start)) s"
}

build_host() { # VERSION DIR
  local v=$1 dir=$2 sdk s
  [[ -f $dir/.complete ]] && { say "pulumi-language-python v$v: cached in $dir"; return; }
  command -v go >/dev/null || die "Go is needed to build the Python language host (apt-get install golang)"
  say "building pulumi-language-python v$v from github.com/pulumi/pulumi/sdk/v3 into $dir"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  build github.com/pulumi/pulumi/sdk/v3 "$v" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
    "$dir.tmp/pulumi-language-python" "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v"
  sdk=$(go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$v" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  for s in "${SDK_SCRIPTS[@]}"; do install -m 755 "$sdk/python/$s" "$dir.tmp/${s#*/}"; done
  rm -rf "$dir" && mv "$dir.tmp" "$dir" && date -u +%FT%TZ >"$dir/.complete"
}

# A user's own Pulumi (anything on PATH that is not one of ours) is used when it is recent enough; it
# brings its own language host and policy analyzer.
own=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF -e "$cli_dir" -e "$oldest_dir" | paste -sd:) \
  command -v pulumi || true)
own_version=$([[ -n $own ]] && "$own" version 2>/dev/null | sed 's/^v//' || true)
if [[ -n $own_version && ! -f $cli_dir/.complete ]] && at_least "$own_version" "$PULUMI_OLDEST_VERSION"; then
  say "using your pulumi v$own_version at $own (the oldest supported is v$PULUMI_OLDEST_VERSION)"
else
  if [[ -n $own_version ]] && ! at_least "$own_version" "$PULUMI_OLDEST_VERSION"; then
    say "your pulumi v$own_version at $own is older than the oldest supported v$PULUMI_OLDEST_VERSION;" \
      "this project uses its own v$PULUMI_VERSION"
  fi
  if $plan; then
    say "would use pulumi v$PULUMI_VERSION ($([[ -f $cli_dir/.complete ]] && echo cached || echo to build) in $cli_dir)"
  else
    build_cli "$PULUMI_VERSION" "$cli_dir"
  fi
fi
if $oldest && $plan; then
  say "would use pulumi v$PULUMI_OLDEST_VERSION for the oldest-CLI smoke" \
    "($([[ -f $oldest_dir/.complete ]] && echo cached || echo to build) in $oldest_dir)"
elif $oldest; then
  build_cli "$PULUMI_OLDEST_VERSION" "$oldest_dir"
fi
