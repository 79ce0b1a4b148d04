"""What the Docker host has: the names and ports a stack needs, who holds them, and which app containers run.

The CLI asks these questions before a deploy changes anything (a needed name or port held by something the
stack does not manage is a refusal) and after a failure (what really runs now). ``needs``, ``managed``,
``name_conflicts``, ``running_image`` and ``describe`` are pure; the rest are thin edges over the docker
client, a socket bind and ``ss``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fetchml_infra.config import StackConfig

# Pulumi type -> kind; a docker volume's Pulumi id is its name, a container's or network's is the docker id.
KINDS = {f"docker:index/{k}:{k.title()}": k for k in ("container", "network", "volume")}
TAG = r"sha-[0-9a-f]{7,40}"
APP_NAME = rf"api-(?P<api>{TAG})|worker-(?P<worker>{TAG})-(?P<n>[0-9]+)"  # one API and its workers per image


class HostError(RuntimeError):
    """The docker client failed in a way that is not an answer (no engine, no client, bad output)."""


@dataclass(frozen=True)
class Needs:
    stack: str
    containers: tuple[str, ...]
    networks: tuple[str, ...]
    volumes: tuple[str, ...]
    ports: tuple[tuple[str, int, str], ...]  # (bind address, host port, a PORT_SETTINGS key)


def api_name(prefix: str, image: str) -> str:
    """The container name of ``image``'s API (see APP_NAME)."""
    return f"{prefix}-api-{image}"


def worker_name(prefix: str, image: str, n: int) -> str:
    return f"{prefix}-worker-{image}-{n}"


