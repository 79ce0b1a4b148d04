"""What the Docker host has: the names and ports a stack needs, who holds them, and which app containers run.

The CLI asks these questions before a deploy changes anything (a needed name or port held by something the
stack does not manage is a refusal) and after a failure (what really runs now). ``needs``, ``managed``,
``name_conflicts``, ``running_image`` and ``describe`` are pure; the rest are thin edges over the docker
client, a socket bind and ``ss``.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fetchml_infra.config import StackConfig

# Pulumi type -> kind; a docker volume's Pulumi id is its name, a container's or network's is the docker id.
KINDS = {f"docker:index/{k}:{k.title()}": k for k in ("container", "network", "volume")}
PORT_SETTINGS = {"api": "apiHostPort", "redis": "redisHostPort", "minio": "minioHostPort"}
WILDCARDS = {"", "*", "0.0.0.0", "::"}
APP_NAME = r"(api|worker-[0-9]+)"


class HostError(RuntimeError):
    """The docker client failed in a way that is not an answer (no engine, no client, bad output)."""


@dataclass(frozen=True)
class Needs:
    stack: str
    containers: tuple[str, ...]
    networks: tuple[str, ...]
    volumes: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]  # (bind address, host port, "api" | "redis" | "minio")


def needs(cfg: StackConfig) -> Needs:
    p = cfg.name_prefix
    workers = tuple(f"{p}-worker-{i}" for i in range(1, cfg.worker_replicas + 1))
    return Needs(
        stack=cfg.stack,
        containers=(f"{p}-api", *workers, f"{p}-redis", f"{p}-minio"),
        networks=(f"{p}-net",),
        volumes=(f"{p}-redis-data", f"{p}-minio-data"),
        ports=(
            (cfg.bind_address, cfg.api_host_port, "api"),
            (cfg.bind_address, cfg.redis_host_port, "redis"),
            (cfg.bind_address, cfg.minio_host_port, "minio"),
        ),
    )


def managed(deployment: Mapping[str, Any]) -> dict[str, set[str]]:
    """Docker objects in a stack's state (``pulumi stack export``'s deployment): container and network ids,
    volume names."""
    found: dict[str, set[str]] = {"container": set(), "network": set(), "volume": set()}
    for resource in deployment.get("resources") or []:
        kind = KINDS.get(str(resource.get("type")))
        if kind is not None and resource.get("id"):
            found[kind].add(str(resource["id"]))
    return found


def _named(needs: Needs) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return ("container", needs.containers), ("network", needs.networks), ("volume", needs.volumes)


REMOVE = {"container": "docker rm -f", "network": "docker network rm", "volume": "docker volume rm"}
MOUNTED = "the deploy would mount its data as the stack's own (a volume left by a destroy, or another's)"
NOT_CREATED = "the deploy would fail to create it, possibly after removing the running app"


def name_conflicts(
    needs: Needs, managed: Mapping[str, set[str]], existing: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """One message per needed name that exists on the host but is not the stack's own object."""
    problems = []
    for kind, names in _named(needs):
        for name in names:
            oid = existing.get(kind, {}).get(name)
            if oid is None or oid in managed.get(kind, set()):
                continue
            short, effect = ("", MOUNTED) if kind == "volume" else (f" ({oid[:12]})", NOT_CREATED)
            problems.append(
                f"{kind} '{name}'{short} exists but stack '{needs.stack}' does not manage it; {effect}. "
                f"Remove it with `{REMOVE[kind]} {name}` if it is yours to remove, or give the stack another "
                f"namePrefix (`pulumi config set namePrefix <prefix> --stack {needs.stack}`)."
            )
    return problems


def _docker(*args: str, timeout: float = 30.0, ignore: str | None = None) -> str:
    """stdout of `docker ARGS`; HostError when there is no client, no answer in time, or a failure other
    than stderr lines containing ``ignore``."""
    docker, what = shutil.which("docker"), f"`docker {' '.join(a for a in args[:2] if a[:1] != '-')}`"
    if docker is None:
        raise HostError("the docker client is not on PATH; run scripts/bootstrap")
    try:
        done = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{what} did not answer within {timeout:g}s") from exc
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip() and not (ignore and ignore in line)]
    if done.returncode != 0 and (errors or ignore is None):
        raise HostError(f"{what} failed: {(errors or [f'exit code {done.returncode}'])[-1]}")
    return done.stdout


