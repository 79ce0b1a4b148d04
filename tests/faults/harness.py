"""Tools for causing faults on the real engine at a chosen moment, and for reading what the user noticed.

Timing comes from the Docker engine itself, asked over its socket every few milliseconds: "the old API
container is gone" is the moment between the delete and the create of a delete-before-replace. At that
moment the engine's whole process group is frozen (SIGSTOP), so the step in flight cannot slip past, and
then the fault is applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests import dockerhost
from tests.e2e.project import Project

DOCKER_SOCKET = "/var/run/docker.sock"


def docker_api(path: str) -> Any:
    """GET on the Docker engine's API; None on 404."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=DOCKER_SOCKET), timeout=5) as client:
        r = client.get(f"http://docker{path}")
    return None if r.status_code == 404 else r.json()


def container_id(name: str) -> str | None:
    found = docker_api(f"/containers/{name}/json")
    return None if found is None else str(found["Id"])


def ran(p: Project, image: str) -> bool:
    """Has any app container of the stack started with ``image`` (a created-but-never-started one ran nothing)?"""
    for name in (p.api(image), p.worker(image)):
        found = docker_api(f"/containers/{name}/json")
        if found is None:
            continue
        started = not str(found["State"].get("StartedAt", "0001-")).startswith("0001-")
        if started and f"FETCHML_VERSION={image}" in (found["Config"].get("Env") or []):
            return True
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def start_cli(p: Project, *args: str) -> subprocess.Popen[str]:
    """`fetchml-infra ARGS --stack S` in the background, as an operator's terminal would run it."""
    return subprocess.Popen(
        ["fetchml-infra", *args, "--stack", p.stack_name],
        cwd=p.root,
        env=p.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def engine_of(cli_pid: int, timeout: float = 60) -> int:
    """The pid of the `pulumi up` the CLI started."""
    found: list[int] = []

    def look() -> bool:
        for kid in _children(cli_pid):
            try:
                argv = Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"pulumi") and b"up" in argv:
                found.append(kid)
                return True
        return False

    wait_for(look, timeout, "the CLI to start `pulumi up`", step=0.01)
    return found[0]


def deploy_in_background(
    p: Project, image: str, *args: str
) -> tuple[subprocess.Popen[str], int, dict[str, str | None]]:
    """Start `fetchml-infra deploy`; returns the CLI, its engine's pid and the app container ids before."""
    old = app_ids(p)
    cli = start_cli(p, "deploy", "--image", image, *args)
    return cli, engine_of(cli.pid), old


def until_engine_locked(p: Project) -> None:
    """Wait until the engine holds the stack's lock: the moment an update has really begun (the engine
    starts a moment before it takes the lock, and a busy machine can stretch that moment)."""
    locks = Path(p.env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi" / "locks"
    wait_for(lambda: any(locks.rglob("*.json")), 60, "the engine to take the stack's lock", step=0.01)


def until_routed(p: Project, image: str) -> None:
    """Wait for the moment the proxy sends requests to ``image``'s API (before the old one is deleted)."""
    wait_for(lambda: serving(p) == image, 120, f"the proxy to route {image}", step=0.02)


def freeze(pid: int) -> None:
    """Stop the engine and everything in its session (language host, providers) where they stand."""
    os.killpg(os.getpgid(pid), signal.SIGSTOP)


def thaw(pid: int) -> None:
    os.killpg(os.getpgid(pid), signal.SIGCONT)


def kill_frozen_engine(pid: int) -> None:
    """SIGKILL the engine itself, then let its plugins run on to notice it is gone."""
    group = os.getpgid(pid)
    os.kill(pid, signal.SIGKILL)
    os.killpg(group, signal.SIGCONT)


def stop_dockerd() -> None:
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=True)
    wait_for(lambda: subprocess.run(["pgrep", "-x", "dockerd"]).returncode != 0, 60, "dockerd to stop", step=0.2)


def start_dockerd() -> None:
    """The project's own script starts it again, as bootstrap does."""
    subprocess.run(["scripts/docker-engine.sh"], cwd=Path(__file__).parents[2], check=True, capture_output=True)


def serving(p: Project) -> str | None:
    """The version the API answers with on its host port, or None when nothing healthy answers."""
    try:
        r = httpx.get(f"http://127.0.0.1:{p.ports['api']}/health", timeout=3)
    except httpx.HTTPError:
        return None
    return str(r.json().get("version")) if r.status_code == 200 else None


def wait_serving(p: Project, version: str, timeout: float = 30) -> None:
    wait_for(lambda: serving(p) == version, timeout, f"the API to serve {version}", step=0.2)


def app_ids(p: Project) -> dict[str, str | None]:
    """Name -> id of every app container of the stack (one API and its workers per image)."""
    names = [*dockerhost.containers_named(f"{p.prefix}-api-"), *dockerhost.containers_named(f"{p.prefix}-worker-")]
    return {n: container_id(n) for n in sorted(names)}


def moves(p: Project) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()]


def denied(p: Project) -> list[str]:
    import json

    try:
        return list(json.loads(p.config("deniedImages")))
    except Exception:
        return []
