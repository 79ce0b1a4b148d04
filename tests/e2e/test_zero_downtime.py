"""Zero downtime on the real engine: a probe through the public port (every 20 ms, counted) sees no failed
request during a deploy, a failed deploy and a rollback; a broken release never answers through the proxy;
the proxy container is the same one (ID and start time) from the first deploy to the last."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests import dockerhost
from tests.e2e.project import Project, throwaway

A, B, BROKEN = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee"
# The chain after deploy A, deploy B, a failed deploy of BROKEN (staging rolls back to B by itself: a config
# and record change, B served throughout) and a rollback to A.
STORY = [
    ("deploy", "success", "none", A),
    ("deploy", "success", A, B),
    ("deploy", "failure", B, BROKEN),
    ("rollback", "success", BROKEN, B),
    ("rollback", "success", B, A),
]
LIMIT = 6000  # a bounded probe: at most two minutes of requests per operation


@contextmanager
def probing(p: Project, host: str = "127.0.0.1") -> Iterator[list[str]]:
    """Every answer through the public port while the block runs: the version, or what went wrong."""
    seen: list[str] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=2, headers={"Connection": "close"}) as client:
            while not stop.is_set() and len(seen) < LIMIT:
                try:
                    r = client.get(f"http://{host}:{p.ports['api']}/health")
                    seen.append(r.json()["version"] if r.status_code == 200 else f"HTTP {r.status_code}")
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    seen.append(f"error {exc}")
                time.sleep(0.02)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        time.sleep(0.3)
        yield seen
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert len(seen) < LIMIT, "the operation outran the bounded probe"


def failures(seen: list[str]) -> list[str]:
    return [s for s in seen if not s.startswith("sha-")]


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    out = done.stdout + done.stderr
    assert done.returncode == code, out[-4000:]
    return out


def moves(p: Project) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()]


def test_staging_deploy_failed_deploy_and_rollback_fail_no_request(tmp_path: Path) -> None:
    with throwaway(tmp_path, image=A) as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        proxy = dockerhost.identity(f"{p.prefix}-proxy")

        with probing(p) as seen:
            ok(p.cli("deploy", "--image", B, "--reason", "release"))
        assert failures(seen) == [] and seen[0] == A and seen[-1] == B, sorted(set(seen))
        assert dockerhost.inspect("container", p.api(A)) is None  # drained, then deleted
        b_api = dockerhost.identity(p.api(B))

        with probing(p) as seen:  # the gate fails; staging rolls back by itself
            out = ok(p.cli("deploy", "--image", BROKEN, "--reason", "bad release"), code=3)
        assert failures(seen) == [] and set(seen) == {B}, sorted(set(seen))  # BROKEN never answered
        assert "rolled back" in out
        assert dockerhost.identity(p.api(B)) == b_api  # the serving API was never touched
        assert dockerhost.inspect("container", p.api(BROKEN)) is None

        with probing(p) as seen:
            ok(p.cli("rollback", "--to", A, "--reason", "back"))
        assert failures(seen) == [] and seen[0] == B and seen[-1] == A, sorted(set(seen))

        assert dockerhost.identity(f"{p.prefix}-proxy") == proxy  # never replaced, never restarted
        assert moves(p) == STORY


def test_prod_keeps_serving_the_old_release_after_a_failed_plain_up(tmp_path: Path) -> None:
    prod = {"environment": "prod", "complianceMode": "hipaa", "autoRollback": "false", "healthTimeoutSeconds": "6"}
    with throwaway(tmp_path, image=A, **prod) as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        proxy = dockerhost.identity(f"{p.prefix}-proxy")

        ok(p.pulumi("config", "set", "image", BROKEN))
        with probing(p) as seen:
            up = p.pulumi("up", "--yes", "--skip-preview")
        assert up.returncode != 0 and "health gate failed" in up.stdout + up.stderr
        assert failures(seen) == [] and set(seen) == {A}, sorted(set(seen))
        # The operator decides while A serves: the broken API runs beside it, unrouted, and status says so.
        assert dockerhost.container(p.api(BROKEN))["State"]["Running"] is True
        status = p.cli("status")
        assert f"routes to api-{A}" in " ".join(status.stdout.split())

        ok(p.pulumi("config", "set", "image", A))
        with probing(p) as seen:
            ok(p.pulumi("up", "--yes", "--skip-preview"))
        assert failures(seen) == [] and set(seen) == {A}
        assert dockerhost.inspect("container", p.api(BROKEN)) is None
        assert dockerhost.identity(f"{p.prefix}-proxy") == proxy
        assert moves(p)[-2:] == [("deploy", "failure", A, BROKEN), ("rollback", "success", BROKEN, A)]
