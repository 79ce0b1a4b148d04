"""The front proxy: Caddy owns the API's host port, and a deploy points it at one API container.

Blue/green in three steps, each a resource of the stack: the new API container starts beside the old one
(no host port), the HealthGate checks it directly, and only then does the Route switch the proxy to it and
wait for the old container's requests in flight. Pulumi deletes the old container after that. A release
that fails its gate is never routed: the Route does not run.

The switch is one atomic rename of a file (the route file) that Caddy reads for every request through the
``{file.*}`` placeholder in its upstream's dial address. The Caddy config itself is loaded through the admin
API only when the proxy does not have it yet (a new or replaced proxy): a config reload rebinds the port
and closes a connection arriving in that instant, a rename does not.

``config``, ``routed_upstream`` and ``image_of`` are pure; ``Admin`` and the route file are thin edges.
A multi-host engine keeps this shape: the upstream becomes the replicated API's service name.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from fetchml_infra import host
from fetchml_infra.config import StackConfig
from fetchml_infra.provider_errors import Refused, reported

SERVER = "fetchml"
LISTEN_PORT = 8080  # inside the proxy container; the API's host port maps here
ADMIN_PORT = 2019  # Caddy's admin API, published on loopback only
GRACE = "30s"  # how long a replaced config's requests in flight may run on
ROUTE_DIR = "/etc/fetchml-route"  # in the proxy container: the stack's route directory, mounted read-only
ROUTE_FILE = "upstream"  # holds the one upstream every request goes to


def upstream(prefix: str, image: str, port: int) -> str:
    """Where the proxy dials an image's API: its container name on the stack network."""
    return f"{host.api_name(prefix, image)}:{port}"


def image_of(prefix: str, dial: str | None) -> str | None:
    """The image an upstream address belongs to (the inverse of ``upstream``), None if it is not one."""
    name = (dial or "").rpartition(":")[0]
    head = f"{prefix}-api-"
    return name[len(head) :] if name.startswith(head) and len(name) > len(head) else None


def placeholder(route_file: str) -> str:
    return "{file." + route_file + "}"


def config(
    health_path: str,
    *,
    listen: str = f":{LISTEN_PORT}",
    admin: str = f"0.0.0.0:{ADMIN_PORT}",
    route_file: str = f"{ROUTE_DIR}/{ROUTE_FILE}",
) -> dict[str, Any]:
    """The whole Caddy config: every request goes to the upstream the route file names, read per request."""
    proxy = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": placeholder(route_file)}],
        # Active checks take a release that dies later out of rotation (a 503 instead of a hang); the
        # gate, not these, decides whether a release is routed at all.
        "health_checks": {"active": {"uri": health_path, "interval": "2s", "timeout": "2s"}},
    }
    server = {
        "listen": [listen],
        "automatic_https": {"disable": True},
        "routes": [{"handle": [proxy]}],
    }
    return {
        "admin": {"listen": admin},
        "apps": {"http": {"grace_period": GRACE, "servers": {SERVER: server}}},
    }


def routed_upstream(loaded: Mapping[str, Any]) -> str | None:
    """The dial address of a loaded config's upstream (the route file's placeholder in ours); None for the
    image's initial config (a 503, nothing routed)."""
    try:
        handler = loaded["apps"]["http"]["servers"][SERVER]["routes"][0]["handle"][0]
        return str(handler["upstreams"][0]["dial"]) if handler.get("handler") == "reverse_proxy" else None
    except (KeyError, IndexError, TypeError):
        return None


