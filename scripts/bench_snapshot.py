"""Benchmark: what the pre-move snapshot adds to a rollback, with a 100 MB database and 10,000 queued jobs.

One stack (its own ports), deployed at A then B. The database gets a table of about --db-mb MB and the
queue --jobs pending jobs (the stand-in worker holds one at a time: jobSeconds is long, so the rest stay
queued). Then, --runs times, alternately: a rollback B -> A and a deploy A -> B with the CLI (each takes its
snapshot), and the snapshot alone (fetchml_infra.snapshot_store.take, what the program runs before a move).
Prints a table of medians (min, max); asserts nothing.

Usage: .venv/bin/python scripts/bench_snapshot.py [--runs 5] [--db-mb 100] [--jobs 10000]
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

from fetchml_infra import jobqueue, offline, schema, snapshot_store
from fetchml_infra.offline import REPO_ROOT
from fetchml_infra.workspace import Stack

A, B = "sha-1a2b3c4", "sha-5d6e7f8"
ENV = offline.apply()
PORTS = {"apiHostPort": 9151, "redisHostPort": 6429, "minioHostPort": 9050, "proxyAdminPort": 2059}
STACK = "benchsnap"
# 640 hex characters of md5s of random values per row: a dump cannot compress them away.
BODY = "(select string_agg(md5(random()::text || i || j), '') from generate_series(1, 20) j)"


def cli(*args: str) -> float:
    t0 = time.monotonic()
    done = subprocess.run(["fetchml-infra", *args, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
    assert done.returncode == 0, done.stdout.decode()[-2000:] + done.stderr.decode()[-2000:]
    return time.monotonic() - t0


def fill(db_mb: int, jobs: int) -> tuple[int, int]:
    """About ``db_mb`` MB of rows and ``jobs`` pending jobs; (database bytes, queue length)."""
    name = schema.container(f"fetchml-{STACK}")
    rows = db_mb * 1024 * 1024 // 700  # a row of 640 characters takes about 700 bytes on disk
    schema.psql(
        name,
        f"create table bench_blob as select i, {BODY} as body from generate_series(1, {rows}) i",
        900,
    )
    size = int(schema.psql(name, "select pg_database_size('fetchml')"))
    r = jobqueue.connect(f"127.0.0.1:{PORTS['redisHostPort']}")
    pipe = r.pipeline()
    for i in range(jobs):
        pipe.lpush("fetchml:queue:pending", f"bench-{i:05d}-{os.urandom(8).hex()}")
    pipe.execute()
    return size, int(r.llen("fetchml:queue:pending"))


def row(name: str, times: list[float]) -> str:
    return f"| {name} | {statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db-mb", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=10000)
    args = parser.parse_args()
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    config = {**staging["config"], **{f"fetchml:{k}": str(v) for k, v in PORTS.items()}}
    config.update({"fetchml:image": A, "fetchml:workerReplicas": "1", "fetchml:jobSeconds": "600"})
    config.update({"fetchml:workerStopGraceSeconds": "2", "fetchml:healthTimeoutSeconds": "15"})
    stack_file = REPO_ROOT / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(yaml.safe_dump({"encryptionsalt": staging["encryptionsalt"], "config": config}))
    subprocess.run(["pulumi", "stack", "init", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
    snapshot, rollback, deploy = [], [], []
    try:
        cli("deploy", "--image", A, "--reason", "benchmark")
        cli("deploy", "--image", B, "--reason", "benchmark")
        size, queued = fill(args.db_mb, args.jobs)
        print(f"database {size / 2**20:.0f} MiB, {queued} jobs pending; {args.runs} runs", flush=True)
        cfg = Stack(STACK, REPO_ROOT).config()
        log = str(Path(cfg.audit_log_path(REPO_ROOT)))
        for i in range(args.runs):
            t0 = time.monotonic()
            taken = snapshot_store.take(cfg, log, image=B, target=B, action="deploy")
            snapshot.append(time.monotonic() - t0)
            rollback.append(cli("rollback", "--to", A, "--reason", "benchmark"))
            deploy.append(cli("deploy", "--image", B, "--reason", "benchmark"))
            parts = taken.describe().split(")  ", 1)[-1] if taken else "nothing taken"
            print(f"  run {i + 1}: snapshot {snapshot[-1]:.2f} s ({parts}), rollback {rollback[-1]:.2f} s, "
                  f"deploy {deploy[-1]:.2f} s", flush=True)  # fmt: skip
    finally:
        for cmd in (["state", "unprotect", "--all", "--yes"], ["destroy", "--yes", "--skip-preview"]):
            subprocess.run(["pulumi", *cmd, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
        subprocess.run(["pulumi", "stack", "rm", "--yes", "--force", "--stack", STACK], cwd=REPO_ROOT, env=ENV)
        for volume in ("redis-data", "minio-data", "postgres-data"):
            subprocess.run(["docker", "volume", "rm", f"fetchml-{STACK}-{volume}"], capture_output=True)
        stack_file.unlink(missing_ok=True)
    print(f"\n| {args.db_mb} MB database, {args.jobs} queued jobs ({args.runs} runs) | median | min | max |")
    print("| --- | --- | --- | --- |")
    print(row("snapshot alone (Redis RDB + pg_dump + artifacts manifest)", snapshot))
    print(row("rollback B -> A with the CLI, its snapshot included", rollback))
    print(row("deploy A -> B with the CLI, its snapshot included", deploy))
    share = statistics.median(snapshot) / statistics.median(rollback)
    print(f"\nthe snapshot is {share:.0%} of the rollback's median time")
    return 0


if __name__ == "__main__":
    os.environ.update(ENV)
    sys.exit(main())
