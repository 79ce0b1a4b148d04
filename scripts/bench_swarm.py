"""Benchmark: deploy and rollback time with 1, 4 and 16 worker replicas, on one host and on the test swarm.

For each target and worker count a fresh stack is deployed (A), then, several times, a deploy A -> B and a
rollback B -> A with the CLI while a probe asks the public port's /health every 20 ms (scripts/bench_probe.py).
Reported per row (median of the runs): the command's wall time, and the failed requests during the rollback
(goal 0). The single-host rows (`target: docker`) are the baseline, measured in the same run. The swarm is
scripts/swarm-cluster's: one manager (data node) and two worker nodes on this machine. Prints a table;
asserts nothing.

Usage: .venv/bin/python scripts/bench_swarm.py [--runs 3] [--replicas 1,4,16] [--keep-cluster]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from bench_probe import measure

from fetchml_infra import offline
from fetchml_infra.offline import REPO_ROOT

A, B = "sha-1a2b3c4", "sha-5d6e7f8"
ENV = offline.apply()
PORTS = {"apiHostPort": 9161, "redisHostPort": 6439, "minioHostPort": 9060, "proxyAdminPort": 2069}
CLUSTER = REPO_ROOT / "scripts" / "swarm-cluster"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=1800)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def timed(stack: str, *args: str) -> float:
    t0 = time.monotonic()
    run("fetchml-infra", *args, "--stack", stack)
    return time.monotonic() - t0


def one_row(target: str, replicas: int, runs: int, swarm: dict[str, str]) -> tuple[list[float], list[float], list[int]]:
    stack = f"bench{target}{replicas}"
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    config = {**staging["config"], **{f"fetchml:{k}": str(v) for k, v in PORTS.items()}}
    config.update({"fetchml:image": A, "fetchml:workerReplicas": str(replicas), "fetchml:healthTimeoutSeconds": "300"})
    config["fetchml:workerStopGraceSeconds"] = "2"
    host = "127.0.0.1"
    if target == "swarm":
        host = swarm["FETCHML_SWARM_ADDRESS"]
        config.update({"fetchml:target": "swarm", "fetchml:dockerHost": swarm["FETCHML_SWARM_HOST"]})
        config.update({"fetchml:bindAddress": host, "fetchml:allowPublicBind": "true"})
    stack_file = REPO_ROOT / f"Pulumi.{stack}.yaml"
    stack_file.write_text(yaml.safe_dump({"encryptionsalt": staging["encryptionsalt"], "config": config}))
    run("pulumi", "stack", "init", stack, check=False)
    url = f"http://{host}:{PORTS['apiHostPort']}/health"
    deploy, rollback, failed = [], [], []
    try:
        timed(stack, "deploy", "--image", A, "--reason", "benchmark")
        for i in range(runs):
            deploy.append(timed(stack, "deploy", "--image", B, "--reason", "benchmark"))
            row = measure(url, A, lambda: rollback.append(timed(stack, "rollback", "--to", A, "--reason", "benchmark")))
            failed.append(row.failed)
            print(f"  {target} x{replicas} run {i + 1}: deploy {deploy[-1]:.1f} s, rollback {rollback[-1]:.1f} s, "
                  f"{row.failed} of {row.probes} requests failed", flush=True)  # fmt: skip
    finally:
        for cmd in (["state", "unprotect", "--all", "--yes"], ["destroy", "--yes", "--skip-preview"]):
            run("pulumi", *cmd, "--stack", stack, check=False)
        run("pulumi", "stack", "rm", "--yes", "--force", "--stack", stack, check=False)
        docker = ["docker"] + (["-H", swarm["FETCHML_SWARM_HOST"]] if target == "swarm" else [])
        for volume in ("redis-data", "minio-data", "postgres-data"):
            run(*docker, "volume", "rm", f"fetchml-{stack}-{volume}", check=False)
        stack_file.unlink(missing_ok=True)
    return deploy, rollback, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replicas", default="1,4,16")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the test swarm up afterwards")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    run(str(CLUSTER), "up")
    swarm = dict(line.split("=", 1) for line in Path("/run/fetchml-swarm/env").read_text().split() if "=" in line)
    results = {}
    try:
        for target in ("docker", "swarm"):
            for n in counts:
                results[(target, n)] = one_row(target, n, args.runs, swarm)
    finally:
        if not args.keep_cluster:
            run(str(CLUSTER), "down", check=False)
    print(f"\n| target | workers | deploy A -> B | rollback B -> A | failed requests in rollbacks ({args.runs} runs) |")
    print("| --- | --- | --- | --- | --- |")
    for (target, n), (deploy, rollback, failed) in results.items():
        where = "one host" if target == "docker" else "swarm, 3 nodes"
        print(f"| {where} | {n} | {statistics.median(deploy):.1f} s | {statistics.median(rollback):.1f} s | "
              f"{sum(failed)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
