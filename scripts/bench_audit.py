#!/usr/bin/env python3
"""Benchmark the audit log: verify a large chain, and the latency of fsynced appends to it.

    .venv/bin/python scripts/bench_audit.py [--entries 1000000] [--appends 2000] [--runs 5] [--dir DIR]

Writes a chain of --entries lines into a temporary directory (under --dir, default the system temp dir),
times ``verify`` on it (median of --runs, reading from disk each time), then times --appends appends to the
same file (each one locks, reads the last line, writes and fsyncs) and verifies the result.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from fetchml_infra import audit

TARGET_VERIFY_S = 3.0


def generate(path: Path, n: int) -> float:
    """Write n chained entries with make_entry (so the format is audit's own); returns seconds taken."""
    t0 = time.perf_counter()
    stamp = datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
    head, batch = audit.ZERO_HASH, []
    with open(path, "wb") as f:
        for i in range(n):
            e = audit.make_entry(
                head,
                action="rollback" if i % 3 else "deploy",
                outcome="success",
                from_image=f"sha-{i:07x}",
                to_image=f"sha-{i + 1:07x}",
                actor="deploy-user",
                reason="health-check-failure",
                stack="prod",
                time=stamp,
            )
            batch.append(e.render())
            head = e.hash
            if len(batch) == 10_000:
                f.write(("\n".join(batch) + "\n").encode())
                batch.clear()
        if batch:
            f.write(("\n".join(batch) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def hash_lines(path: Path) -> int:
    """The baseline for verify: sha256 of every line and nothing else (no parsing, no links, no checks)."""
    sha = hashlib.sha256
    n = 0
    with open(path, "rb") as f:
        for line in f:
            sha(line).digest()
            n += 1
    return n


def echo_append(path: Path, line: str) -> None:
    """The baseline for append: the procedure's `echo ... >> .prod-audit.log` (no lock, no chain, no fsync)."""
    with open(path, "a") as f:
        f.write(line + "\n")


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to make the temporary directory (pick the real disk)")
    args = ap.parse_args(argv)

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=args.dir) as d:
        log = Path(d) / "bench.audit.log"
        gen = generate(log, args.entries)
        size = log.stat().st_size
        rows.append(("log", f"{args.entries:,} entries, {size / 1e6:.1f} MB, written in {gen:.1f} s"))

        times, verdict = [], None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            verdict = audit.verify(log)
            times.append(time.perf_counter() - t0)
        assert verdict is not None and verdict.ok and verdict.length == args.entries, verdict
        med = statistics.median(times)
        rows.append(
            (
                f"verify (median of {args.runs})",
                f"{med:.2f} s  ({med / args.entries * 1e6:.2f} us/entry; min {min(times):.2f} s, "
                f"target < {TARGET_VERIFY_S:.0f} s: {'met' if med < TARGET_VERIFY_S else 'MISSED'})",
            )
        )
        base = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            hash_lines(log)
            base.append(time.perf_counter() - t0)
        rows.append(
            (
                f"baseline: sha256 per line only (median of {args.runs})",
                f"{statistics.median(base):.2f} s  (verify is {med / statistics.median(base):.1f}x this)",
            )
        )
        cpu = time.process_time()
        audit.verify(log)
        rows.append(("verify CPU time", f"{time.process_time() - cpu:.2f} s"))

        t0 = time.perf_counter()
        head, length = audit.head(log)
        rows.append(("head()", f"{(time.perf_counter() - t0) * 1e3:.1f} ms"))

        lat = []
        for i in range(args.appends):
            t0 = time.perf_counter()
            audit.append(
                log,
                action="deploy",
                outcome="success",
                from_image=f"sha-{i}",
                to_image=f"sha-{i + 1}",
                actor="bench",
                reason="latency",
                stack="prod",
            )
            lat.append(time.perf_counter() - t0)
        lat.sort()
        rows.append(
            (
                f"append x{args.appends:,} (lock+read head+write+fsync)",
                f"p50 {percentile(lat, 50) * 1e3:.2f} ms, p99 {percentile(lat, 99) * 1e3:.2f} ms, "
                f"max {lat[-1] * 1e3:.2f} ms",
            )
        )
        plain, echo_lat = Path(d) / "plain.log", []
        for i in range(args.appends):
            t0 = time.perf_counter()
            echo_append(
                plain, f"2024-01-15T14:30:00Z | rollback | success | from=sha-{i} | to=sha-{i + 1} | actor=bench"
            )
            echo_lat.append(time.perf_counter() - t0)
        echo_lat.sort()
        rows.append(
            (
                f"baseline: echo >> log x{args.appends:,} (procedure)",
                f"p50 {percentile(echo_lat, 50) * 1e3:.2f} ms, p99 {percentile(echo_lat, 99) * 1e3:.2f} ms",
            )
        )
        after = audit.verify(log, expected_head=head, expected_length=length, allow_longer=True)
        assert after.ok and after.length == args.entries + args.appends, after
        rows.append(("verify after appends", f"ok, {after.length:,} lines"))

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
    else:
        table = Table(title=f"audit log benchmark ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
        table.add_column("measure")
        table.add_column("result")
        for k, v in rows:
            table.add_row(k, v)
        Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
