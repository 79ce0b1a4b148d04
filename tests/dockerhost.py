"""Read-only questions to the local Docker engine, for tests to check what Pulumi did."""

from __future__ import annotations

import json
import subprocess
from typing import Any


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """`docker <kind> inspect NAME` as a dict, or None when there is no such object."""
    done = subprocess.run(["docker", kind, "inspect", name], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    [obj] = json.loads(done.stdout)
    return dict(obj)


def container(name: str) -> dict[str, Any]:
    obj = inspect("container", name)
    assert obj is not None, f"container {name} does not exist"
    return obj


def identity(name: str) -> tuple[str, str]:
    """(id, start time): both stay the same only if the container was neither replaced nor restarted."""
    c = container(name)
    return c["Id"], c["State"]["StartedAt"]


def published(name: str, port: int) -> list[tuple[str, str]]:
    bindings = container(name)["HostConfig"]["PortBindings"].get(f"{port}/tcp") or []
    return [(b["HostIp"], b["HostPort"]) for b in bindings]


def containers_named(prefix: str) -> list[str]:
    """Names of the containers whose name starts with ``prefix``."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", f"name={prefix}"], capture_output=True, text=True
    ).stdout
    return [n for n in out.split() if n.startswith(prefix)]


def remove(kind: str, *names: str) -> None:
    """Best-effort clean-up of test leftovers."""
    for name in names:
        subprocess.run(
            ["docker", kind, "rm", "-f", name] if kind == "container" else ["docker", kind, "rm", name],
            capture_output=True,
        )
