"""What keeps a team's audit trail whole outside the shipping core: every writer goes through it, check-sink's
memory is voided by a change of policy, a lock the backend will not show is no proof of none, the ops store's
key is never printed, the hook's token never shown, and the chain (not one checkout's config) says what failed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from fetchml_infra import cli_sink, gate, history, notify, ops_store
from fetchml_infra.audit import ZERO_HASH, Entry, make_entry
from fetchml_infra.audit.target import DEFAULT_RETENTION_DAYS, SinkError

ROOT = Path(__file__).resolve().parents[2]
A, B, C = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9a0b1c2"


def test_no_entry_is_written_around_the_sink() -> None:
    """The only writers of the log: shipping (appends, moves), and logfile's adopt and seal (which start or mend
    the local chain, and are shipped by the next append). Every record_move names its shipping."""
    allowed = {"audit/shipping.py", "audit/logfile.py", "audit/filebytes.py"}
    direct = re.compile(r"\b(audit|logfile)\.append\(|\bappend_local\(")
    for path in sorted((ROOT / "fetchml_infra").rglob("*.py")):
        where = str(path.relative_to(ROOT / "fetchml_infra"))
        text = path.read_text()
        if where not in allowed:
            assert not direct.search(text), f"{where} appends to the audit log around the sink"
        for call in re.finditer(r"(?<!def )\brecord_move\((.*?)\n\s*\)", text, re.S):
            assert "shipping=" in call[1], f"{where}: a record_move without shipping=: {call[0][:80]}"


def test_check_sink_forgets_what_it_found_sound_when_the_policy_changes(tmp_path: Path) -> None:
    lines = [b"x" * 10 + b"a" * 64 + b"\n"]
    memory = tmp_path / "m.json"
    memory.write_text(json.dumps({"policy": "p1", "entries": 1, "head": "a" * 64, "checkpoints": {"1": '"e"'}}))
    assert cli_sink._verified(memory, lines, "p1") == (1, {1: '"e"'})
    assert cli_sink._verified(memory, lines, "p2") == (0, {})  # another key list or retention: read everything
    memory.write_text(json.dumps({"entries": 1, "head": "a" * 64, "checkpoints": 1}))  # an older memory file
    assert cli_sink._verified(memory, lines, "p1") == (0, {})


def test_a_lock_that_cannot_be_read_is_not_taken_for_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")  # fmt: skip
    key = ".pulumi/locks/organization/fetchml/prod/1.json"
    with Stubber(s3) as stub:
        stub.add_response("list_objects_v2", {"Contents": [{"Key": key}], "IsTruncated": False})
        stub.add_client_error("get_object", "AccessDenied", http_status_code=403)
        monkeypatch.setattr(boto3, "client", lambda *a, **k: s3)
        with pytest.raises(SinkError, match="listing or reading its locks failed: .*AccessDenied"):
            ops_store.engine_locks("s3://state?endpoint=127.0.0.1:9&disableSSL=true", "prod")


def test_locks_of_a_stack_with_a_longer_name_are_not_this_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="k",
                      aws_secret_access_key="s")  # fmt: skip
    keys = [".pulumi/locks/organization/fetchml/x/prod/1.json", ".pulumi/locks/organization/fetchml/preprod/2.json"]
    with Stubber(s3) as stub:
        stub.add_response("list_objects_v2", {"Contents": [{"Key": k} for k in keys], "IsTruncated": False})
        monkeypatch.setattr(boto3, "client", lambda *a, **k: s3)
        assert ops_store.engine_locks("s3://state?endpoint=127.0.0.1:9&disableSSL=true", "prod") == []


def test_the_shell_exports_name_the_ops_key_file_never_the_key(tmp_path: Path) -> None:
    ops = tmp_path / "ops.env"
    secret = "s3cr3t-value-never-printed"
    ops.write_text(
        f"FETCHML_OPS_S3=http://127.0.0.1:9190\nAWS_ACCESS_KEY_ID=fetchml-ops\nAWS_SECRET_ACCESS_KEY={secret}\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FETCHML_OPS_ENV": str(ops)}
    out = subprocess.run([sys.executable, "-m", "fetchml_infra.offline"], env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout  # fmt: skip
    assert secret not in out and "AWS_SECRET_ACCESS_KEY" not in out
    creds = tmp_path / "aws-credentials"
    assert f"export AWS_SHARED_CREDENTIALS_FILE={creds}" in out and "export AWS_PROFILE=fetchml-ops" in out
    assert secret in creds.read_text() and creds.stat().st_mode & 0o077 == 0


def test_the_hook_is_shown_by_its_host_only() -> None:
    url = "https://hooks.example.test:8443/services/T000/B000/XXXXSECRET?token=abc"
    assert notify.shown(url) == "https://hooks.example.test:8443"
    ok, line = notify.send("http://127.0.0.1:9/services/T000/XXXXSECRET", {"event": "rollback"})
    assert not ok and "XXXXSECRET" not in line and line.startswith("notify hook http://127.0.0.1:9 failed")
    ok, line = notify.send("https://hooks.example.test:99999/T0/XXXXSECRET", {"event": "rollback"})  # never raises
    assert not ok and "XXXXSECRET" not in line


def test_the_chain_says_which_images_failed_their_gate() -> None:
    reason = "health-check-failure"

    def entry(action: str, outcome: str, frm: str, to: str, why: str = "r") -> Entry:
        return make_entry(ZERO_HASH, action=action, outcome=outcome, from_image=frm, to_image=to, actor="a",
                          reason=why, stack="staging")  # fmt: skip

    chain = [
        entry("deploy", "success", "none", A),
        entry("deploy", "failure", A, B, "health-check-failure: 503"),
        entry("rollback", "success", B, A, reason),
        entry("deploy", "failure", A, C),
        entry("rollback", "success", C, A, "c-looked-wrong"),  # by hand, for another reason: not a gate's verdict
    ]
    assert history.denied(chain, "staging", reason) == [B]
    assert history.denied(chain, "prod", reason) == []
    passed = [*chain, entry("deploy", "success", A, B, "fixed-config")]  # deployed with --allow-denied and passed
    assert history.denied(passed, "staging", reason) == []


def test_a_providers_sink_keeps_its_retention_when_the_input_is_missing() -> None:
    shipping = gate.props_shipping({"audit_sink": "http://127.0.0.1:9/audit", "stack": "s"})
    assert shipping is not None and shipping.sink.target.retention_days == DEFAULT_RETENTION_DAYS
