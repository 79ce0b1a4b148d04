"""Workers and jobs in flight on the real engine: a deploy or rollback replaces the workers without losing a
job or running one twice, and a worker killed mid-job leaves a stuck job that `queue requeue-stuck` puts
back (audited as a queue action, never as a move)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.project import Project, throwaway

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, f"exit {done.returncode}, expected {code}\n{done.stdout[-3000:]}\n{done.stderr}"
    return done.stdout + done.stderr


def until(what: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def in_flight(p: Project, job: str) -> bool:
    r: Any = p.redis()
    return job.encode() in r.lrange("fetchml:queue:running", 0, -1) and bool(r.exists(f"fetchml:heartbeat:{job}"))


def finished(p: Project) -> dict[str, int]:
    r: Any = p.redis()
    return {k.decode(): int(v) for k, v in r.hgetall("fetchml:jobs:finished").items()}


def queue_jobs(p: Project, jobs: list[str]) -> None:
    p.redis().lpush("fetchml:queue:pending", *jobs)


def test_replacing_workers_with_jobs_in_flight_loses_none_and_runs_none_twice(tmp_path: Path) -> None:
    with throwaway(tmp_path, image=A, jobSeconds="1.5", workerStopGraceSeconds="10") as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        jobs = [f"short-{i}" for i in range(6)]
        queue_jobs(p, jobs)
        until("a job in flight", lambda: in_flight(p, "short-0"))
        ok(p.cli("deploy", "--image", B, "--reason", "release with a job running"))  # SIGTERM: it finishes
        until("every job done", lambda: set(finished(p)) == set(jobs), timeout=60)
        assert finished(p) == {j: 1 for j in jobs}
        assert p.redis().llen("fetchml:queue:running") == 0

        # A job longer than the grace period is put back, and the new worker runs it once, whole.
        p.stack.set_config("fetchml:jobSeconds", auto.ConfigValue("30"))
        p.stack.set_config("fetchml:workerStopGraceSeconds", auto.ConfigValue("3"))
        ok(p.pulumi("up", "--yes", "--skip-preview"))
        queue_jobs(p, ["long-1"])
        until("the long job in flight", lambda: in_flight(p, "long-1"))
        out = ok(p.cli("rollback", "--to", A, "--reason", "back with a long job running"))
        assert "[x] queue state" in out
        until("the long job done", lambda: finished(p).get("long-1") == 1, timeout=120)
        assert finished(p)["long-1"] == 1 and p.redis().llen("fetchml:queue:running") == 0
        # The old worker (B) could not finish 30 s of work within 3 s of SIGTERM: the new one (A) ran it, once.
        result = json.loads(p.minio().get_object("artifacts", "jobs/long-1/result.json").read())
        assert (result["job"], result["version"]) == ("long-1", A)


def test_a_worker_killed_mid_job_leaves_a_stuck_job_that_requeue_stuck_puts_back(tmp_path: Path) -> None:
    with throwaway(tmp_path, image=A, jobSeconds="4") as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        queue_jobs(p, ["job-k"])
        until("the job in flight", lambda: in_flight(p, "job-k"))
        worker = p.worker(A)
        subprocess.run(["docker", "kill", "--signal", "KILL", worker], check=True, capture_output=True)
        subprocess.run(["docker", "start", worker], check=True, capture_output=True)  # whatever Docker did
        until("the heartbeat to expire", lambda: not p.redis().exists("fetchml:heartbeat:job-k"), timeout=15)
        assert p.redis().lrange("fetchml:queue:running", 0, -1) == [b"job-k"]  # stuck, not lost

        status = ok(p.cli("status"), code=1)  # not all well: a job waits for nobody
        assert "stuck 1 (running with no worker heartbeat)" in " ".join(status.split())
        assert f"stuck jobs: put them back with: fetchml-infra queue requeue-stuck --stack {p.stack_name}\n" in status
        moves = [(e.action, e.to_image) for e in p.chain()]
        out = ok(p.cli("queue", "requeue-stuck", "--reason", "worker-1 was killed"))
        assert f"requeued 1 stuck job on '{p.stack_name}': job-k" in out
        until("the requeued job done", lambda: finished(p).get("job-k") == 1, timeout=30)
        last = p.chain()[-1]
        assert (last.action, last.from_image, last.to_image, last.actor) == ("requeue", "-", "-", "e2e-operator")
        assert last.reason == "requeued 1 stuck job(s): job-k: worker-1 was killed"
        assert [(e.action, e.to_image) for e in p.chain() if e.action != "requeue"] == moves  # no move claimed

        # Nothing stuck now: no entry, exit 0; the history shows the queue action.
        out = ok(p.cli("queue", "requeue-stuck", "--settle", "0"))
        assert "no stuck job" in out and p.chain()[-1] == last
        assert "requeue" in ok(p.cli("history"))
