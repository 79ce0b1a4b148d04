"""Deploy, fail, roll back, recover, for real: the operator CLI and the plain `pulumi up` path on the real
engine and Docker. After every step nothing persistent moved and the audit chain verifies."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.project import Project, throwaway

pytestmark = pytest.mark.e2e
A, B, BROKEN, CRASH, NONCOMPLIANT = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee", "sha-dead001", "sha-0dd0c0d"
ARTIFACT = b"model-weights-" * 500


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="staging", autoRollback="true") as p:
        yield p


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="prod", complianceMode="hipaa", autoRollback="false") as p:
        yield p


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert (
        done.returncode == code
    ), f"exit {done.returncode}, expected {code}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return str(done.stdout + done.stderr)


def seed_data(p: Project) -> None:
    """A job the worker finishes, a job left pending in another queue, and an artifact object."""
    assert p.run_job("job-1"), "the worker did not take the job"
    r = p.redis()
    r.lpush("fetchml:queue:failed", "job-0")
    mc = p.minio()
    assert mc.bucket_exists("artifacts")  # the stack made it, for the app's own key (app_access)
    assert b'"job":"job-1"' in mc.get_object("artifacts", "jobs/job-1/result.json").read()  # by the worker
    mc.put_object("artifacts", "job-1/model.bin", io.BytesIO(ARTIFACT), len(ARTIFACT))


class Invariants:
    """What must hold after every step: nothing persistent moved, the data is there, the chain verifies."""

    def __init__(self, p: Project) -> None:
        self.p = p
        self.identities = p.data_identities()
        self.volumes = p.volumes()

    def check(self) -> None:
        p = self.p
        assert p.data_identities() == self.identities, "Redis or MinIO was replaced or restarted"
        assert p.volumes() == self.volumes
        r = p.redis()
        assert r.sismember("fetchml:jobs:done", "job-1")
        assert r.lrange("fetchml:queue:failed", 0, -1) == [b"job-0"]
        assert p.minio().get_object("artifacts", "job-1/model.bin").read() == ARTIFACT
        p.chain()  # verifies


def moves(p: Project) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()]


def test_staging_story(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    seed_data(p)
    inv = Invariants(p)

    ok(p.cli("deploy", "--image", B))
    inv.check()
    assert moves(p)[-1] == ("deploy", "success", A, B)

    # A broken image on staging fails its gate and rolls back to B by itself.
    out = ok(p.cli("deploy", "--image", BROKEN), code=3)
    assert "health gate failed" in out and "HTTP 503" in out
    assert f"rolled back to {B}" in out
    inv.check()
    assert moves(p)[-2:] == [("deploy", "failure", B, BROKEN), ("rollback", "success", BROKEN, B)]
    assert p.chain()[-1].reason == "health-check-failure"
    assert p.config("image") == B  # desired state and reality agree
    assert json.loads(p.config("deniedImages")) == [BROKEN]
    assert p.outputs()["image"] == B

    # The denied tag is refused before anything changes.
    length = len(p.chain())
    out = ok(p.cli("deploy", "--image", BROKEN), code=2)
    assert "--allow-denied" in out
    assert len(p.chain()) == length and p.config("image") == B

    # Roll back to A with the CLI: the checklist is printed and all green.
    out = ok(p.cli("rollback", "--to", A, "--reason", "bad-release"))
    assert "[x] health" in out and "[x] queue state: pending 0, running 0, failed 1, done 1" in out
    assert "[x] audit chain" in out
    inv.check()
    assert moves(p)[-1] == ("rollback", "success", B, A)
    assert p.chain()[-1].actor == "e2e-operator" and p.chain()[-1].reason == "bad-release"

    # The 3 a.m. path: plain `pulumi config set image ... && pulumi up` is an audited rollback too.
    ok(p.pulumi("config", "set", "image", B))
    ok(p.pulumi("up", "--yes", "--skip-preview"))
    inv.check()
    assert moves(p)[-1] == ("rollback", "success", A, B)

    # Stack history names every image and tells deploys from rollbacks.
    rows = json.loads(ok(p.cli("history", "--json")))
    assert [(r["image"], r["result"], r["action"]) for r in rows] == [
        (B, "succeeded", "rollback"),
        (A, "succeeded", "rollback"),
        (B, "succeeded", "rollback"),
        (BROKEN, "failed", "deploy"),
        (B, "succeeded", "deploy"),
        (A, "succeeded", "deploy"),
    ]
    assert [(r["from"], r["reason"], r["source"]) for r in rows][2:4] == [
        (BROKEN, "health-check-failure", "audit"),
        (B, "health-check-failure: HTTP 503", "audit"),
    ]
    plain = ok(p.cli("history")).splitlines()  # one uncut line per row, whatever the terminal's width
    assert len(plain) == 7 and plain[1].endswith(f"rollback  {A} -> {B}  success  e2e-operator  -  [audit]")
    assert ok(p.cli("audit", "verify", "--log", str(p.audit_log), on_stack=False)).startswith("ok:")

    # A log whose tail was cut off still verifies on its own; against the head the last update recorded
    # in the stack outputs it does not, and the CLI refuses before changing anything.
    whole = p.audit_log.read_bytes()
    p.audit_log.write_bytes(b"".join(whole.splitlines(keepends=True)[:-1]))
    out = ok(p.cli("rollback", "--to", A, "--reason", "after-tampering"), code=1)
    assert "truncated" in out and "Nothing was changed" in out
    assert p.config("image") == B and p.outputs()["image"] == B
    p.audit_log.write_bytes(whole)


def test_prod_never_rolls_back_by_itself_and_hipaa_is_enforced(prod: Project) -> None:
    p = prod
    ok(p.cli("deploy", "--image", A))
    seed_data(p)
    inv = Invariants(p)
    assert p.outputs()["reported_compliance_mode"] == "hipaa"

    # A build that lost its compliance setting is healthy but not HIPAA: the gate refuses it, and prod
    # does not roll back by itself; the message carries the rollback command.
    out = ok(p.cli("deploy", "--image", NONCOMPLIANT), code=4)
    assert "compliance_mode is 'none', expected 'hipaa'" in out
    assert f"fetchml-infra rollback --stack {p.stack_name} --reason health-check-failure" in out
    assert p.config("image") == NONCOMPLIANT
    assert moves(p)[-1] == ("deploy", "failure", A, NONCOMPLIANT)
    inv.check()

    # By hand, as the procedure says for production: back to the last good image.
    out = ok(p.cli("rollback", "--reason", "health-check-failure", "--incident", p.incident()))
    assert f"from {NONCOMPLIANT} to {A}" in out
    assert "[x] compliance_mode: reported 'hipaa'" in out
    assert moves(p)[-1] == ("rollback", "success", NONCOMPLIANT, A)
    inv.check()

    # An image that exits at once fails the update too, and that attempt is on record as well.
    ok(p.cli("deploy", "--image", CRASH), code=4)
    assert moves(p)[-1][1:] == ("failure", A, CRASH)
    inv.check()
    # status names the crash loop beside the release that still serves, and that the chain ends elsewhere.
    status = ok(p.cli("status"), code=1)
    flat = " ".join(status.replace("│", " ").split())  # the table wraps long cells
    assert f"api {CRASH} (crash-looping, " in flat and "image (last completed update)" in flat
    assert f"routes to api-{A}" in flat and f"api {A} (running)" in flat
    assert f"containers run {A} but the audit chain's last move is to {CRASH}" in flat


def test_rollback_to_a_tag_that_never_passed_here_is_refused_or_recorded_as_a_deploy(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", A))
    out = ok(p.cli("rollback", "--to", B, "--reason", "typo-or-not"), code=2)
    assert f"--to: {B} never passed its health gate on stack '{p.stack_name}'" in " ".join(out.split())
    assert "--reason: required" in ok(p.cli("rollback", "--to", A, "--reason", " "), code=2)
    assert len(p.chain()) == 1 and p.config("image") == A

    out = ok(p.cli("rollback", "--to", B, "--reason", "hotfix", "--allow-untested"))
    assert f"deploy stack '{p.stack_name}' from {A} to {B} (untested: --allow-untested)" in out
    assert moves(p)[-1] == ("deploy", "success", A, B)
    assert json.loads(ok(p.cli("history", "--json")))[0]["action"] == "deploy"
