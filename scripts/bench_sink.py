#!/usr/bin/env python3
"""Benchmark the write-once audit sink against a real MinIO (the binary scripts/images.sh builds) on loopback.

    .venv/bin/python scripts/bench_sink.py [--sizes 10000,100000] [--appends 300] [--runs 3]

Prints one table: the latency of an append (p50, p99) shipped to the sink (sync, create-only PUT, local
write, signed checkpoint) beside a local-only append to a log of the same size, then check-sink on chains of
each --size: the first check (every object read) and a repeat (objects found sound before and unchanged in
the listing are not read again), beside `audit verify` of the local log alone.
Each figure is the median of --runs runs. The server gets a fresh data directory, removed afterwards.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import generate

from fetchml_infra import offline
from fetchml_infra.audit import append, checkpoint, findings, shipping, verify
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import Target

USER, PASSWORD = "bench", "bench-password-0123"


def start_minio(data: Path, port: int) -> subprocess.Popen[bytes]:
    versions = offline.read_versions(offline.REPO_ROOT / "scripts" / "images.env")
    binary = offline.cache_home(os.environ) / "toolchain" / f"minio-{versions['MINIO_VERSION']}" / "minio"
    env = {**os.environ, "MINIO_ROOT_USER": USER, "MINIO_ROOT_PASSWORD": PASSWORD, "MINIO_UPDATE": "off"}
    args = ["server", "--quiet", "--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{port + 1}"]
    proc = subprocess.Popen([str(binary), *args, str(data)], env=env, stdout=subprocess.DEVNULL)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/minio/health/live", timeout=1).raise_for_status()
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"MinIO did not answer on 127.0.0.1:{port}")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def appends(log: Path, ship: shipping.Shipping | None, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        if ship is None:
            append(log, action="deploy", outcome="success", from_image="-", to_image="sha-1a2b3c4", actor="bench",
                   reason=f"n{i}", stack="bench")  # fmt: skip
        else:
            shipping.append(log, ship, action="deploy", outcome="success", from_image="-", to_image="sha-1a2b3c4",
                            actor="bench", reason=f"n{i}", stack="bench")  # fmt: skip
        out.append(time.perf_counter() - t0)
    return out


def seed(sink: Sink, log: Path, n: int) -> None:
    generate(log, n)
    lines = log.read_bytes().splitlines(True)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(sink.put_entry, range(n), lines))


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms"


def secs(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sink-"))
    port = 29500
    proc = start_minio(work / "data", port)
    os.environ.update(AWS_ACCESS_KEY_ID=USER, AWS_SECRET_ACCESS_KEY=PASSWORD, AWS_REGION="us-east-1")
    endpoint = f"http://127.0.0.1:{port}"
    rows: list[tuple[str, str, str]] = []
    try:
        Sink(Target(endpoint, "audit", 1), "-").create_bucket()
        signer = checkpoint.create(work / "key", "bench")
        local_p50, local_p99, ship_p50, ship_p99 = [], [], [], []
        for run in range(a.runs):
            base = work / f"local-{run}.log"
            generate(base, 10_000)
            samples = appends(base, None, a.appends)
            local_p50.append(pct(samples, 0.5))
            local_p99.append(pct(samples, 0.99))
            sink = Sink(Target(endpoint, "audit", 1), f"append-{run}")
            shipped = work / f"shipped-{run}.log"
            seed(sink, shipped, 10_000)
            samples = appends(shipped, shipping.Shipping(sink, signer), a.appends)
            ship_p50.append(pct(samples, 0.5))
            ship_p99.append(pct(samples, 0.99))
        rows.append(("append, local only (baseline), on a 10,000-line log", ms(local_p50), ms(local_p99)))
        rows.append(("append shipped to the sink (+ checkpoint)", ms(ship_p50), ms(ship_p99)))
        signers = {"bench": checkpoint.public_bytes(signer.key)}
        for size in (int(s) for s in a.sizes.split(",")):
            sink = Sink(Target(endpoint, "audit", 1), f"check-{size}")
            log = work / f"check-{size}.log"
            seed(sink, log, size)
            policy = findings.Policy(sink.stack, 1, signers, sink.origin)
            known = dict(enumerate(log.read_bytes().splitlines(True)))
            full: list[float] = []
            repeat: list[float] = []
            verifies: list[float] = []
            sound = sink.view(known).checkpoint_etags  # what a first sound check remembers
            for _ in range(a.runs):
                for verified, times in (((0, {}), full), ((size, sound), repeat)):
                    t0 = time.perf_counter()
                    found = findings.compare(log.read_bytes(), sink.view(known, verified), policy, None)
                    times.append(time.perf_counter() - t0)
                    assert found == [], found[:3]
                t0 = time.perf_counter()
                assert verify(str(log)).ok
                verifies.append(time.perf_counter() - t0)
            rows.append((f"audit verify, local only (baseline), {size:,} entries", secs(verifies), ""))
            rows.append((f"check-sink --full (every object read), {size:,} entries", secs(full), ""))
            rows.append((f"check-sink, again (only what is new read), {size:,} entries", secs(repeat), ""))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedian of {a.runs} runs, MinIO on 127.0.0.1, {a.appends} appends per run\n")
    print(f"| {'what':<58} | {'p50 / time':>10} | {'p99':>9} |")
    print(f"|{'-' * 60}|{'-' * 12}|{'-' * 11}|")
    for what, first, second in rows:
        print(f"| {what:<58} | {first:>10} | {second:>9} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
