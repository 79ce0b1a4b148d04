"""The same stack and the same rollback on a real three-node Docker Swarm (scripts/swarm-cluster): one manager
(the data node: Redis, MinIO, PostgreSQL and the proxy) and two workers (the API's and the workers' tasks).

What a user would notice is asserted: the exit code and its words, which tasks run which release on which
node, that the data services' tasks (container ID and start time) never change, that no request through
the proxy fails, and exactly which audit lines were appended."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import redis

from fetchml_infra.offline import REPO_ROOT
from tests.e2e.project import Project, throwaway
from tests.e2e.test_zero_downtime import BROKEN, STORY, A, B, failures, moves, ok, probing

WORKERS = ("fmlsw-w1", "fmlsw-w2")  # the worker nodes' hostnames


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    script = str(REPO_ROOT / "scripts" / "swarm-cluster")
    up = subprocess.run([script, "up"], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    env = dict(line.split("=", 1) for line in Path("/run/fetchml-swarm/env").read_text().split() if "=" in line)
    try:
        yield env
    finally:  # FETCHML_KEEP_SWARM=1 keeps it for the next run (it repairs a node a test powered off)
        if not os.environ.get("FETCHML_KEEP_SWARM"):
            subprocess.run([script, "down"], capture_output=True, text=True, timeout=300)


def manager(cluster: dict[str, str], *args: str) -> str:
    env = {**os.environ, "DOCKER_HOST": cluster["FETCHML_SWARM_HOST"]}
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def swarm_stack(tmp_path: Path, cluster: dict[str, str], **config: str) -> AbstractContextManager[Project]:
    return throwaway(
        tmp_path,
        target="swarm",
        dockerHost=cluster["FETCHML_SWARM_HOST"],
        bindAddress=cluster["FETCHML_SWARM_ADDRESS"],
        allowPublicBind="true",
        healthTimeoutSeconds="90",
        workerReplicas="4",
        **config,
    )


def words(done: subprocess.CompletedProcess[str]) -> str:
    """What a command printed, as one line of words: status's table cells wrap, its borders dropped."""
    return " ".join(re.sub(r"[│┃┌┐└┘├┤─┬┴┼]", " ", done.stdout + done.stderr).split())


def tasks(cluster: dict[str, str], service: str) -> list[tuple[str, str]]:
    """(node, image tag) of each running task of ``service``."""
    rows = manager(cluster, "service", "ps", service, "--filter", "desired-state=running", "--format", "{{json .}}")
    found = [json.loads(r) for r in rows.splitlines() if r.strip()]
    return sorted(
        (t["Node"], t["Image"].split("@")[0].rpartition(":")[2])
        for t in found
        if t["CurrentState"].startswith("Running")
    )


