"""The bad night, on the real engine and Docker: every way an update can go wrong other than a failed gate.

After each fault: what the operator saw (exit code, message), which audit entries were appended (and that
the chain tells the truth), that no healthy tag was denied, whether the app serves, and that the next
command works with no file edited by hand.
"""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.project import Project, throwaway
from tests.faults import harness as h

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"


def ok(done: subprocess.CompletedProcess[str] | tuple[int, str], code: int = 0) -> str:
    rc, out = (done.returncode, done.stdout + done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    assert rc == code, f"exit {rc}, expected {code}\n{out[-4000:]}"
    return out


def truthful(p: Project) -> list[tuple[str, str, str, str]]:
    """The chain's rules: each move starts where the last one ended, none moves an image to itself, every
    reason is one line. Returns the moves."""
    chain = h.moves(p)
    for before, after in itertools.pairwise(chain):
        assert after[2] == before[3], f"entry from={after[2]} does not continue the previous to={before[3]}"
    assert all(m[2] != m[3] for m in chain), f"an entry moves an image to itself: {chain}"
    assert all("\n" not in e.reason for e in p.chain())
    return chain


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="staging", autoRollback="true") as p:
        ok(p.cli("deploy", "--image", A, "--reason", "first"))
        yield p


def test_two_operators_at_once(staging: Project) -> None:
    p = staging
    first = h.start_cli(p, "deploy", "--image", B, "--reason", "release")
    time.sleep(0.3)
    out = ok(p.cli("rollback", "--to", A, "--reason", "second-operator"), code=2)
    assert "is held by e2e-operator" in out and "fetchml-infra deploy --stack" in out and "--wait" in out
    ok(h.finish(first))
    assert truthful(p) == [("deploy", "success", "none", A), ("deploy", "success", A, B)]
    assert h.denied(p) == [] and h.serving(p) == B

    # With --wait the second operator queues behind the first instead.
    first = h.start_cli(p, "rollback", "--to", A, "--reason", "one")
    time.sleep(0.3)
    ok(p.cli("deploy", "--image", B, "--reason", "two", "--wait", "300"))
    ok(h.finish(first))
    assert truthful(p)[-2:] == [("rollback", "success", B, A), ("rollback", "success", A, B)]
    assert h.serving(p) == B


def test_a_name_the_stack_needs_is_taken(staging: Project) -> None:
    p = staging
    stray = p.worker(B, 2)
    subprocess.run(["docker", "run", "-d", "--name", stray, "fetchml-infra/redis:7.0"], check=True, capture_output=True)
    try:
        before, chain = h.app_ids(p), h.moves(p)
        ok(p.pulumi("config", "set", "workerReplicas", "2"))
        out = ok(p.cli("deploy", "--image", B), code=2)
        assert f"container '{stray}'" in out and "does not manage it" in out and "Nothing was changed" in out
        assert h.app_ids(p) == before and h.moves(p) == chain and p.config("image") == A
        assert h.serving(p) == A and h.denied(p) == []
    finally:
        subprocess.run(["docker", "rm", "-f", stray], capture_output=True)
    ok(p.cli("deploy", "--image", B))
    assert truthful(p)[-1] == ("deploy", "success", A, B)


def test_a_foreign_listener_holds_the_api_port_of_a_new_stack(tmp_path: Path) -> None:
    with throwaway(tmp_path, image=A) as p, socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", p.ports["api"]))
        held.listen()
        out = ok(p.cli("deploy", "--image", A), code=2)
        assert f"127.0.0.1:{p.ports['api']} (apiHostPort)" in out and "Nothing was changed" in out
        assert not p.audit_log.exists() and h.container_id(f"{p.prefix}-redis") is None
        held.close()
        ok(p.cli("deploy", "--image", A))
        assert truthful(p) == [("deploy", "success", "none", A)]


