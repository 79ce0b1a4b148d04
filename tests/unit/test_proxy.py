"""The front proxy's pure core: the Caddy config a switch loads, and reading back where it routes."""

from __future__ import annotations

import json
from pathlib import Path

from fetchml_infra import proxy
from fetchml_infra.config import parse
from fetchml_infra.offline import REPO_ROOT
from tests.unit.test_config import SECRETS, good


def test_upstream_and_image_are_inverse() -> None:
    dial = proxy.upstream("fetchml-staging", "sha-1a2b3c4", 9101)
    assert dial == "fetchml-staging-api-sha-1a2b3c4:9101"
    assert proxy.image_of("fetchml-staging", dial) == "sha-1a2b3c4"
    assert proxy.image_of("fetchml-prod", dial) is None  # another stack's upstream is not this one's image
    assert proxy.image_of("fetchml-staging", "fetchml-staging-api-:9101") is None
    assert proxy.image_of("fetchml-staging", None) is None


def test_the_config_routes_everything_to_the_upstream_the_route_file_names() -> None:
    loaded = proxy.config("/health")
    # Read per request: a switch renames the file and reloads nothing.
    assert proxy.routed_upstream(loaded) == "{file./etc/fetchml-route/upstream}"
    server = loaded["apps"]["http"]["servers"][proxy.SERVER]
    assert server["listen"] == [":8080"] and server["automatic_https"] == {"disable": True}
    [handler] = server["routes"][0]["handle"]
    assert handler["health_checks"]["active"]["uri"] == "/health"
    assert loaded["admin"] == {"listen": "0.0.0.0:2019"}  # inside the container; published on loopback only
    assert loaded["apps"]["http"]["grace_period"] == proxy.GRACE
    assert proxy.config("/healthz") != loaded  # the live config is compared whole, so it must say everything


def test_the_route_file_is_replaced_whole(tmp_path: Path) -> None:
    route = tmp_path / "proxy" / "staging" / "upstream"
    assert proxy.read_route(route) is None
    proxy.write_route(route, "fx-api-sha-1a2b3c4:9101")
    proxy.write_route(route, "fx-api-sha-5d6e7f8:9101")
    assert route.read_text() == "fx-api-sha-5d6e7f8:9101\n"
    assert proxy.read_route(route) == "fx-api-sha-5d6e7f8:9101"
    assert sorted(p.name for p in route.parent.iterdir()) == ["upstream"]  # no temporary left behind
    assert route.stat().st_mode & 0o777 == 0o644  # Caddy in the container reads it


def test_the_images_initial_config_routes_nothing() -> None:
    initial = json.loads((REPO_ROOT / "images" / "proxy" / "initial.json").read_text())
    assert proxy.routed_upstream(initial) is None
    assert proxy.routed_upstream({}) is None
    # The first switch replaces the whole config, so the initial one must agree on what stays.
    assert initial["admin"] == proxy.config("/h")["admin"]
    assert initial["apps"]["http"]["servers"][proxy.SERVER]["listen"] == [":8080"]


def test_the_admin_api_is_on_loopback_whatever_the_bind_address() -> None:
    def admin(**extra: str) -> tuple[str, str]:
        cfg = parse("staging", good(**extra), SECRETS)
        return cfg.proxy_admin_host, cfg.proxy_admin_url

    assert admin() == ("127.0.0.1", "http://127.0.0.1:2019")
    assert admin(bindAddress="0.0.0.0", allowPublicBind="true") == ("127.0.0.1", "http://127.0.0.1:2019")
    assert admin(bindAddress="::1", proxyAdminPort="2020") == ("::1", "http://[::1]:2020")
