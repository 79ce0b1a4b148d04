"""The health gate on a Swarm target: every task of the API and the workers reports the new release.

A task is only reachable inside the cluster (its address is on the overlay network, its name in the swarm's
DNS), so each attempt runs the probe image on the manager, attached to the stack's network: it resolves
``tasks.<service>`` (one address per task the swarm routes to, i.e. past its HEALTHCHECK) and asks each.

``verdict`` is pure: the swarm's update states, its failed tasks and the probe's answers in, one verdict out,
each answer judged by fetchml_infra.health.judge exactly as on one host. ``poll`` is the thin loop; ``read``
asks Docker. A task the swarm could not even start (no such image on a node, no node to place it on) is the
infrastructure's fault, not the image's: it raises ``ClusterFault``, which is never recorded as a verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fetchml_infra.health import Observation, PollResult, Verdict, judge
from fetchml_infra.host import HostError, run_docker

PAUSED = ("paused", "rollback_started", "rollback_paused", "rollback_completed")
NOT_THE_IMAGE = ("rejected",)  # states in which the image never ran: preparing the task failed


class ClusterFault(RuntimeError):
    """The cluster, not the image, kept the release from being checked (manager down, tasks not placed)."""


@dataclass(frozen=True)
class Guarded:
    """One service the gate checks: its name, how many tasks it should have, where they answer."""

    service: str
    replicas: int
    port: int
    path: str

    @property
    def target(self) -> str:
        return f"tasks.{self.service}:{self.port}{self.path}"


@dataclass(frozen=True)
class Seen:
    """One attempt's view of the cluster."""

    updates: Mapping[str, tuple[str, str]]  # service -> (UpdateStatus.State, Message); ("", "") before any update
    failed: Mapping[str, list[tuple[str, str]]]  # service -> [(state, error)] of the new image's failed tasks
    answers: Sequence[Mapping[str, object]]  # the probe's lines: target, address, status, body, error
    pending: Mapping[str, int] = field(default_factory=dict)  # service -> tasks of the new image not running yet
    unstarted: Mapping[str, int] = field(default_factory=dict)  # of those, tasks whose container never started


def verdict(
    seen: Seen, guarded: Sequence[Guarded], *, expected_version: str, required_compliance: str | None
) -> tuple[Verdict, bool]:
    """(verdict, final): final means waiting longer cannot change it (the swarm stopped the update)."""
    for g in guarded:
        failures = seen.failed.get(g.service, [])
        state, message = seen.updates.get(g.service, ("", ""))
        if state in PAUSED:
            image_ran = [e for s, e in failures if s not in NOT_THE_IMAGE]
            if failures and not image_ran:
                raise ClusterFault(f"{g.service}: the swarm could not start the new tasks: {failures[0][1]}")
            why = image_ran[0] if image_ran else message
            return Verdict(False, f"the swarm stopped updating {g.service} ({state}): {why}"), True
    for g in guarded:
        mine = [a for a in seen.answers if a.get("target") == g.target]
        answering = [a for a in mine if a.get("address")]
        if len(answering) != g.replicas or seen.pending.get(g.service):
            lookup = next((str(a.get("error")) for a in mine if not a.get("address") and a.get("error")), "")
            return Verdict(
                False,
                f"{g.service}: {len(answering)} of {g.replicas} tasks answer"
                + (f" ({lookup})" if lookup else "")
                + (f", {seen.pending[g.service]} not running yet" if seen.pending.get(g.service) else ""),
            ), False
        for a in answering:
            status = a.get("status")
            error = str(a.get("error") or "") or None
            obs_status = int(status) if isinstance(status, int) and status else None
            v = judge(
                Observation(obs_status, str(a.get("body") or ""), error),
                expected_version=expected_version,
                required_compliance=required_compliance,
            )
            if not v.healthy:
                where = f"{g.service} task at {a.get('address')}"
                return Verdict(
                    False, f"{where}: {v.reason}", v.status, v.version, v.compliance_mode, v.body_excerpt
                ), False
    first = next(iter(seen.answers), {})
    return _healthy(first, expected_version, required_compliance), False


def _healthy(answer: Mapping[str, object], expected: str, compliance: str | None) -> Verdict:
    v = judge(
        Observation(200, str(answer.get("body") or ""), None), expected_version=expected, required_compliance=compliance
    )
    return Verdict(True, "healthy: every task answers", 200, v.version, v.compliance_mode, v.body_excerpt)