def test_an_unwritable_audit_log_stops_the_deploy_before_anything_changes(staging: Project) -> None:
    p = staging
    before, log = h.app_ids(p), p.audit_log.read_bytes()
    subprocess.run(["chattr", "+i", str(p.audit_log)], check=True)
    try:
        out = ok(p.cli("deploy", "--image", B), code=2)
        assert "Nothing was changed" in out and "chattr -i" in out
        assert h.app_ids(p) == before and p.config("image") == A
        # The plain path refuses too, from the program, before any resource is registered.
        ok(p.pulumi("config", "set", "image", B))
        up = p.pulumi("up", "--yes", "--skip-preview")
        assert up.returncode != 0 and "audit entry could not be written" in up.stdout + up.stderr
        assert h.app_ids(p) == before and h.serving(p) == A
        # Pulumi drops the stack outputs of an update whose program failed; the next update writes them again.
        ok(p.pulumi("config", "set", "image", A))
    finally:
        subprocess.run(["chattr", "-i", str(p.audit_log)], check=True)
    assert p.audit_log.read_bytes() == log
    ok(p.cli("deploy", "--image", B))
    assert truthful(p)[-1] == ("deploy", "success", A, B)
    assert p.outputs()["image"] == B and p.outputs()["audit_length"] == 2


@pytest.mark.parametrize("point", ["before-first-create", "new-api-started", "after-switch"])
def test_engine_killed(staging: Project, point: str) -> None:
    p = staging
    cli, engine, _ = h.deploy_in_background(p, B, "--reason", "release")
    if point == "before-first-create":
        h.until_engine_locked(p)  # begun, and the new API is created seconds later
    elif point == "new-api-started":
        h.wait_for(lambda: h.ran(p, B), 120, "the new API to start")
    else:
        h.until_routed(p, B)
    h.freeze(engine)
    b_ran = h.ran(p, B)
    h.kill_frozen_engine(engine)
    out = ok(h.finish(cli), code=4)
    # Until the switch the old release serves: a killed deploy does not take the API away.
    assert h.serving(p) == (B if point == "after-switch" else A)

    assert "killed" in out and f"fetchml-infra recover --stack {p.stack_name}" in out
    assert h.denied(p) == []
    chain = truthful(p)
    if not b_ran:
        assert chain[-1] == ("deploy", "success", "none", A), "nothing ran B, so nothing may be recorded"
        assert p.config("image") == A
    # The next command names recover; recover clears the stale lock and brings the app back.
    out = ok(p.cli("deploy", "--image", B), code=2)
    assert "fetchml-infra recover" in out
    out = ok(p.cli("recover"))
    assert "removed the engine lock" in out
    h.wait_serving(p, A)
    after = truthful(p)
    if b_ran:  # a container had started on B: that move is on record, once
        assert after.count(("deploy", "failure", A, B)) == 1
    else:  # nothing ran B, so no entry may claim it did
        assert all(m[3] != B for m in after), after
    assert ok(p.cli("status")) and h.denied(p) == []
    ok(p.cli("deploy", "--image", B))
    assert truthful(p)[-1][1:] == ("success", truthful(p)[-1][2], B)
    assert h.serving(p) == B


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_operator_interrupts_the_cli(staging: Project, sig: signal.Signals) -> None:
    p = staging
    cli, engine, _ = h.deploy_in_background(p, B)
    h.wait_for(lambda: h.ran(p, B), 120, "the new API to start")
    cli.send_signal(sig)
    out = ok(h.finish(cli), code=4)
    assert "cancelled" in out and "fetchml-infra recover" in out
    h.wait_for(lambda: not Path(f"/proc/{engine}").exists(), 60, "the engine to exit")
    assert h.denied(p) == []
    truthful(p)
    ok(p.cli("recover"))
    h.wait_serving(p, A if truthful(p)[-1][3] == A else B)
    ok(p.cli("deploy", "--image", B))
    assert h.serving(p) == B and truthful(p)[-1][3] == B


def test_cli_killed_the_engine_finishes_and_records(staging: Project) -> None:
    p = staging
    cli, engine, _ = h.deploy_in_background(p, B)
    h.until_engine_locked(p)
    cli.kill()
    cli.wait()
    out = ok(p.cli("rollback", "--to", A, "--reason", "meanwhile"), code=2)
    assert "is being updated by pulumi" in out
    h.wait_for(lambda: not Path(f"/proc/{engine}").exists(), 300, "the engine to finish on its own", step=0.5)
    assert truthful(p)[-1] == ("deploy", "success", A, B) and h.serving(p) == B
    ok(p.cli("status"))
    ok(p.cli("rollback", "--to", A, "--reason", "after"))


