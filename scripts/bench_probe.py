"""What the rollback benchmark measures, route by route: a probe through the public port and a queue of jobs.

The probe asks GET /health every 20 ms on a fresh connection (a client that reuses one would see the same
failures, later) and counts every answer that is not HTTP 200 with status ok as a failed request. The jobs are
plain Redis list entries the stand-in workers take with BLMOVE, as FetchML's own do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

INTERVAL = 0.02


@dataclass
class Probe:
    url: str
    samples: list[tuple[float, str | None]] = field(default_factory=list)  # (time, version) or None: failed
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=1.0, trust_env=False, headers={"Connection": "close"}) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(self.url)
                    body = r.json() if r.status_code == 200 else {}
                    version = str(body.get("version")) if body.get("status") == "ok" else None
                except (httpx.HTTPError, ValueError):
                    version = None
                self.samples.append((time.monotonic(), version))
                time.sleep(INTERVAL)


@dataclass(frozen=True)
class Row:
    failed: int  # probes that got no healthy answer
    probes: int
    to_new: float  # seconds from the command's start until the probe first saw the new release (nan: never)
    seen: frozenset[str]  # versions that answered


def measure(url: str, new: str, action: Callable[[], None], settle: float = 1.0) -> Row:
    """Probe ``url`` while ``action`` runs, and ``settle`` seconds after it returns."""
    probe = Probe(url)
    thread = threading.Thread(target=probe.run, daemon=True)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    action()
    time.sleep(settle)
    probe.stop.set()
    thread.join()
    after = [(t, v) for t, v in probe.samples if t >= start]
    first = next((t - start for t, v in after if v == new), float("nan"))
    return Row(sum(v is None for _, v in after), len(after), first, frozenset(v for _, v in after if v))


def queue_jobs(port: int, prefix: str, count: int) -> list[str]:
    jobs = [f"{prefix}-{i}" for i in range(count)]
    redis.Redis(host="127.0.0.1", port=port).lpush("fetchml:queue:pending", *jobs)
    return jobs


def tally(port: int, jobs: list[str], timeout: float = 300) -> tuple[int, int, int]:
    """(done, lost, run twice) once the queue is empty (or ``timeout`` passed): lost are jobs never finished."""
    r: Any = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout
    while (r.llen("fetchml:queue:pending") or r.llen("fetchml:queue:running")) and time.monotonic() < deadline:
        time.sleep(0.5)
    finished = {k.decode(): int(v) for k, v in r.hgetall("fetchml:jobs:finished").items()}
    counts = [finished.get(job, 0) for job in jobs]
    return sum(c >= 1 for c in counts), sum(c == 0 for c in counts), sum(c > 1 for c in counts)