def poll(
    look: Callable[[], Seen],
    guarded: Sequence[Guarded],
    *,
    expected_version: str,
    required_compliance: str | None,
    timeout: float,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PollResult:
    """Look until every task is healthy, the swarm stops the update, or ``timeout`` passes. A timeout with
    tasks the swarm never placed is the cluster's fault (ClusterFault), not a verdict on the image."""
    start = clock()
    attempts = 0
    while True:
        attempts += 1
        seen = look()
        v, final = verdict(seen, guarded, expected_version=expected_version, required_compliance=required_compliance)
        now = clock()
        if v.healthy or final:
            return PollResult(v, now - start, attempts)
        if now + interval > start + timeout:
            unstarted = {s: n for s, n in seen.unstarted.items() if n}
            if unstarted:  # the swarm never started them: no image on a node, no node to place them on
                raise ClusterFault(f"tasks not started by the swarm within {timeout:g}s: {unstarted}; {v.reason}")
            return PollResult(v, now - start, attempts)
        sleep(interval)


# --- the edge: what Docker says -------------------------------------------------------------------------


UNSTARTED = ("New", "Pending", "Assigned", "Accepted", "Preparing", "Ready")


def docker(docker_host: str, *args: str, timeout: float = 30.0) -> str:
    try:
        return run_docker(*args, timeout=timeout, engine=docker_host)
    except HostError as exc:
        raise ClusterFault(f"on the swarm manager: {exc}") from exc


def read(
    docker_host: str, network: str, probe_image: str, guarded: Sequence[Guarded], image_of: Mapping[str, str]
) -> Seen:
    """One look at the cluster: update states, the new image's tasks, and the probe's answers."""
    updates: dict[str, tuple[str, str]] = {}
    failed: dict[str, list[tuple[str, str]]] = {}
    pending: dict[str, int] = {}
    unstarted: dict[str, int] = {}
    for g in guarded:
        status = json.loads(docker(docker_host, "service", "inspect", g.service, "--format", "{{json .UpdateStatus}}"))
        updates[g.service] = (str((status or {}).get("State") or ""), str((status or {}).get("Message") or ""))
        rows = docker(docker_host, "service", "ps", g.service, "--no-trunc", "--format", "{{json .}}").splitlines()
        tasks = [json.loads(r) for r in rows if r.strip()]
        new = [t for t in tasks if bare_image(str(t.get("Image", ""))) == image_of[g.service]]
        states = [(task_state(t), t) for t in new]
        # A task stopped by its failing HEALTHCHECK exits cleanly: "Complete", with no error, is a failure too.
        failed[g.service] = [
            (s.lower(), str(t.get("Error") or f"a task of the new image stopped before it was healthy ({s.lower()})"))
            for s, t in states
            if s in ("Failed", "Rejected", "Complete")
        ]
        waiting = [s for s, t in states if t.get("DesiredState") == "Running" and s != "Running"]
        pending[g.service], unstarted[g.service] = len(waiting), sum(1 for s in waiting if s in UNSTARTED)
    out = docker(
        docker_host, "run", "--rm", "--network", network, probe_image, *[g.target for g in guarded], timeout=60
    )
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    return Seen(updates, failed, answers, pending, unstarted)


def task_state(task: Mapping[str, object]) -> str:
    """`docker service ps`'s CurrentState is "Running 5 seconds ago": its first word."""
    return (str(task.get("CurrentState") or "").split() or [""])[0]


def bare_image(ref: str) -> str:
    """An image reference without the digest a swarm may pin it to."""
    return ref.split("@", 1)[0]


def check(spec: Mapping[str, Any], image: str, required_compliance: str | None, timeout: float) -> PollResult:
    """The gate's whole check on a swarm, from the HealthGate's ``swarm`` input. A ClusterFault is raised
    as an infrastructure error: the gate records nothing for it."""
    guarded = [Guarded(str(s), int(n), int(port), str(path)) for s, n, port, path in spec["services"]]
    images = {str(k): str(v) for k, v in spec["images"].items()}

    def look() -> Seen:
        return read(str(spec["docker_host"]), str(spec["network"]), str(spec["probe_image"]), guarded, images)

    return poll(look, guarded, expected_version=image, required_compliance=required_compliance, timeout=timeout)
