"""Benchmark: a rollback with our CLI against the procedure's manual compose route, on the same images.

Both roll back from B to A, several times each, alternating, while a probe asks the API's /health and Redis
PING every 50 ms. Reported per route (median of the runs): time until the API is healthy on A, how long the
API did not answer healthy, how long Redis did not answer PING. Prints a table; asserts nothing.

The compose route is the runbook's: `docker-compose down`, up with the previous tag, curl /health. It uses
Debian's docker-compose (installed on first use) and its own containers, volumes and ports.

Usage: .venv/bin/python scripts/bench_rollback.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import yaml

from fetchml_infra import offline
from fetchml_infra.offline import REPO_ROOT

A, B = "sha-1a2b3c4", "sha-5d6e7f8"
ENV = offline.apply()
IMAGES = offline.read_versions(REPO_ROOT / "scripts" / "images.env")
PULUMI_PORTS = {"api": 9131, "redis": 6409, "minio": 9030}
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
    depends_on: [redis]
volumes:
  bench-redis-data:
  bench-minio-data:
"""


@dataclass
class Probe:
    """Polls the API and Redis every 50 ms in a thread. A sample is (time, API answers healthy (any version),
    Redis answers PING, API answers healthy on the target version)."""

    api_url: str
    redis_port: int
    want: str
    samples: list[tuple[float, bool, bool, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        r = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=0.2, socket_connect_timeout=0.2)
        with httpx.Client(timeout=0.3, trust_env=False) as client:
            while not self.stop.is_set():
                try:
                    body = client.get(self.api_url).json()
                    api_ok, on_target = body.get("status") == "ok", body.get("version") == self.want
                except (httpx.HTTPError, ValueError):
                    api_ok = on_target = False
                try:
                    redis_ok = bool(r.ping())
                except redis.RedisError:
                    redis_ok = False
                self.samples.append((time.monotonic(), api_ok, redis_ok, api_ok and on_target))
                time.sleep(0.05)

    def downtime(self, index: int, start: float) -> float:
        """Seconds after ``start`` during which the probe saw the service down (sum of the down intervals)."""
        total, last = 0.0, start
        for sample in self.samples:
            t = sample[0]
            if t < start:
                continue
            if not sample[index]:
                total += t - last
            last = t
        return total

    def healthy_after(self, start: float) -> float:
        return next((s[0] - start for s in self.samples if s[0] >= start and s[3]), float("nan"))


Sample = tuple[float, float, float]  # time to healthy, API down, Redis down (seconds)


def timed(route: str, roll: list[str], api_port: int, redis_port: int, env: dict[str, str]) -> Sample:
    probe = Probe(f"http://127.0.0.1:{api_port}/health", redis_port, A)
    thread = threading.Thread(target=probe.run, daemon=True)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    subprocess.run(roll, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (probe.samples and probe.samples[-1][3]):
        time.sleep(0.05)
    time.sleep(0.5)
    probe.stop.set()
    thread.join()
    result = (probe.healthy_after(start), probe.downtime(1, start), probe.downtime(2, start))
    healthy, api_down, redis_down = result
    print(
        f"  {route}: healthy after {healthy:.2f}s, API down {api_down:.2f}s, Redis down {redis_down:.2f}s", flush=True
    )
    return result


def pulumi_route(runs: int) -> list[Sample]:
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    config = dict(staging["config"])
    config.update(
        {
            "fetchml:image": B,
            "fetchml:apiHostPort": str(PULUMI_PORTS["api"]),
            "fetchml:redisHostPort": str(PULUMI_PORTS["redis"]),
            "fetchml:minioHostPort": str(PULUMI_PORTS["minio"]),
            "fetchml:workerReplicas": "1",
        }
    )
    (REPO_ROOT / f"Pulumi.{STACK}.yaml").write_text(
        yaml.safe_dump({"encryptionsalt": staging["encryptionsalt"], "config": config})
    )
    subprocess.run(["pulumi", "stack", "init", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
    cli = ["fetchml-infra"]
    results = []
    try:
        for _ in range(runs):
            subprocess.run(
                [*cli, "deploy", "--stack", STACK, "--image", B],
                cwd=REPO_ROOT,
                env=ENV,
                check=True,
                capture_output=True,
            )
            roll = [*cli, "rollback", "--stack", STACK, "--to", A, "--reason", "benchmark"]
            results.append(timed("fetchml-infra rollback", roll, PULUMI_PORTS["api"], PULUMI_PORTS["redis"], ENV))
    finally:
        for cmd in (
            ["state", "unprotect", "--all", "--yes"],
            ["destroy", "--yes", "--skip-preview"],
            ["stack", "rm", "--yes", "--force"],
        ):
            subprocess.run(["pulumi", *cmd, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
        for volume in ("redis-data", "minio-data"):
            subprocess.run(["docker", "volume", "rm", f"fetchml-{STACK}-{volume}"], capture_output=True)
        (REPO_ROOT / f"Pulumi.{STACK}.yaml").unlink(missing_ok=True)
    return results


def compose_route(runs: int) -> list[Sample]:
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
    results = []
    try:
        for _ in range(runs):
            subprocess.run([*compose, "up", "-d"], env={**ENV, "FETCHML_TAG": B}, check=True, capture_output=True)
            # The runbook: down, edit the tag to the previous SHA, up -d, then curl /health.
            script = f"{' '.join(compose)} down && {' '.join(compose)} up -d"
            roll = ["sh", "-c", script]
            results.append(
                timed("compose down/up", roll, COMPOSE_PORTS["api"], COMPOSE_PORTS["redis"], {**ENV, "FETCHML_TAG": A})
            )
    finally:
        subprocess.run([*compose, "down", "-v"], env={**ENV, "FETCHML_TAG": A}, capture_output=True)
        shutil.rmtree(work)
    return results


def median(rows: list[Sample], i: int) -> float:
    return statistics.median(r[i] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"rollback B -> A, {runs} runs per route, probes every 50 ms\n", flush=True)
    ours = pulumi_route(runs)
    theirs = compose_route(runs)
    print(f"\n| route (median of {runs}) | time to healthy | API unavailable | Redis unavailable |")
    print("| --- | --- | --- | --- |")
    for name, rows in (
        ("fetchml-infra rollback (pulumi up + gate + audit)", ours),
        ("runbook: compose down, up -d, curl", theirs),
    ):
        print(f"| {name} | {median(rows, 0):.2f} s | {median(rows, 1):.2f} s | {median(rows, 2):.2f} s |")
    return 0


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
