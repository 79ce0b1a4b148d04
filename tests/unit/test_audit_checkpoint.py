"""Signed checkpoints (C2SP signed notes, Ed25519) and the config that lists trusted keys; the ops endpoint's
environment file."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from fetchml_infra import ops_store
from fetchml_infra.audit import checkpoint

CP = checkpoint.Checkpoint("fetchml-audit/prod", 42, "ab" * 32)


def signer(tmp_path: Path, name: str = "ci-runner") -> checkpoint.Signer:
    return checkpoint.create(tmp_path / f"{name}.key", name)


def test_a_note_verifies_with_the_listed_key_and_says_who_signed(tmp_path: Path) -> None:
    s = signer(tmp_path)
    note = s.sign(CP)
    text, sig_line = note.split("\n\n")
    assert text == f"fetchml-audit/prod\n42\n{base64.b64encode(bytes.fromhex('ab' * 32)).decode()}"
    # The key ID is C2SP's: sha256(name || "\n" || 0x01 || public key)[:4], before the signature.
    raw = base64.b64decode(sig_line.split(" ")[2])
    public = checkpoint.public_bytes(s.key)
    assert raw[:4] == hashlib.sha256(b"ci-runner\n\x01" + public).digest()[:4]
    assert checkpoint.verify(note, {"ci-runner": public}) == (CP, "ci-runner")


def test_unknown_keys_are_ignored_and_a_note_no_trusted_key_signed_is_rejected(tmp_path: Path) -> None:
    a, b = signer(tmp_path, "a"), signer(tmp_path, "b")
    cosigned = a.sign(CP) + b.sign(CP).split("\n\n")[1]  # two signature lines
    assert checkpoint.verify(cosigned, {"b": checkpoint.public_bytes(b.key)})[1] == "b"
    with pytest.raises(checkpoint.CheckpointError, match="no signature by a trusted key"):
        checkpoint.verify(a.sign(CP), {"b": checkpoint.public_bytes(b.key)})


def test_a_changed_note_does_not_verify(tmp_path: Path) -> None:
    s = signer(tmp_path)
    note = s.sign(CP).replace("\n42\n", "\n43\n")
    with pytest.raises(checkpoint.CheckpointError, match="signature of ci-runner does not verify"):
        checkpoint.verify(note, {"ci-runner": checkpoint.public_bytes(s.key)})
    with pytest.raises(checkpoint.CheckpointError, match="expected origin, length and head"):
        checkpoint.verify("just text", {})


def test_signers_config_names_the_pair_that_is_wrong(tmp_path: Path) -> None:
    s = signer(tmp_path)
    assert checkpoint.parse_signers(f"{s.name}:{s.public()}") == {s.name: checkpoint.public_bytes(s.key)}
    assert checkpoint.parse_signers("") == {}
    with pytest.raises(ValueError, match="saw 'laptop:short'"):
        checkpoint.parse_signers(f"{s.name}:{s.public()}, laptop:short")
    with pytest.raises(ValueError, match="listed twice"):
        checkpoint.parse_signers(f"{s.name}:{s.public()},{s.name}:{s.public()}")


def test_a_key_is_private_and_never_replaced(tmp_path: Path) -> None:
    s = signer(tmp_path)
    path = tmp_path / "ci-runner.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert checkpoint.load(path).public() == s.public()
    with pytest.raises(checkpoint.CheckpointError, match="already there; it is kept"):
        checkpoint.create(path, "other")
    path.write_text("name\nnot base64!\n")
    with pytest.raises(checkpoint.CheckpointError, match=f"{path}: expected a name line"):
        checkpoint.load(path)
    with pytest.raises(checkpoint.CheckpointError, match="fetchml-infra audit keygen"):
        checkpoint.load(tmp_path / "missing.key")


def test_the_ops_file_sets_the_s3_backend_and_values_already_set_win(tmp_path: Path) -> None:
    ops = tmp_path / "ops.env"
    ops.write_text("# comment\nFETCHML_OPS_S3=http://127.0.0.1:9190\nAWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n")
    env = {"FETCHML_OPS_ENV": str(ops), "AWS_ACCESS_KEY_ID": "mine"}
    ops_store.layer(env)
    assert env["PULUMI_BACKEND_URL"] == (
        "s3://fetchml-state?endpoint=127.0.0.1:9190&region=us-east-1&s3ForcePathStyle=true&disableSSL=true"
    )
    assert env["AWS_ACCESS_KEY_ID"] == "mine"
    assert env["AWS_SECRET_ACCESS_KEY"] == "s"
    untouched = {"PATH": "/bin"}
    ops_store.layer(untouched)
    assert untouched == {"PATH": "/bin"}  # no ops file: the file backend stays the default
    ops.write_text("FETCHML_OPS_S3\n")
    with pytest.raises(ValueError, match="line 1: expected KEY=VALUE"):
        ops_store.layer({"FETCHML_OPS_ENV": str(ops)})
    with pytest.raises(ValueError, match="found nothing at"):
        ops_store.layer({"FETCHML_OPS_ENV": str(tmp_path / "none")})
