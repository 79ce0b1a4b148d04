"""Benchmark: deploy, failed deploy and rollback with our CLI against the runbook's compose route, same images.

Each route runs, several times: a deploy A -> B, a failed deploy of the broken C, and a rollback B -> A, while
a probe asks the public port's /health every 20 ms (scripts/bench_probe.py) and 1,000 jobs of 50 ms each run
through the queue. Reported per route and operation (median of the runs): failed requests, and the time until
the new release answers. Then per route: jobs done, lost, run twice. Prints a table; asserts nothing.

Our route is blue/green behind the stack's proxy. The compose route is the runbook's: `up -d` with the new tag,
curl /health, and on failure (or for a rollback) `down` then `up -d` with the previous tag. It uses Debian's
docker-compose (installed on first use) and its own containers, volumes and ports.

Usage: .venv/bin/python scripts/bench_rollback.py [--runs 5] [--jobs 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from bench_probe import Row, measure, queue_jobs, tally

from fetchml_infra import offline
from fetchml_infra.offline import REPO_ROOT

A, B, C = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee"  # C answers 503: a broken release
OPS = ("deploy A -> B", "failed deploy of C", "rollback B -> A")
ENV = offline.apply()
IMAGES = offline.read_versions(REPO_ROOT / "scripts" / "images.env")
PULUMI_PORTS = {"api": 9131, "redis": 6409, "minio": 9030, "admin": 2049}
COMPOSE_PORTS = {"api": 9141, "redis": 6419, "minio": 9040}
STACK = "bench"

COMPOSE = """
version: "2.4"
services:
  redis:
    image: {redis}
    volumes: ["bench-redis-data:/data"]
    ports: ["127.0.0.1:{redis_port}:6379"]
  minio:
    image: {minio}
    environment:
      MINIO_ROOT_USER: bench-admin
      MINIO_ROOT_PASSWORD: bench-password-123
    volumes: ["bench-minio-data:/data"]
  api:
    image: {api}:${{FETCHML_TAG}}
    environment:
      FETCHML_VERSION: "${{FETCHML_TAG}}"
      FETCHML_REDIS_ADDR: "redis:6379"
    ports: ["127.0.0.1:{api_port}:9101"]
    depends_on: [redis]
  worker:
    image: {worker}:${{FETCHML_TAG}}
    environment:
      FETCHML_VERSION: "${{FETCHML_TAG}}"
      FETCHML_REDIS_ADDR: "redis:6379"
      FETCHML_JOB_SECONDS: "0.05"
      FETCHML_STOP_GRACE_SECONDS: "10"
    stop_grace_period: 12s
    depends_on: [redis]
volumes:
  bench-redis-data:
  bench-minio-data:
"""


class Runs(dict[str, list[Row]]):
    """The rows of one route, by operation."""


def cycle(url: str, ops: dict[str, tuple[str, Callable[[], None]]], rows: Runs) -> None:
    """One run of each operation: (the release it moves to, how) by operation name."""
    for op, (new, action) in ops.items():
        row = measure(url, new, action)
        rows.setdefault(op, []).append(row)
        after = "never answered" if row.to_new != row.to_new else f"answered after {row.to_new:.2f}s"  # nan: never
        print(f"  {op}: {row.failed} of {row.probes} requests failed, new release {after}", flush=True)


def pulumi_route(runs: int, jobs: int) -> tuple[Runs, tuple[int, int, int]]:
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    config = dict(staging["config"])
    config.update(
        {
            "fetchml:image": A,
            "fetchml:apiHostPort": str(PULUMI_PORTS["api"]),
            "fetchml:redisHostPort": str(PULUMI_PORTS["redis"]),
            "fetchml:minioHostPort": str(PULUMI_PORTS["minio"]),
            "fetchml:proxyAdminPort": str(PULUMI_PORTS["admin"]),
            "fetchml:workerReplicas": "1",
            "fetchml:healthTimeoutSeconds": "8",
            "fetchml:jobSeconds": "0.05",
        }
    )
    (REPO_ROOT / f"Pulumi.{STACK}.yaml").write_text(
        yaml.safe_dump({"encryptionsalt": staging["encryptionsalt"], "config": config})
    )
    subprocess.run(["pulumi", "stack", "init", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)

    def cli(*args: str, ok: tuple[int, ...] = (0,)) -> Callable[[], None]:
        def run() -> None:
            done = subprocess.run(
                ["fetchml-infra", *args, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True
            )
            assert done.returncode in ok, done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]

        return run

    url, rows = f"http://127.0.0.1:{PULUMI_PORTS['api']}/health", Runs()
    ops = {
        OPS[0]: (B, cli("deploy", "--image", B, "--reason", "benchmark")),
        OPS[1]: (C, cli("deploy", "--image", C, "--allow-denied", "--reason", "benchmark", ok=(3,))),
        OPS[2]: (A, cli("rollback", "--to", A, "--reason", "benchmark")),
    }
    try:
        cli("deploy", "--image", A, "--reason", "benchmark")()
        queued = queue_jobs(PULUMI_PORTS["redis"], "bench-pulumi", jobs)
        for _ in range(runs):
            cycle(url, ops, rows)
        return rows, tally(PULUMI_PORTS["redis"], queued)
    finally:
        for cmd in (
            ["state", "unprotect", "--all", "--yes"],
            ["destroy", "--yes", "--skip-preview"],
            ["stack", "rm", "--yes", "--force"],
        ):
            subprocess.run(["pulumi", *cmd, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
        for volume in ("redis-data", "minio-data", "postgres-data"):
            subprocess.run(["docker", "volume", "rm", f"fetchml-{STACK}-{volume}"], capture_output=True)
        (REPO_ROOT / f"Pulumi.{STACK}.yaml").unlink(missing_ok=True)


def compose_route(runs: int, jobs: int) -> tuple[Runs, tuple[int, int, int]]:
    if shutil.which("docker-compose") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker-compose"], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="fetchml-bench-compose-"))
    (work / "docker-compose.yml").write_text(
        COMPOSE.format(
            redis=IMAGES["REDIS_IMAGE"],
            minio=IMAGES["MINIO_IMAGE"],
            api=IMAGES["API_IMAGE_REPO"],
            worker=IMAGES["WORKER_IMAGE_REPO"],
            redis_port=COMPOSE_PORTS["redis"],
            api_port=COMPOSE_PORTS["api"],
        )
    )
    compose = ["docker-compose", "-p", "fetchmlbench", "-f", str(work / "docker-compose.yml")]
    url = f"http://127.0.0.1:{COMPOSE_PORTS['api']}/health"

    def run(*args: str, tag: str) -> None:
        subprocess.run([*compose, *args], env={**ENV, "FETCHML_TAG": tag}, check=True, capture_output=True)

    def healthy(within: float) -> bool:  # the runbook's curl, retried as long as our gate would wait
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return False

    def failed_deploy() -> None:
        run("up", "-d", tag=C)
        if not healthy(8):
            run("down", tag=C)
            run("up", "-d", tag=B)

    def rollback() -> None:
        run("down", tag=B)
        run("up", "-d", tag=A)

    ops = {OPS[0]: (B, lambda: run("up", "-d", tag=B)), OPS[1]: (C, failed_deploy), OPS[2]: (A, rollback)}
    rows = Runs()
    try:
        run("up", "-d", tag=A)
        healthy(30)
        queued = queue_jobs(COMPOSE_PORTS["redis"], "bench-compose", jobs)
        for _ in range(runs):
            cycle(url, ops, rows)
        return rows, tally(COMPOSE_PORTS["redis"], queued)
    finally:
        subprocess.run([*compose, "down", "-v"], env={**ENV, "FETCHML_TAG": A}, capture_output=True)
        shutil.rmtree(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.runs} runs per route, probe every 20 ms, {args.jobs} jobs of 50 ms queued per route\n", flush=True)
    print("fetchml-infra (blue/green behind the proxy):", flush=True)
    ours, our_jobs = pulumi_route(args.runs, args.jobs)
    print("runbook (docker-compose):", flush=True)
    theirs, their_jobs = compose_route(args.runs, args.jobs)
    print(
        f"\n| route | operation ({args.runs} runs) | failed requests: median (worst run) | new release serves after |"
    )
    print("| --- | --- | --- | --- |")
    for name, rows in (("fetchml-infra", ours), ("compose runbook", theirs)):
        for op in OPS:
            runs = rows[op]
            failed, worst = statistics.median(r.failed for r in runs), max(r.failed for r in runs)
            after = statistics.median(r.to_new for r in runs)
            served = "never" if after != after else f"{after:.2f} s"  # nan: the release never answered healthy
            probes = statistics.median(r.probes for r in runs)
            print(f"| {name} | {op} | {failed:g} of {probes:g} ({worst}) | {served} |")
    print("\n| route | jobs done | lost | run twice |")
    print("| --- | --- | --- | --- |")
    for name, (done, lost, twice) in (("fetchml-infra", our_jobs), ("compose runbook", their_jobs)):
        print(f"| {name} | {done} | {lost} | {twice} |")
    return 0


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