def needs(cfg: StackConfig) -> Needs:
    p, tag = cfg.name_prefix, cfg.image
    workers = tuple(worker_name(p, tag, i) for i in range(1, cfg.worker_replicas + 1))
    return Needs(
        stack=cfg.stack,
        containers=(api_name(p, tag), *workers, f"{p}-proxy", f"{p}-redis", f"{p}-minio", f"{p}-postgres"),
        networks=(f"{p}-net",),
        volumes=(f"{p}-redis-data", f"{p}-minio-data", f"{p}-postgres-data"),
        ports=(
            (cfg.bind_address, cfg.api_host_port, "api"),
            (cfg.proxy_admin_host, cfg.proxy_admin_port, "proxy-admin"),
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


_ON_SWARM: list[bool] = [False]  # set by use_engine: the stack's data parts are swarm services


def use_engine(cfg: StackConfig) -> None:
    """Point this process's `docker` commands at the stack's engine (on a swarm, its manager)."""
    if cfg.docker_host:
        os.environ["DOCKER_HOST"] = cfg.docker_host
    _ON_SWARM[0] = cfg.target == "swarm"


def data_container(name: str) -> str:
    """What `docker exec` reaches for a data part named ``name``: that container on one host; on a swarm, the
    running task of the service of that name (on the manager, which is the data node), else ``name``."""
    if not _ON_SWARM[0]:
        return name
    label = f"label=com.docker.swarm.service.name={name}"
    ids = run_docker("ps", "-q", "--filter", label, "--filter", "status=running").split()
    return ids[0] if ids else name


def run_docker(*args: str, timeout: float = 30.0, ignore: str | None = None, engine: str = "") -> str:
    """stdout of `docker ARGS`; HostError when there is no client, no answer in time, or a failure other
    than stderr lines containing ``ignore``. ``engine``: a Docker host URL, for a process whose environment
    does not name the stack's engine (a provider's)."""
    docker, what = shutil.which("docker"), f"`docker {' '.join(a for a in args[:2] if a[:1] != '-')}`"
    if docker is None:
        raise HostError("the docker client is not on PATH; run scripts/bootstrap")
    try:
        env = {**os.environ, "DOCKER_HOST": engine} if engine else None
        done = subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"{what} did not answer within {timeout:g}s") from exc
    errors = [line.strip() for line in done.stderr.splitlines() if line.strip() and not (ignore and ignore in line)]
    if done.returncode != 0 and (errors or ignore is None):
        raise HostError(f"{what} failed: {(errors or [f'exit code {done.returncode}'])[-1]}")
    return done.stdout


def inspect_containers(ids: list[str]) -> list[dict[str, Any]]:
    """`docker container inspect` of the containers that still exist."""
    return list(json.loads(run_docker("container", "inspect", *ids, ignore="No such container"))) if ids else []


def existing_containers(ids: Iterable[str]) -> set[str]:
    """The ids among ``ids`` whose container still exists."""
    return {str(o["Id"]) for o in inspect_containers(sorted(set(ids)))}


def container_address(name: str) -> str | None:
    """The container's address on its (first) network now; None when it has none or does not answer."""
    try:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        out = run_docker("container", "inspect", "-f", fmt, name)
    except HostError:
        return None
    words = out.split()
    return words[0] if words else None


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
        out = run_docker(*LIST[kind], *(f"--filter=name={n}" for n in names)) if names else ""
        pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
        found[kind] = {name: oid for oid, name in pairs if name in names}
    return found


def engine_problem(timeout: float = 10.0) -> str | None:
    """None when the Docker engine answers `docker version`; else one line saying what failed."""
    try:
        version = run_docker("version", "--format", "{{.Server.Version}}", timeout=timeout)
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
    role: str = "api"  # "api" or "worker-<n>"
    tag: str = ""  # the image its name carries


def app_containers(prefix: str) -> dict[str, AppContainer]:
    """Every container named <prefix>-api-<image> or <prefix>-worker-<image>-<n>, keyed by that suffix."""
    if _ON_SWARM[0]:  # the tasks of the app's services, across the cluster
        from fetchml_infra.swarm_status import app_tasks

        return app_tasks(prefix)
    exact = re.compile(rf"^{re.escape(prefix)}-(?:{APP_NAME})$")
    apps = {}
    for o in inspect_containers(run_docker("ps", "-a", "-q", "--no-trunc", "--filter", f"name={prefix}-").split()):
        name = str(o.get("Name", "")).lstrip("/")
        m = exact.match(name)
        if m is None:
            continue
        env = [str(e).partition("=") for e in (o.get("Config") or {}).get("Env") or []]
        version = next((v for k, _, v in env if k == "FETCHML_VERSION"), "")
        state = o.get("State") or {}
        running = bool(state.get("Running")) and not state.get("Restarting")
        started = not str(state.get("StartedAt") or "0001-").startswith("0001-")
        restarts = int(o.get("RestartCount") or 0)
        role, tag = ("api", m["api"]) if m["api"] else (f"worker-{m['n']}", m["worker"])
        apps[name[len(prefix) + 1 :]] = AppContainer(name, str(o["Id"]), version, running, started, restarts, role, tag)
    return apps


def _roles(replicas: int) -> list[str]:
    return ["api", *(f"worker-{i}" for i in range(1, replicas + 1))]


def _rank(role: str) -> int:
    """The API first, then workers by number (worker-10 after worker-3)."""
    return 0 if role == "api" else int(role.rpartition("-")[2])


def complete(apps: Mapping[str, AppContainer], replicas: int) -> list[str]:
    """Images whose API and workers 1..replicas all run it, each container under its own image's name."""
    tags = sorted({c.tag for c in apps.values()})
    by = {(c.tag, c.role): c for c in apps.values()}
    whole = []
    for tag in tags:
        mine = [by.get((tag, r)) for r in _roles(replicas)]
        if all(c is not None and c.running and c.image == tag for c in mine):
            whole.append(tag)
    return whole


def running_image(apps: Mapping[str, AppContainer], replicas: int, routed: str | None = None) -> str | None:
    """The image the app runs: the one whose API and workers all run, and which the proxy routes to when
    ``routed`` is known. None when no image is whole, or more than one is and nothing says which."""
    whole = complete(apps, replicas)
    if routed is not None:
        return routed if routed in whole else None
    return whole[0] if len(whole) == 1 else None


def orphans(apps: Mapping[str, AppContainer], managed_ids: set[str]) -> list[AppContainer]:
    """App containers an interrupted update created for this stack but never recorded: the stack's names, a
    FetchML image (it carries FETCHML_VERSION), unknown to the state. The provider connects networks after
    the create, so a create cut short can sit on any network. A stray container of someone else's with a
    clashing name carries no FetchML version: that stays a name conflict and is never removed."""
    return [c for c in apps.values() if c.id not in managed_ids and c.image]


def images_other_than(apps: Mapping[str, AppContainer], *images: str | None) -> list[str]:
    """The images app containers have run besides ``images``, sorted: what a move that no entry records left
    behind. A container that never started ran nothing."""
    return sorted({c.image for c in apps.values() if c.image and c.started and c.image not in images})


def describe(apps: Mapping[str, AppContainer], replicas: int, image: str | None = None) -> str:
    """One line: 'api sha-1a2b3c4 (running), worker-1 sha-1a2b3c4 (stopped), worker-2 sha-1a2b3c4 missing',
    with the roles ``image`` lacks marked missing."""
    parts = []
    wanted = _roles(replicas)
    for c in sorted(apps.values(), key=lambda c: (c.tag != image, c.tag, _rank(c.role))):
        crashing = not c.running and c.restarts > 0
        state = "running" if c.running else (f"crash-looping, {c.restarts} restarts" if crashing else "stopped")
        extra = ", extra" if c.role not in wanted else ""
        parts.append(f"{c.role} {c.image or 'without FETCHML_VERSION'} ({state}{extra})")
    have = {c.role for c in apps.values() if c.tag == image}
    parts += [f"{r} {image} missing" for r in wanted if image and r not in have]
    return ", ".join(parts) or "no app containers"


def remove_container(container_id: str) -> None:
    """Remove one container (recover: an app container a cut-off create left behind, unknown to the state)."""
    run_docker("rm", "-f", container_id)
