"""Stuck-job detection and requeue against a real redis-server (Debian's, which bootstrap installs for the
Redis image), on a loopback port of its own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fetchml_infra import jobqueue
from tests.providers.scripted_server import free_port, process


@pytest.fixture
def r(tmp_path: Path) -> Iterator[Any]:
    server = shutil.which("redis-server")
    assert server, "redis-server is installed by scripts/bootstrap (scripts/images.sh)"
    port = free_port()
    client = jobqueue.connect(f"127.0.0.1:{port}")
    argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    with process(argv, client.ping):
        yield client


def take(r: Any, job: str, beating: bool) -> None:
    """What a worker does when it takes a job (and, if ``beating``, is alive)."""
    r.lpush(jobqueue.PENDING, job)
    assert r.lmove(jobqueue.PENDING, jobqueue.RUNNING, "RIGHT", "LEFT") == job
    if beating:
        r.set(jobqueue.HEARTBEAT + job, "worker-1", ex=5)


def test_only_jobs_without_a_heartbeat_now_and_later_are_stuck(r: Any) -> None:
    take(r, "dead-1", beating=False)
    take(r, "alive-1", beating=True)
    take(r, "dead-2", beating=False)
    waits: list[float] = []

    def meanwhile(seconds: float) -> None:  # during the settle time a worker picks dead-2 up again
        waits.append(seconds)
        r.set(jobqueue.HEARTBEAT + "dead-2", "worker-2", ex=5)

    assert jobqueue.find_stuck(r, 6.0, meanwhile) == ["dead-1"]
    assert waits == [6.0]
    assert jobqueue.state(address(r))["stuck"] == 1


def test_requeue_puts_a_stuck_job_first_in_line_once(r: Any) -> None:
    take(r, "dead-1", beating=False)
    r.lpush(jobqueue.PENDING, "queued-1")
    assert jobqueue.requeue(r, ["dead-1"]) == ["dead-1"]
    assert jobqueue.requeue(r, ["dead-1"]) == []  # a second run finds it gone: never queued twice
    assert r.lrange(jobqueue.RUNNING, 0, -1) == []
    assert r.rpop(jobqueue.PENDING) == "dead-1"  # the taking end: the next worker takes it first
    assert r.lrange(jobqueue.PENDING, 0, -1) == ["queued-1"]


def test_a_job_whose_worker_came_back_is_left_alone(r: Any) -> None:
    take(r, "slow-1", beating=False)
    stuck = jobqueue.without_heartbeat(r)
    r.set(jobqueue.HEARTBEAT + "slow-1", "worker-1", ex=5)  # between the look and the requeue
    assert jobqueue.requeue(r, stuck) == []
    assert r.lrange(jobqueue.RUNNING, 0, -1) == ["slow-1"]


def test_nothing_running_means_no_wait(r: Any) -> None:
    assert jobqueue.find_stuck(r, 6.0, lambda _s: pytest.fail("waited for nothing")) == []
    assert jobqueue.describe({"pending": 1, "running": 0, "failed": 0, "done": 2, "stuck": 0}) == (
        "pending 1, running 0, failed 0, done 2"
    )


def address(r: Any) -> str:
    kwargs = r.connection_pool.connection_kwargs
    return f"{kwargs['host']}:{kwargs['port']}"
