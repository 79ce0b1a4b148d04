"""The front proxy: Caddy owns the API's host port, and a deploy points it at one API container.

Blue/green in three steps, each a resource of the stack: the new API container starts beside the old one
(no host port), the HealthGate checks it directly, and only then does the Route below load a Caddy config
that sends every new request to it and waits for the old container's requests in flight to finish. Pulumi
deletes the old container after that. A release that fails its gate is never routed: the Route does not run.

``config``, ``routed_upstream`` and ``image_of`` are pure; ``Admin`` is the thin edge over Caddy's admin API.
A multi-host engine keeps this shape: the upstream becomes the replicated API's service name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from fetchml_infra import host
from fetchml_infra.provider_errors import Refused, reported

SERVER = "fetchml"
LISTEN_PORT = 8080  # inside the proxy container; the API's host port maps here
ADMIN_PORT = 2019  # Caddy's admin API, published on loopback only
GRACE = "30s"  # how long a replaced config's requests in flight may run on


def upstream(prefix: str, image: str, port: int) -> str:
    """Where the proxy dials an image's API: its container name on the stack network."""
    return f"{prefix}-api-{image}:{port}"


def image_of(prefix: str, dial: str | None) -> str | None:
    """The image an upstream address belongs to (the inverse of ``upstream``), None if it is not one."""
    name = (dial or "").rpartition(":")[0]
    head = f"{prefix}-api-"
    return name[len(head) :] if name.startswith(head) and len(name) > len(head) else None


def config(
    dial: str, health_path: str, *, listen: str = f":{LISTEN_PORT}", admin: str = f"0.0.0.0:{ADMIN_PORT}"
) -> dict[str, Any]:
    """The whole Caddy config that routes every request to ``dial``. Loaded in one request, so the switch is
    atomic: a request goes to the old config's upstream or to the new one, never nowhere."""
    proxy = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial}],
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
    """The upstream a loaded config routes to; None for the image's initial config (a 503, nothing routed)."""
    try:
        handler = loaded["apps"]["http"]["servers"][SERVER]["routes"][0]["handle"][0]
        return str(handler["upstreams"][0]["dial"]) if handler.get("handler") == "reverse_proxy" else None
    except (KeyError, IndexError, TypeError):
        return None


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


def switch(client: Admin, dial: str, health_path: str, drain_seconds: float, **where: str) -> dict[str, Any]:
    """Route to ``dial``, then wait (at most ``drain_seconds``) until the previous upstream has no request
    in flight. Returns what a deploy reports: the previous upstream, how long the drain took, what was left.
    ``where``: the listen and admin addresses, for a Caddy that is not in the proxy container."""
    previous = routed_upstream(client.loaded())
    client.load(config(dial, health_path, **where))
    started, left = time.monotonic(), 0
    if previous and previous != dial:
        deadline = started + drain_seconds
        while (left := client.in_flight(previous)) and time.monotonic() < deadline:
            time.sleep(0.1)
    return {"previous": previous or "", "drained_seconds": round(time.monotonic() - started, 3), "left_in_flight": left}


class RouteProvider(ResourceProvider):
    """Points the proxy at the API container that passed its gate. Delete does nothing: the proxy container
    goes with the stack, and a route removed from the program leaves the proxy where it was."""

    def _switch(self, props: dict[str, Any]) -> dict[str, Any]:
        admin = Admin(props["admin"])
        try:
            done = switch(admin, props["upstream"], props["health_path"], float(props["drain_seconds"]))
        except ProxyError as exc:
            raise Refused(f"{exc}; the proxy was not switched to {props['upstream']}") from exc
        return {**props, **done}

    @reported()
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"route-{props['stack']}", self._switch(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("admin", "upstream", "health_path", "proxy")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        # The state can be wrong about the proxy (an update killed after the switch but before its record,
        # a proxy restarted from an older config): switch again unless it routes where the program says.
        return DiffResult(changes=bool(changed) or live(news) != news["upstream"], replaces=[])

    @reported()
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._switch(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def live(props: Mapping[str, Any]) -> str | None:
    """The upstream the proxy routes to now; None when nothing is routed or it does not answer."""
    try:
        return routed_upstream(Admin(str(props["admin"]), timeout=3).loaded())
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


def admin_url(bind_address: str, port: int) -> str:
    """The admin API stays on loopback whatever bindAddress says: it reconfigures the proxy."""
    host = "[::1]" if bind_address == "::1" else "127.0.0.1"
    return f"http://{host}:{port}"


def routed_image(prefix: str, admin: str) -> str | None:
    """The image the proxy routes to now; None when nothing is routed. ProxyError when it does not answer."""
    return image_of(prefix, routed_upstream(Admin(admin, timeout=3).loaded()))


@dataclass(frozen=True)
class Routing:
    image: str | None  # what the proxy routes to; None: nothing, or it did not answer
    line: str  # says which, for status

    def running(self, apps: Mapping[str, host.AppContainer], replicas: int) -> str | None:
        """The release that serves: the routed one, when its API and workers all run."""
        return host.running_image(apps, replicas, self.image) if self.image else None


def routed(prefix: str, bind_address: str, admin_port: int) -> Routing:
    """Where the stack's proxy routes, for status, recover and the CLI."""
    url = admin_url(bind_address, admin_port)
    try:
        image = routed_image(prefix, url)
    except ProxyError as exc:
        return Routing(None, f"unknown: {exc} (is {prefix}-proxy running?)")
    return Routing(image, f"routes to api-{image}" if image else "routes nothing yet (answers 503)")
