"""What a swarm is really running, against what the stack says (``fetchml-infra status`` on ``target: swarm``).

``findings`` is pure: the services' specs and tasks and the nodes in, the disagreements a person must hear
out (a spec the swarm or someone else changed, tasks missing or moved off a node that died, a data service
off its data node). ``look`` is the thin edge over `docker service inspect / ps` and `docker node ls`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fetchml_infra import swarm
from fetchml_infra.config import StackConfig
from fetchml_infra.host import AppContainer, HostError, run_docker
from fetchml_infra.swarm_gate import bare_image, task_state

APP_PARTS = ("api", "worker")
DATA_PARTS = ("redis", "minio", "postgres", "proxy")


@dataclass(frozen=True)
class Service:
    name: str
    image: str  # the spec's image, without a digest
    replicas: int
    update: str  # UpdateStatus.State, "" before any update
    tasks: tuple[tuple[str, str], ...]  # (node hostname, image) of each running task


@dataclass(frozen=True)
class Node:
    hostname: str
    status: str  # Ready | Down | Unknown
    role: str  # fetchml.role label


def findings(services: Mapping[str, Service | None], nodes: Sequence[Node], images: Mapping[str, str]) -> list[str]:
    """``images``: part -> the image the stack's config declares (api and worker)."""
    out: list[str] = []
    down = sorted(n.hostname for n in nodes if n.status != "Ready")
    if down:
        out.append(f"node(s) {', '.join(down)} not ready: their tasks are rescheduled on the others")
    role = {n.hostname: n.role for n in nodes}
    for part, service in services.items():
        if service is None:
            out.append(f"service for {part} is missing")
            continue
        wanted = images.get(part)
        if wanted and service.image != wanted:
            how = (
                "the swarm rolled it back by itself"
                if service.update.startswith("rollback")
                else "changed outside Pulumi"
            )
            out.append(
                f"{service.name} runs {service.image}, the stack declares {wanted} ({how}; `deploy` converges it)"
            )
        if len(service.tasks) != service.replicas:
            out.append(f"{service.name}: {len(service.tasks)} of {service.replicas} tasks running")
        others = sorted({image for _, image in service.tasks if image != service.image})
        if others:
            out.append(
                f"{service.name}: tasks still run {', '.join(others)} (update {service.update or 'not started'})"
            )
        if part in DATA_PARTS and any(role.get(node) != "data" for node, _ in service.tasks):
            out.append(f"{service.name} runs off the data node: its volume there is not the stack's data")
    return out


def describe(services: Mapping[str, Service | None]) -> str:
    """One line per app service: image, tasks per node, update state."""
    lines = []
    for part in APP_PARTS:
        s = services.get(part)
        if s is None:
            continue
        per_node: dict[str, int] = {}
        for node, _ in s.tasks:
            per_node[node] = per_node.get(node, 0) + 1
        spread = ", ".join(f"{n}: {k}" for n, k in sorted(per_node.items())) or "none"
        lines.append(f"{s.name} {s.image}, {len(s.tasks)}/{s.replicas} running ({spread}), update {s.update or '-'}")
    return "; ".join(lines)


def running_image(services: Mapping[str, Service | None]) -> str | None:
    """The release the app runs: the api's and workers' spec image when every running task agrees."""
    found = {s.image for p in APP_PARTS if (s := services.get(p))} | {
        image for p in APP_PARTS if (s := services.get(p)) for _, image in s.tasks
    }
    tag = {i.rpartition(":")[2] for i in found}
    return tag.pop() if len(tag) == 1 else None


def report(cfg: StackConfig) -> tuple[list[tuple[str, str]], str | None, list[str]]:
    """Status's rows for a swarm stack, the release it runs, and what disagrees."""
    try:
        services, nodes = look(cfg.name_prefix)
    except HostError as exc:
        return [("swarm", f"the manager did not answer: {exc}")], None, [f"swarm manager unreachable: {exc}"]
    nodes_line = ", ".join(f"{n.hostname} ({n.role or 'no role'}) {n.status}" for n in nodes)
    rows = [("services", describe(services)), ("nodes", nodes_line)]
    found = findings(services, nodes, {"api": cfg.api_image, "worker": cfg.worker_image})
    return rows, running_image(services), found


# --- the edge ------------------------------------------------------------------------------------------


def look(prefix: str) -> tuple[dict[str, Service | None], list[Node]]:
    names = swarm.service_names(prefix)
    nodes = [
        Node(str(n["Description"]["Hostname"]), str(n["Status"]["State"]).title(), _role(n))  # type: ignore[index]
        for n in _inspect("node", *run_docker("node", "ls", "-q").split())
    ]
    services: dict[str, Service | None] = {}
    for part in (*APP_PARTS, *DATA_PARTS):
        found = _inspect("service", names[part])
        if not found:
            services[part] = None
            continue
        spec: dict[str, Any] = dict(found[0]["Spec"])  # type: ignore[call-overload]
        rows = run_docker("service", "ps", names[part], "--filter", "desired-state=running", "--format", "{{json .}}")
        tasks = [json.loads(r) for r in rows.splitlines() if r.strip()]
        running = tuple(
            (str(t.get("Node")), bare_image(str(t.get("Image")))) for t in tasks if task_state(t) == "Running"
        )
        services[part] = Service(
            names[part],
            bare_image(str(spec["TaskTemplate"]["ContainerSpec"]["Image"])),
            int(spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 1)),
            str((found[0].get("UpdateStatus") or {}).get("State") or ""),  # type: ignore[attr-defined]
            running,
        )
    return services, nodes


def _inspect(kind: str, *names: str) -> list[dict[str, object]]:
    if not names:
        return []
    try:
        return list(json.loads(run_docker(kind, "inspect", *names, ignore="no such") or "[]"))
    except HostError:
        return []


def _role(node: Mapping[str, object]) -> str:
    spec = node.get("Spec")
    labels = spec.get("Labels") if isinstance(spec, Mapping) else None
    return str((labels or {}).get("fetchml.role", "")) if isinstance(labels, Mapping) or labels is None else ""


def app_tasks(prefix: str) -> dict[str, AppContainer]:
    """The API's and workers' tasks, past and present, as host.app_containers gives containers on one host
    (keyed ``api.<slot>`` / ``worker.<slot>``, the newest task of each slot): what a move started."""
    out: dict[str, AppContainer] = {}
    for part in APP_PARTS:
        name = swarm.service_names(prefix)[part]
        try:
            rows = run_docker("service", "ps", name, "--no-trunc", "--format", "{{json .}}", ignore="no such service")
        except HostError:
            continue
        for t in reversed([json.loads(r) for r in rows.splitlines() if r.strip()]):  # oldest first
            slot = str(t.get("Name", "")).rpartition(".")[2]
            state = task_state(t)
            tag = bare_image(str(t.get("Image"))).rpartition(":")[2]
            ran = state in ("Running", "Complete", "Shutdown", "Failed", "Starting") and not t.get(
                "Error", ""
            ).startswith("No such image")
            role = "api" if part == "api" else f"worker-{slot}"
            current = t.get("DesiredState") == "Running"
            key = f"{part}.{slot}"
            if current or key not in out:
                out[key] = AppContainer(
                    str(t.get("Name")), str(t.get("ID")), tag, state == "Running", ran, 0, role, tag
                )
    return out