def test_plain_pulumi_up_holds_the_stack(staging: Project) -> None:
    p = staging
    ok(p.pulumi("config", "set", "image", B))
    plain = subprocess.Popen(
        ["pulumi", "up", "--yes", "--skip-preview", "--stack", p.stack_name, "--non-interactive"],
        cwd=p.root,
        env=p.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    locks = Path(p.env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi" / "locks"
    h.wait_for(lambda: any(locks.rglob("*.json")), 60, "the plain up to take its lock", step=0.02)
    chain = h.moves(p)
    out = ok(p.cli("rollback", "--to", A, "--reason", "race"), code=2)
    assert "is being updated by pulumi" in out and "nothing recorded" in out
    assert h.moves(p) == chain
    assert plain.wait(timeout=300) == 0
    assert truthful(p)[-1] == ("deploy", "success", A, B)
    ok(p.cli("rollback", "--to", A, "--reason", "after"))


def test_the_proxy_is_down_at_the_switch(staging: Project) -> None:
    """The proxy stops between the new API's start and the switch: the switch fails as the infrastructure's
    fault (B is not denied), and once the proxy runs again it serves A, which it never stopped routing."""
    p = staging
    cli, engine, _ = h.deploy_in_background(p, B)
    h.wait_for(lambda: h.ran(p, B), 120, "the new API to start")
    h.freeze(engine)
    subprocess.run(["docker", "stop", f"{p.prefix}-proxy"], check=True, capture_output=True)
    h.thaw(engine)
    out = ok(h.finish(cli), code=4)
    assert "admin API" in out and "did not answer" in out and "fetchml-infra recover" in out, out
    assert "RESTORE FAILED" in out  # the restore needs the proxy too
    assert h.denied(p) == [], "a proxy that does not answer is no verdict on the image"
    truthful(p)
    subprocess.run(["docker", "start", f"{p.prefix}-proxy"], check=True, capture_output=True)
    h.wait_serving(p, A)  # Caddy resumes the config it last loaded: A's
    ok(p.cli("recover"))
    h.wait_serving(p, A)
    ok(p.cli("deploy", "--image", B))
    assert h.serving(p) == B and truthful(p)[-1][1:] == ("success", truthful(p)[-1][2], B)


def test_redis_down_during_the_post_rollback_checklist(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", B))
    subprocess.run(["docker", "stop", f"{p.prefix}-redis"], check=True, capture_output=True)
    try:
        out = ok(p.cli("rollback", "--to", A, "--reason", "bad-release"), code=1)
        assert "[x] health" in out and "[ ] queue state: Redis did not answer" in out
        assert truthful(p)[-1] == ("rollback", "success", B, A)
    finally:
        subprocess.run(["docker", "start", f"{p.prefix}-redis"], check=True, capture_output=True)
    assert h.serving(p) == A


def test_docker_engine_down_refuses_before_anything(staging: Project) -> None:
    p = staging
    chain = h.moves(p)
    h.stop_dockerd()
    try:
        out = ok(p.cli("deploy", "--image", B), code=2)
        assert "the Docker engine does not answer" in out and "Nothing was changed" in out
        assert p.config("image") == A and h.moves(p) == chain
    finally:
        h.start_dockerd()
    h.wait_serving(p, A)  # the containers restart with the engine (restart: unless-stopped)
    ok(p.cli("deploy", "--image", B))
    assert truthful(p)[-1] == ("deploy", "success", A, B) and h.denied(p) == []


def test_docker_engine_restarts_mid_update(staging: Project) -> None:
    p = staging
    cli, engine, _ = h.deploy_in_background(p, B)
    h.wait_for(lambda: h.ran(p, B), 120, "the new API to start")
    h.freeze(engine)
    h.stop_dockerd()
    h.start_dockerd()

    h.thaw(engine)
    rc, out = h.finish(cli)
    assert rc in (0, 3, 4), out
    assert h.denied(p) == [], f"an engine restart is no verdict on {B}\n{out}"
    truthful(p)
    if rc != 0:
        ok(p.cli("recover"))
    ok(p.cli("deploy", "--image", B))
    h.wait_serving(p, B)
    assert h.denied(p) == []