def data_identities(cluster: dict[str, str], p: Project) -> dict[str, str]:
    """Each data service's task container ID and start time: equal only if none was replaced or restarted."""
    out = {}
    for part in ("redis", "minio", "postgres", "proxy"):
        ids = manager(cluster, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={p.prefix}-{part}").split()
        assert len(ids) == 1, (part, ids)
        out[part] = manager(cluster, "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", ids[0]).strip()
    return out


def test_deploy_failed_deploy_and_rollback_on_three_nodes(tmp_path: Path, cluster: dict[str, str]) -> None:
    with swarm_stack(tmp_path, cluster, image=A) as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        api, worker = f"{p.prefix}-api", f"{p.prefix}-worker"
        assert {n for n, _ in tasks(cluster, api)} == set(WORKERS) and {t for _, t in tasks(cluster, api)} == {A}
        assert {n for n, _ in tasks(cluster, worker)} == set(WORKERS) and len(tasks(cluster, worker)) == 4
        data = data_identities(cluster, p)
        volumes = manager(cluster, "volume", "ls", "-q", "--filter", f"name={p.prefix}-")
        queue = redis.Redis(host=cluster["FETCHML_SWARM_ADDRESS"], port=p.ports["redis"], socket_timeout=5)
        queue.lpush("fetchml:queue:pending", "job-on-the-swarm")

        with probing(p, host=cluster["FETCHML_SWARM_ADDRESS"]) as seen:
            ok(p.cli("deploy", "--image", B, "--reason", "release"))
        assert failures(seen) == [] and seen[0] == A and seen[-1] == B, sorted(set(seen))
        assert {t for _, t in tasks(cluster, api) + tasks(cluster, worker)} == {B}

        with probing(p, host=cluster["FETCHML_SWARM_ADDRESS"]) as seen:  # Swarm pauses; staging rolls back
            out = ok(p.cli("deploy", "--image", BROKEN, "--reason", "bad release"), code=3)
        assert "the swarm stopped updating" in out and "rolled back" in out, out[-3000:]
        assert failures(seen) == [] and set(seen) == {B}, sorted(set(seen))  # BROKEN never answered
        assert {t for _, t in tasks(cluster, api) + tasks(cluster, worker)} == {B}

        with probing(p, host=cluster["FETCHML_SWARM_ADDRESS"]) as seen:
            ok(p.cli("rollback", "--to", A, "--reason", "back"))
        assert failures(seen) == [] and seen[0] == B and seen[-1] == A, sorted(set(seen))

        assert data_identities(cluster, p) == data  # no data task was replaced or restarted
        assert manager(cluster, "volume", "ls", "-q", "--filter", f"name={p.prefix}-") == volumes
        assert queue.sismember("fetchml:jobs:done", "job-on-the-swarm")
        assert moves(p) == STORY
        # The 3 a.m. path on the swarm: config set and a plain up.
        ok(p.pulumi("config", "set", "image", B))
        ok(p.pulumi("up", "--yes", "--skip-preview"))
        assert {t for _, t in tasks(cluster, api) + tasks(cluster, worker)} == {B}
        assert moves(p)[-1] == ("rollback", "success", A, B)  # B ran here before: a move back to it


def test_drift_a_missing_image_and_a_dead_node(tmp_path: Path, cluster: dict[str, str]) -> None:
    with swarm_stack(tmp_path, cluster, image=A) as p:
        api, worker = f"{p.prefix}-api", f"{p.prefix}-worker"
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        ok(p.cli("deploy", "--image", B, "--reason", "release"))

        # Someone rolls the API back by hand: status and preview say so, deploy refuses, recover converges.
        manager(cluster, "service", "rollback", "--detach", api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and {t for _, t in tasks(cluster, api)} != {A}:
            time.sleep(1)
        status = p.cli("status")
        said = words(status)
        assert status.returncode == 1 and f"{api} runs ghcr.io/jfraeysd/fetchml-api:{A}, the stack declares" in said
        preview = ok(p.cli("preview"))
        assert "api" in preview and "update" in preview, preview[-2000:]
        refused = p.cli("deploy", "--image", B, "--reason", "again")
        assert refused.returncode == 2 and "fetchml-infra recover" in refused.stdout + refused.stderr
        ok(p.cli("recover"))
        assert {t for _, t in tasks(cluster, api)} == {B}
        assert moves(p)[-2:] == [("rollback", "failure", B, A), ("rollback", "success", A, B)]
        assert "disagreements none" in words(p.cli("status"))

        # A release whose image is on the manager only: the swarm cannot start it, and that is no verdict.
        missing = "sha-00c1a55"
        for repo in ("ghcr.io/jfraeysd/fetchml-api", "ghcr.io/jfraeysd/fetchml-worker"):
            manager(cluster, "tag", f"{repo}:{A}", f"{repo}:{missing}")
        before = moves(p)
        out = p.cli("deploy", "--image", missing, "--reason", "image not on the workers")
        said = words(out)
        # The paused update left the specs on the missing image, so the CLI puts B's back: exit 3, no verdict.
        assert out.returncode == 3 and "not a verdict on the image" in said and "No such image" in said, said[-3000:]
        assert f"restored {B}" in said and "denied" not in said.split("restored")[-1]
        assert moves(p) == before and p.config("image") == B  # nothing recorded, config back, not denied
        assert {t for _, t in tasks(cluster, api)} == {B}  # B's tasks kept serving throughout
        ok(p.cli("deploy", "--image", A, "--reason", "a release that is everywhere"))

        # A worker node dies: its tasks move to the other, status says so, and the gate still decides.
        subprocess.run([str(REPO_ROOT / "scripts" / "swarm-cluster"), "kill", "w2"], check=True, capture_output=True)
        deadline = time.monotonic() + 120
        moved = [(WORKERS[0], A)] * 4
        while time.monotonic() < deadline and tasks(cluster, worker) != moved:
            time.sleep(2)
        assert tasks(cluster, worker) == moved
        said = words(p.cli("status"))
        assert "fmlsw-w2 (worker) Down" in said and "not ready" in said, said
        ok(p.cli("rollback", "--to", B, "--reason", "with one worker node down"))
        assert set(tasks(cluster, api) + tasks(cluster, worker)) == {(WORKERS[0], B)}
        assert moves(p)[-2:] == [("rollback", "success", B, A), ("rollback", "success", A, B)]
