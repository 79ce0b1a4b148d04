# shellcheck shell=bash
# Sourced by scripts/images.sh (its helpers and variables in scope) with the stand-ins (--only=standin builds
# it too): $PROBE_IMAGE, the static stand-in binary alone, as /standin with ENTRYPOINT ["/standin", "probe"].
#   docker run --rm --network NET $PROBE_IMAGE [--timeout D] NAME:PORT/PATH...
# prints one JSON line per address NAME resolves to on NET (each task of a Swarm service behind
# tasks.<service>), {"target", "address", "status", "body", "error"}; see images/standin/probe.go.
probe_name=${PROBE_IMAGE%:*} probe_tag=${PROBE_IMAGE##*:}
probe_key=$({ echo "$recipe" "$standin_key"; cat "$REPO/scripts/images-probe.sh"; } | hash12)
probe_built=0
if [[ $(build_key "$PROBE_IMAGE") == "$probe_key" ]]; then
  say "$PROBE_IMAGE is up to date ($LABEL=$probe_key)"
else
  t0=$SECONDS
  say "building $PROBE_IMAGE from the stand-in binary"
  root=$work/probe-rootfs
  mkdir -p "$root"
  bin=$(standin_bin)
  cp "$bin" "$root/standin"
  import_image "$PROBE_IMAGE" "$root" "$probe_key" 'ENTRYPOINT ["/standin", "probe"]' \
    "LABEL org.opencontainers.image.version=$probe_tag" "LABEL fetchml-infra.role=probe"
  say "built $PROBE_IMAGE in $((SECONDS - t0)) s"
  probe_built=1
fi
table+=("$probe_name $probe_tag - -")

# verify_probe: the image finds a stand-in api by container name on a throwaway network and prints its
# /health, 200 with the version; a bad argument exits 2.
verify_probe() {
  local net=$vprefix-net-probe a=$vprefix-probe-api t=$STANDIN_TAG_A out i rc
  say "verifying $PROBE_IMAGE: probes a $API_IMAGE_REPO:$t container by name on a user-defined network"
  [[ -n $(build_key "$API_IMAGE_REPO:$t") ]] || { fail "probe: no $API_IMAGE_REPO:$t to probe"; return; }
  cleanup_networks+=("$net")
  cleanup_containers+=("$a")
  docker network create "$net" >/dev/null
  docker run -d --name "$a" --network "$net" "$API_IMAGE_REPO:$t" >/dev/null
  wait_log "$a" 'listening on :' || true
  for ((i = 0; i < 10; i++)); do
    out=$(docker run --rm --network "$net" "$PROBE_IMAGE" --timeout 1s "$a:$STANDIN_API_PORT/health" 2>&1) || true
    [[ $out == *'"status":200,'* ]] && break
    sleep 0.5
  done
  set +e
  docker run --rm "$PROBE_IMAGE" "$a" >/dev/null 2>&1
  rc=$?
  set -e
  if [[ $out == *'"status":200,'* && $(wc -l <<<"$out") == 1 && $(json_field "$out" target) == "$a:$STANDIN_API_PORT/health" &&
    $(json_field "$out" status) == 200 && $(json_field "$out" error) == '' &&
    $(json_field "$(json_field "$out" body)" version) == "$t" && $rc == 2 ]]; then
    say "  ok: $out"
  else
    fail "probe: printed '$out', exit $rc on a bad argument (want one status-200 line with version $t, and 2)"
  fi
  docker rm -f -v "$a" >/dev/null
  docker network rm "$net" >/dev/null
}
if ((probe_built || verify_all)); then verify_probe; fi
