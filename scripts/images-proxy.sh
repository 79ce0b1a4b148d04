# Sourced by scripts/images.sh (its helpers and variables in scope): the front proxy image, Caddy built
# from its Go module once per machine, started with the baked-in images/proxy/initial.json (a 503 until a
# deploy routes a release) or, with --resume, the last config the admin API loaded (kept in /config).
caddy_dir=$cache/toolchain/caddy-$CADDY_VERSION
caddy_bin=$caddy_dir/caddy
[[ -x $caddy_bin ]] || go_binary "$caddy_bin" "$CADDY_MODULE/cmd/caddy@$CADDY_VERSION" "-s -w" "Caddy" "~1 min"
proxy_name=${PROXY_IMAGE%:*} proxy_tag=${PROXY_IMAGE##*:}
proxy_key=$({ echo "$recipe" "$CADDY_MODULE@$CADDY_VERSION"; cat "$REPO/scripts/images-proxy.sh" "$REPO/images/proxy/initial.json"; sha256sum "$caddy_bin" | cut -d' ' -f1; } | hash12)
proxy_built=0
if [[ $(build_key "$PROXY_IMAGE") == "$proxy_key" ]]; then
  say "$PROXY_IMAGE is up to date ($LABEL=$proxy_key)"
else
  t0=$SECONDS
  say "building $PROXY_IMAGE from $caddy_bin"
  root=$work/proxy-rootfs
  mkdir -p "$root"/{usr/bin,etc/caddy,config,data,tmp}
  chmod 1777 "$root/tmp"
  cp "$caddy_bin" "$root/usr/bin/caddy"
  cp "$REPO/images/proxy/initial.json" "$root/etc/caddy/initial.json"
  root_user "$root" /config /usr/bin/caddy
  import_image "$PROXY_IMAGE" "$root" "$proxy_key" \
    'CMD ["/usr/bin/caddy", "run", "--resume", "--config", "/etc/caddy/initial.json"]' \
    'ENV XDG_CONFIG_HOME=/config' 'ENV XDG_DATA_HOME=/data' 'EXPOSE 8080/tcp' 'EXPOSE 2019/tcp' \
    "LABEL org.opencontainers.image.version=$CADDY_VERSION" "LABEL org.opencontainers.image.source=$CADDY_MODULE"
  say "built $PROXY_IMAGE in $((SECONDS - t0)) s"
  proxy_built=1
fi
table+=("$proxy_name $proxy_tag - -")

verify_proxy() {
  say "verifying $PROXY_IMAGE: 503 before any route, admin API answers, a loaded config survives a restart"
  local c=$vprefix-proxy p8080 p2019
  cleanup_containers+=("$c")
  docker run -d --name "$c" -p 127.0.0.1::8080 -p 127.0.0.1::2019 "$PROXY_IMAGE" >/dev/null
  p8080=$(host_port "$c" 8080) p2019=$(host_port "$c" 2019)
  if ! wait_http "http://127.0.0.1:$p8080/" 503 30 || ! wait_http "http://127.0.0.1:$p2019/config/" 200 10; then
    docker logs "$c" 2>&1 | tail -20
    fail "proxy: no 503 on :8080 or no admin API on :2019"
    return
  fi
  curl -fsS -X PATCH -H 'Content-Type: application/json' -d '"resumed\n"' \
    "http://127.0.0.1:$p2019/config/apps/http/servers/fetchml/routes/0/handle/0/body" >/dev/null || fail "proxy: admin PATCH"
  docker restart "$c" >/dev/null
  p8080=$(host_port "$c" 8080)
  if wait_http "http://127.0.0.1:$p8080/" 503 30 && [[ $(curl -sS "http://127.0.0.1:$p8080/") == resumed ]]; then
    say "  ok: 503 until routed, admin API on 127.0.0.1:$p2019, config kept across a restart"
  else
    fail "proxy: the loaded config did not survive a restart"
  fi
  docker rm -f -v "$c" >/dev/null
}
if ((proxy_built || verify_all)); then verify_proxy; fi
