"""A team shares one stack: the state in S3 on an ops endpoint (a second, real MinIO), the chain mirrored to its
write-once audit bucket. Two operators (two checkouts, two HOMEs and keys, two local logs) deploy and roll back
the same stack on the real engine: each sees the other's entries, the backend's lock serialises them, and the
chain never forks. A HIPAA stack whose sink is down refuses to deploy; a staging one warns and keeps going."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from pulumi import automation as auto

from fetchml_infra import ops_store
from fetchml_infra.audit import checkpoint, verify
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import Target
from tests import dockerhost
from tests.e2e.project import Project, bare_project, make_project, throwaway, workspace_options
from tests.e2e.test_rollback_story import ok
from tests.faults.harness import start_cli
from tests.providers.minio_server import Server, minio
from tests.providers.scripted_server import free_port

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"


@dataclass
class Team:
    a: Project
    b: Project
    server: Server
    sink_url: str

    def sink(self) -> Sink:
        return Sink(Target(self.server.endpoint, "audit", 30), self.a.stack_name)


def operator_env(tmp: Path, name: str, server: Server, backend: str) -> tuple[dict[str, str], str]:
    """An operator's own HOME (with a signing key in its default place) on the shared backend; the entry for
    auditSigners."""
    home = tmp / "home"
    key = checkpoint.create(home / ".config" / "fetchml-infra" / "audit-signing.key", f"operator-{name}")
    env = {
        **server.env,
        "HOME": str(home),
        "PULUMI_HOME": os.environ.get("PULUMI_HOME") or str(Path.home() / ".pulumi"),  # the built plugins
        "PULUMI_BACKEND_URL": backend,
        "FETCHML_ACTOR": f"operator-{name}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    return env, f"{key.name}:{key.public()}"


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    with minio(tmp_path / "ops-data") as server:
        for k, v in server.env.items():  # this process reads the sink and the state bucket too
            monkeypatch.setenv(k, v)
        boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1").create_bucket(Bucket="state")
        backend = ops_store.backend_url(server.endpoint).replace("fetchml-state", "state")
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        env_a, signer_a = operator_env(tmp_path / "a", "a", server, backend)
        env_b, signer_b = operator_env(tmp_path / "b", "b", server, backend)
        sink_url = f"{server.endpoint}/audit"
        Sink(Target(server.endpoint, "audit", 30), "-").create_bucket()
        a = make_project(
            tmp_path / "a",
            extra_env=env_a,
            image=A,
            auditSink=sink_url,
            auditRetentionDays="30",
            auditSigners=f"{signer_a},{signer_b}",
            proxyRouteDir=str(tmp_path / "route"),  # one Docker host: both checkouts write the proxy's one file
        )
        b = bare_project(tmp_path / "b", extra_env=env_b)
        b.stack_name, b.ports = a.stack_name, a.ports
        shutil.copy(a.root / f"Pulumi.{a.stack_name}.yaml", b.root)  # the stack's config, from git
        b.stack = auto.select_stack(a.stack_name, work_dir=str(b.root), opts=workspace_options(b, env_b))
        try:
            yield Team(a, b, server, sink_url)
        finally:
            a.teardown()


def engine_lock_appears(p: Project, running: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ops_store.engine_locks(p.env["PULUMI_BACKEND_URL"], p.stack_name):
        if running.poll() is not None or time.monotonic() > deadline:
            out = running.stdout.read() if running.stdout and running.poll() is not None else "(still running)"
            raise AssertionError(f"the engine never locked the stack in the S3 backend; the update said:\n{out}")
        time.sleep(0.2)


def test_two_operators_share_one_stack_and_one_chain(team: Team, tmp_path: Path) -> None:
    a, b = team.a, team.b
    ok(a.cli("deploy", "--image", A, "--reason", "first-release"))
    assert [e.actor for e in a.chain()] == ["operator-a"]
    out = ok(b.cli("deploy", "--image", B, "--reason", "second-release"))
    assert f"ok  audit sink {team.sink_url} and the local log are in step" in out  # B's mirror caught up first
    assert [(e.actor, e.to_image) for e in b.chain()] == [("operator-a", A), ("operator-b", B)]
    assert "operator-b" in ok(a.cli("history"))  # A sees B's update in the shared stack history

    # A rolls back while B tries to deploy: the backend's lock lets one through and tells the other why.
    rolling = start_cli(a, "rollback", "--to", A, "--reason", "health-check-failure")
    engine_lock_appears(a, rolling)
    refused = b.cli("deploy", "--image", B, "--reason", "racing")
    text = refused.stdout + refused.stderr
    assert refused.returncode == 2, text
    assert "is being updated by pulumi" in text, text
    assert "Nothing was changed" in text or "nothing was changed" in text, text
    assert rolling.wait(600) == 0, rolling.stdout.read() if rolling.stdout else ""

    ok(b.cli("audit", "sync"))
    ok(a.cli("audit", "sync"))
    assert a.audit_log.read_bytes() == b.audit_log.read_bytes()
    moves = [(e.action, e.actor, e.from_image, e.to_image) for e in a.chain()]
    assert moves == [
        ("deploy", "operator-a", "none", A),
        ("deploy", "operator-b", A, B),
        ("rollback", "operator-a", B, A),
    ]
    assert "ok: local 3 entries, sink 3 entries, 3 checkpoints verified" in ok(a.cli("audit", "check-sink"))
    assert "ok:" in ok(b.cli("audit", "check-sink"))
    script = subprocess.run(
        ["scripts/check-audit-sink.sh", "--stack", a.stack_name],
        cwd=Path(__file__).resolve().parents[2],
        env={**a.env, "FETCHML_PROJECT_DIR": str(a.root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0, script.stdout + script.stderr

    # The chain, not one checkout's config, says what failed: B's checkout never listed B in deniedImages.
    assert "deniedImages" not in (b.root / f"Pulumi.{b.stack_name}.yaml").read_text()
    denied = b.cli("deploy", "--image", B, "--reason", "again")
    assert denied.returncode == 2 and "--allow-denied" in denied.stderr, denied.stdout + denied.stderr
    assert f"{B} failed its health gate" in denied.stderr

    # A fresh checkout fills its mirror from the sink.
    a.audit_log.rename(tmp_path / "a-log-kept")
    out = ok(a.cli("audit", "sync"))
    assert "took 3 line(s)" in out
    assert a.audit_log.read_bytes() == b.audit_log.read_bytes()
    assert verify(str(a.audit_log)).length == 3

    # An entry written by hand reaches the sink as well; one aimed at another log than the stack's is refused.
    fix = ("--index", "2", "--reason", "entered-by-the-wrong-operator")
    shutil.copy(b.audit_log, tmp_path / "elsewhere.log")
    wrong = b.cli("audit", "correct", "--log", str(tmp_path / "elsewhere.log"), *fix)
    assert wrong.returncode == 2 and f"keeps its chain in {b.audit_log}" in wrong.stderr, wrong.stderr
    ok(b.cli("audit", "correct", "--log", str(b.audit_log), *fix))
    assert team.sink().length() == 4
    assert "took 1 line(s)" in ok(a.cli("audit", "sync"))
    assert "ok:" in ok(a.cli("audit", "check-sink"))

    # A crash tore B's last line after the sink took it: `audit seal` completes it from the sink, seals nothing.
    whole = b.audit_log.read_bytes()
    b.audit_log.write_bytes(whole[:-40])
    out = ok(b.cli("audit", "seal", "--log", str(b.audit_log)))
    assert "completed the torn last line" in out and b.audit_log.read_bytes() == whole


@pytest.mark.parametrize("compliance", ["hipaa", "none"])
def test_a_sink_that_is_down_refuses_a_hipaa_deploy_and_warns_elsewhere(tmp_path: Path, compliance: str) -> None:
    """No sink at that address: HIPAA refuses before anything exists, on the CLI and on plain `pulumi up`;
    staging deploys, keeps the entry local and says so."""
    dead = f"http://127.0.0.1:{free_port()}/audit"  # nothing listens there
    key = checkpoint.create(tmp_path / "key", "operator")
    hipaa = compliance == "hipaa"
    settings = {"environment": "prod", "complianceMode": "hipaa", "autoRollback": "false"} if hipaa else {}
    with throwaway(tmp_path, image=A, auditSink=dead, auditSigners=f"{key.name}:{key.public()}", **settings) as p:
        p.env["FETCHML_AUDIT_KEY"] = str(tmp_path / "key")
        p.env.update(AWS_ACCESS_KEY_ID="operator", AWS_SECRET_ACCESS_KEY="operator-key")  # a key; the sink is down
        done = p.cli("deploy", "--image", A, "--reason", "sink-down")
        text = done.stdout + done.stderr
        if hipaa:
            assert done.returncode == 2, text
            assert f"audit sink {dead} is unreachable" in text, text
            assert "A HIPAA stack records every change in its write-once sink: nothing was changed" in text
            assert dockerhost.containers_named(f"{p.prefix}-") == []
            plain = p.pulumi("up", "--yes", "--skip-preview")
            assert plain.returncode != 0
            assert "is unreachable" in plain.stdout + plain.stderr
            assert dockerhost.containers_named(f"{p.prefix}-") == []
            assert not p.audit_log.exists() or p.audit_log.read_bytes() == b""
            unchecked = p.cli("audit", "check-sink")
            assert unchecked.returncode == 2 and "SINK_UNREACHABLE: nothing was checked" in unchecked.stderr
        else:
            assert done.returncode == 0, text
            assert f"warning: audit sink {dead} is unreachable" in text, text
            assert [e.to_image for e in p.chain()] == [A]
            assert p.outputs()["audit_shipping"].startswith("written to the local log only")
            assert "warning: the audit entry was written to the local log only" in text
