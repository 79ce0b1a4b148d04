"""The job queue in the stack's Redis, as the workers use it, and the one repair it needs: stuck jobs.

A worker moves a job atomically from ``pending`` to ``running`` (BLMOVE) and keeps the key
``fetchml:heartbeat:<id>`` alive (a 5 s expiry, renewed every second) while it runs it. On SIGTERM it
finishes the job or puts it back. A worker that dies (SIGKILL, a lost host) leaves its job on ``running``
with a heartbeat that expires: that job is stuck. Nothing here runs on a deploy or a rollback (which never
touch queue state); ``fetchml-infra queue requeue-stuck`` puts stuck jobs back, and is audited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

PENDING, RUNNING, FAILED, DONE = (
    "fetchml:queue:pending",
    "fetchml:queue:running",
    "fetchml:queue:failed",
    "fetchml:jobs:done",
)
HEARTBEAT = "fetchml:heartbeat:"
SETTLE_SECONDS = 6.0  # longer than a heartbeat's expiry: a job just taken has its heartbeat by then

# Atomic per job: still on running and still without a heartbeat, then off running and onto the taking end
# of pending (the next worker takes it first). A worker that came back to it meanwhile keeps it.
_REQUEUE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""


def connect(address: str) -> Any:
    """A Redis client for ``host:port`` (an IPv6 host in brackets), with short timeouts."""
    import redis

    host, _, port = address.rpartition(":")
    return redis.Redis(host=host.strip("[]"), port=int(port), socket_timeout=3, decode_responses=True)


def without_heartbeat(r: Any) -> list[str]:
    """The running jobs whose worker is not (or no longer) beating, oldest first."""
    running = list(reversed(r.lrange(RUNNING, 0, -1)))  # BLMOVE pushes on the left
    return [job for job in running if not r.exists(HEARTBEAT + job)]


def state(address: str) -> dict[str, int]:
    """Pending, running, failed and done counts, and ``stuck``: running jobs without a heartbeat."""
    r = connect(address)
    try:
        return {
            "pending": int(r.llen(PENDING)),
            "running": int(r.llen(RUNNING)),
            "failed": int(r.llen(FAILED)),
            "done": int(r.scard(DONE)),
            # A worker sets the heartbeat a moment after it takes a job: look twice before calling it stuck.
            "stuck": len(find_stuck(r, 0.5)),
        }
    finally:
        r.close()


def describe(counts: dict[str, int]) -> str:
    """``pending 0, running 1, failed 0, done 4`` and, when there are any, the stuck ones."""
    text = ", ".join(f"{k} {counts[k]}" for k in ("pending", "running", "failed", "done"))
    return text + (f"; stuck {counts['stuck']} (running with no worker heartbeat)" if counts.get("stuck") else "")


def find_stuck(r: Any, settle: float = SETTLE_SECONDS, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Jobs without a heartbeat now and ``settle`` seconds later: no live worker holds them."""
    first = without_heartbeat(r)
    if not first:
        return []
    sleep(settle)
    return [job for job in without_heartbeat(r) if job in first]


def requeue(r: Any, jobs: list[str]) -> list[str]:
    """Put each job back on pending if it is still stuck; the ones that moved."""
    script = r.register_script(_REQUEUE)
    return [job for job in jobs if script(keys=[RUNNING, PENDING, HEARTBEAT + job], args=[job]) == 1]