def _inspect(ids: list[str]) -> list[dict[str, Any]]:
    """`docker container inspect` of the containers that still exist."""
    return list(json.loads(_docker("container", "inspect", *ids, ignore="No such container"))) if ids else []


LIST = {
    "container": ("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"),
    "network": ("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"),
    "volume": ("volume", "ls", "--format", "{{.Name}} {{.Name}}"),  # a volume's id is its name
}


def existing(needs: Needs) -> dict[str, dict[str, str]]:
    """{kind: {name: id}} of the needed names that exist on the host."""
    found: dict[str, dict[str, str]] = {}
    for kind, names in _named(needs):
        # Name filters match parts of names (ORed when repeated): keep exact names only.
        out = _docker(*LIST[kind], *(f"--filter=name={n}" for n in names)) if names else ""
        pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
        found[kind] = {name: oid for oid, name in pairs if name in names}
    return found


def _overlap(a: str, b: str) -> bool:
    a, b = a.strip("[]"), b.strip("[]")
    return a == b or a in WILDCARDS or b in WILDCARDS


def published(objs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str, int]]:
    """(container id, name, host ip, host port) of every port the inspected containers publish."""
    out: set[tuple[str, str, str, int]] = set()
    for o in objs:
        cid, name = str(o["Id"]), str(o.get("Name", "")).lstrip("/")
        maps = [(o.get("NetworkSettings") or {}).get("Ports"), (o.get("HostConfig") or {}).get("PortBindings")]
        for bindings in (b for m in maps for b in (m or {}).values()):
            for b in bindings or []:
                if str(b.get("HostPort", "")).isdigit():
                    out.add((cid, name, str(b.get("HostIp", "")), int(b["HostPort"])))
    return sorted(out)


def listener(ss_output: str, address: str, port: int) -> str | None:
    """'pid N (command)' of the process `ss -Hltnp` shows listening on address:port, if it names one."""
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        host, _, lport = fields[3].rpartition(":")
        if lport != str(port) or not _overlap(host.split("%")[0], address):
            continue
        m = re.search(r'\("([^"]+)",pid=(\d+)', line)
        return f"pid {m.group(2)} ({m.group(1)})" if m else "a process ss cannot name (not root?)"
    return None


def _bind_error(address: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would: TIME_WAIT is not "busy"
        try:
            s.bind((address, port))
        except OSError as exc:
            return exc
    return None


def port_conflicts(needs: Needs, managed_container_ids: set[str]) -> list[str]:
    """One message per needed host port held by something the stack does not manage (with --iptables=false,
    docker-proxy holds a published port, so a managed container publishing it is fine)."""
    problems = []
    publishers: list[tuple[str, str, str, int]] | None = None
    for address, port, which in needs.ports:
        where, setting = f"{address}:{port}", PORT_SETTINGS.get(which, which)
        fix = f"run `pulumi config set {setting} <free port> --stack {needs.stack}`"
        error = _bind_error(address, port)
        if error is None or error.errno == errno.EACCES:  # a privileged port: the engine binds it as root
            continue
        if error.errno != errno.EADDRINUSE:
            problems.append(f"{where} ({setting}) cannot be bound: {error.strerror}; check bindAddress, or {fix}")
            continue
        if publishers is None:
            publishers = published(_inspect(_docker("ps", "-q", "--no-trunc").split()))
        holders = [(cid, name) for cid, name, ip, p in publishers if p == port and _overlap(ip, address)]
        if any(cid in managed_container_ids for cid, _ in holders):
            continue
        if holders:
            cid, name = holders[0]
            holder = f"container '{name}' ({cid[:12]}), which stack '{needs.stack}' does not manage"
        else:
            ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True) if shutil.which("ss") else None
            holder = (listener(ss.stdout, address, port) if ss else None) or "a process ss does not show"
        problems.append(f"{where} ({setting}) is in use by {holder}; stop it, or {fix}")
    return problems