def read_route(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_route(path: Path, dial: str) -> None:
    """Atomically: a request reads the old upstream or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(dial + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class ProxyError(RuntimeError):
    """The proxy's admin API did not answer as expected."""


class Admin:
    """Caddy's admin API at ``url`` (http://127.0.0.1:<proxyAdminPort>)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = httpx.request(method, self.url + path, json=body, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ProxyError(f"the proxy's admin API at {self.url} did not answer: {exc}") from exc
        if r.status_code != 200:
            raise ProxyError(
                f"the proxy's admin API answered {method} {path} with HTTP {r.status_code}: {r.text[:200]}"
            )
        return r.json() if r.content else None

    def loaded(self) -> dict[str, Any]:
        return dict(self._call("GET", "/config/") or {})

    def load(self, new: Mapping[str, Any]) -> None:
        self._call("POST", "/load", new)

    def in_flight(self, dial: str) -> int:
        """Requests the proxy has open to ``dial`` (0 once it is gone from every loaded config)."""
        for u in self._call("GET", "/reverse_proxy/upstreams") or []:
            if u.get("address") == dial:
                return int(u.get("num_requests") or 0)
        return 0


def switch(
    client: Admin, route: Path, dial: str, health_path: str, drain_seconds: float, **where: str
) -> dict[str, Any]:
    """Route to ``dial``: rename it into the ``route`` file (host side), load the config only if the proxy
    lacks it, then wait (at most ``drain_seconds``) until no request is in flight through the proxy, so the
    old upstream's have finished. ``where``: listen, admin and route_file, for a Caddy outside its container.
    Returns what a deploy reports: the previous upstream, how long the drain took, what was left."""
    wanted = config(health_path, **where)
    loaded = client.loaded()  # first: a proxy that does not answer is not switched at all
    previous = read_route(route)
    write_route(route, dial)
    if loaded != wanted:
        client.load(wanted)
    started, left = time.monotonic(), 0
    if previous and previous != dial:
        upstream = str(routed_upstream(wanted))
        deadline = started + drain_seconds
        while (left := client.in_flight(upstream)) and time.monotonic() < deadline:
            time.sleep(0.05)
    return {"previous": previous or "", "drained_seconds": round(time.monotonic() - started, 3), "left_in_flight": left}


class RouteProvider(ResourceProvider):
    """Points the proxy at the API container that passed its gate. Delete does nothing: the proxy container
    goes with the stack, and a route removed from the program leaves the proxy where it was."""

    def _switch(self, props: dict[str, Any]) -> dict[str, Any]:
        admin, route = Admin(props["admin"]), Path(props["route"])
        try:
            done = switch(admin, route, props["upstream"], props["health_path"], float(props["drain_seconds"]))
        except ProxyError as exc:
            raise Refused(f"{exc}; the proxy was not switched to {props['upstream']}") from exc
        return {**props, **done}

    @reported()
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"route-{props['stack']}", self._switch(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("admin", "upstream", "health_path", "proxy", "route")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        # The state can be wrong about the proxy (an update killed after the switch but before its record,
        # a proxy restarted from an older config): switch again unless it routes where the program says.
        return DiffResult(changes=bool(changed) or live(news) != news["upstream"], replaces=[])

    @reported()
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._switch(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def live_upstream(admin: str, route: Path, health_path: str) -> str | None:
    """The upstream the proxy sends every request to now: the route file's, when the proxy runs our config;
    None when it runs another (a new proxy's 503). ProxyError when it does not answer."""
    loaded = Admin(admin, timeout=3).loaded()
    return read_route(route) if loaded == config(health_path) else None


def live(props: Mapping[str, Any]) -> str | None:
    """The Route's view of ``live_upstream``: None also when the proxy does not answer."""
    try:
        return live_upstream(str(props["admin"]), Path(props["route"]), str(props["health_path"]))
    except ProxyError:
        return None


class Route(pulumi.dynamic.Resource, module="fetchml", name="Route"):
    upstream: pulumi.Output[str]
    previous: pulumi.Output[str]
    drained_seconds: pulumi.Output[float]

    def __init__(
        self,
        name: str,
        *,
        stack: str,
        admin: str,
        route: str,
        upstream: str,
        health_path: str,
        proxy: pulumi.Input[str],
        gate: pulumi.Input[bool],
        drain_seconds: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "stack": stack,
            "admin": admin,
            "route": route,
            "upstream": upstream,
            "health_path": health_path,
            "proxy": proxy,
            "gate": gate,
            "drain_seconds": drain_seconds,
            "previous": None,
            "drained_seconds": None,
            "left_in_flight": None,
        }
        super().__init__(RouteProvider(), name, props, opts)


@dataclass(frozen=True)
class Routing:
    image: str | None  # what the proxy routes to; None: nothing, or it did not answer
    line: str  # says which, for status

    whole: bool = False  # on a swarm: ``image`` is what every task of the API and workers runs

    def running(self, apps: Mapping[str, host.AppContainer], replicas: int) -> str | None:
        """The release that serves: the routed one, when its API and workers all run."""
        if self.whole:
            return self.image
        return host.running_image(apps, replicas, self.image) if self.image else None


def routed(cfg: StackConfig, project_dir: Path) -> Routing:
    """Where the stack's proxy routes, for status, recover and the CLI."""
    prefix, url = cfg.name_prefix, cfg.proxy_admin_url
    if cfg.target == "swarm":  # no switch: the proxy follows the API's tasks (fetchml_infra.swarm)
        from fetchml_infra import swarm_status

        image = swarm_status.report(cfg)[1]
        return Routing(
            image, f"tasks.{prefix}-api through the swarm's DNS, all on {image or 'no single release'}", True
        )
    try:
        image = image_of(prefix, live_upstream(url, route_file(cfg, project_dir), cfg.health_path))
    except ProxyError as exc:
        return Routing(None, f"unknown: {exc} (is {prefix}-proxy running?)")
    return Routing(image, f"routes to api-{image}" if image else "routes nothing yet (answers 503)")


def route_file(cfg: StackConfig, project_dir: Path) -> Path:
    """The host side of the proxy's route file: ``proxyRouteDir`` (operators in several checkouts of one stack
    on one Docker host must all name the same directory), else the checkout's own, beside its state."""
    folder = Path(cfg.proxy_route_dir).expanduser() if cfg.proxy_route_dir else Path(".state", "proxy", cfg.stack)
    return (project_dir / folder / ROUTE_FILE).resolve()
