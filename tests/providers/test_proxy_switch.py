"""The switch against a real Caddy (the binary scripts/images.sh builds for the proxy image), on loopback
ports of its own, in front of two scripted backends: no request fails across many switches (a switch renames
the route file and reloads nothing), and a switch waits for the old backend's request in flight."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fetchml_infra import offline, proxy
from tests.conftest import images
from tests.providers.scripted_server import Reply, Script, free_port, ok, process, serve


def caddy_binary() -> Path:
    version = images()["CADDY_VERSION"]
    path = offline.cache_home(os.environ) / "toolchain" / f"caddy-{version}" / "caddy"
    assert path.is_file(), f"{path} is built by scripts/bootstrap (scripts/images.sh --only=proxy)"
    return path


Caddy = tuple[proxy.Admin, str, Path, dict[str, str]]


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[Caddy]:
    admin_port, port, route = free_port(), free_port(), tmp_path / "route" / "upstream"
    where = {"listen": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{admin_port}", "route_file": str(route)}
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path)}
    admin = proxy.Admin(f"http://127.0.0.1:{admin_port}")
    argv = [str(caddy_binary()), "run", "--resume"]
    with process(argv, admin.loaded, env={**env, "CADDY_ADMIN": f"127.0.0.1:{admin_port}"}):
        yield admin, f"http://127.0.0.1:{port}/health", route, where


def probe(url: str, stop: threading.Event, seen: list[str]) -> None:
    while not stop.is_set():
        try:
            r = httpx.get(url, timeout=5)
            seen.append(r.json()["version"] if r.status_code == 200 else f"HTTP {r.status_code}")
        except httpx.HTTPError as exc:
            seen.append(f"error {exc}")
        time.sleep(0.01)


def test_switches_lose_no_request_and_read_back(caddy: Caddy) -> None:
    admin, url, route, where = caddy
    with serve(Script(ok("sha-1a2b3c4"))) as blue, serve(Script(ok("sha-5d6e7f8"))) as green:
        dials = [u.removeprefix("http://").split("/")[0] for u in (blue, green)]
        proxy.switch(admin, route, dials[0], "/health", 5, **where)
        loaded = admin.loaded()
        stop, seen = threading.Event(), list[str]()
        probers = [threading.Thread(target=probe, args=(url, stop, seen)) for _ in range(4)]
        for prober in probers:
            prober.start()
        for i in range(40):  # what dropped requests when each switch reloaded Caddy's config
            time.sleep(0.05)
            done = proxy.switch(admin, route, dials[(i + 1) % 2], "/health", 5, **where)
            assert done["previous"] == dials[i % 2]
        time.sleep(0.2)
        stop.set()
        for prober in probers:
            prober.join()
        assert admin.loaded() == loaded  # no switch after the first loaded a config
    assert proxy.read_route(route) == dials[0]
    failed = [s for s in seen if not s.startswith("sha-")]
    assert len(seen) > 200 and failed == []
    assert {"sha-1a2b3c4", "sha-5d6e7f8"} <= set(seen)


def test_a_switch_waits_for_the_old_backends_request_in_flight(caddy: Caddy) -> None:
    admin, url, route, where = caddy
    slow = Script(Reply(200, '{"status": "ok", "version": "sha-1a2b3c4"}', delay=2.0))
    with serve(slow) as blue, serve(Script(ok("sha-5d6e7f8"))) as green:
        old, new = (u.removeprefix("http://").split("/")[0] for u in (blue, green))
        proxy.switch(admin, route, old, "/health", 5, **where)
        answers: list[str] = []
        started = time.monotonic()
        request = threading.Thread(target=lambda: answers.append(httpx.get(url, timeout=10).json()["version"]))
        request.start()
        time.sleep(0.5)  # the slow request is in flight to the old backend
        done = proxy.switch(admin, route, new, "/health", 5, **where)
        request.join()
        assert answers == ["sha-1a2b3c4"]  # it finished on the old backend, not cut off
        assert done["left_in_flight"] == 0 and done["drained_seconds"] >= 1.0
        assert time.monotonic() - started >= 2.0
        assert httpx.get(url, timeout=5).json()["version"] == "sha-5d6e7f8"


def test_an_unreachable_admin_api_is_a_proxy_error_that_names_it() -> None:
    port = free_port()
    with pytest.raises(proxy.ProxyError, match=f"admin API at http://127.0.0.1:{port} did not answer"):
        proxy.Admin(f"http://127.0.0.1:{port}", timeout=1).loaded()