def engine_problem(timeout: float = 10.0) -> str | None:
    """None when the Docker engine answers `docker version`; else one line saying what failed."""
    try:
        version = _docker("version", "--format", "{{.Server.Version}}", timeout=timeout)
    except HostError as exc:
        return f"the Docker engine does not answer: {exc}"
    return None if version.strip() else "the Docker engine does not answer: `docker version` names no server"


@dataclass(frozen=True)
class AppContainer:
    name: str
    id: str
    image: str  # its FETCHML_VERSION ("" if it has none)
    running: bool
    started: bool = True  # it has run at least once (a create cut short leaves one that never did)
    restarts: int = 0  # Docker's RestartCount: a container that keeps exiting is crash-looping


def app_containers(prefix: str) -> dict[str, AppContainer]:
    """Every container named exactly <prefix>-api or <prefix>-worker-<n>, keyed 'api', 'worker-<n>'."""
    exact = re.compile(rf"^{re.escape(prefix)}-{APP_NAME}$")
    apps = {}
    for o in _inspect(_docker("ps", "-a", "-q", "--no-trunc", "--filter", f"name={prefix}-").split()):
        m = exact.match(str(o.get("Name", "")).lstrip("/"))
        if m is None:
            continue
        env = [str(e).partition("=") for e in (o.get("Config") or {}).get("Env") or []]
        version = next((v for k, _, v in env if k == "FETCHML_VERSION"), "")
        state = o.get("State") or {}
        running = bool(state.get("Running")) and not state.get("Restarting")
        started = not str(state.get("StartedAt") or "0001-").startswith("0001-")
        restarts = int(o.get("RestartCount") or 0)
        apps[m.group(1)] = AppContainer(m.group(0), str(o["Id"]), version, running, started, restarts)
    return apps


def _roles(apps: Mapping[str, AppContainer], replicas: int) -> list[str]:
    wanted = ["api", *(f"worker-{i}" for i in range(1, replicas + 1))]
    extra = sorted((r for r in apps if r not in wanted), key=lambda r: int(r.rpartition("-")[2] or 0))
    return wanted + extra


def running_image(apps: Mapping[str, AppContainer], replicas: int) -> str | None:
    """The one tag the api and worker-1..replicas all run, or None if one is missing, stopped or differs."""
    wanted = _roles({}, replicas)
    if not all(r in apps and apps[r].running for r in wanted):
        return None
    tags = {apps[r].image for r in wanted}
    return tags.pop() if len(tags) == 1 and "" not in tags else None


def orphans(apps: Mapping[str, AppContainer], managed_ids: set[str]) -> list[AppContainer]:
    """App containers an interrupted update created for this stack but never recorded: the stack's names, a
    FetchML image (it carries FETCHML_VERSION), unknown to the state. The provider connects networks after
    the create, so a create cut short can sit on any network. A stray container of someone else's with a
    clashing name carries no FetchML version: that stays a name conflict and is never removed."""
    return [c for c in apps.values() if c.id not in managed_ids and c.image]


def images_other_than(apps: Mapping[str, AppContainer], image: str | None) -> list[str]:
    """The images app containers have run besides ``image`` (all of them for None), sorted: what a move that no
    entry records left behind. A container that never started ran nothing."""
    return sorted({c.image for c in apps.values() if c.image and c.started and c.image != image})


def describe(apps: Mapping[str, AppContainer], replicas: int) -> str:
    """One line: 'api sha-1a2b3c4 (running), worker-1 missing, worker-2 sha-5d6e7f8 (stopped, extra)'."""
    parts = []
    wanted = _roles({}, replicas)
    for role in _roles(apps, replicas):
        app = apps.get(role)
        if app is None:
            parts.append(f"{role} missing")
            continue
        crashing = not app.running and app.restarts > 0
        state = "running" if app.running else (f"crash-looping, {app.restarts} restarts" if crashing else "stopped")
        state += "" if role in wanted else ", extra"
        parts.append(f"{role} {app.image or 'without FETCHML_VERSION'} ({state})")
    return ", ".join(parts)


def remove_container(container_id: str) -> None:
    """Remove one container (recover: an app container a cut-off create left behind, unknown to the state)."""
    _docker("rm", "-f", container_id)
