"""The incident report a rollback carries, and the notify hook's body."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchml_infra import aftercare, incident, notify
from fetchml_infra.audit import ZERO_HASH, make_entry

FULL = "why-rolled-back: slow API\nimpact-on-phi-handling: none\nexposure-risk: none\n"


def test_a_hipaa_report_fills_in_every_field_of_the_template(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text(incident.template("prod"))
    with pytest.raises(ValueError, match="leaves why-rolled-back, impact-on-phi-handling, exposure-risk empty"):
        incident.read(path, hipaa=True)
    assert incident.read(path, hipaa=False).sha256  # elsewhere any text will do
    path.write_text(FULL)
    report = incident.read(path, hipaa=True)
    assert report.text == FULL.encode()
    for bad, message in ((b"", "1 to 65536 bytes"), (b"\xff\xfe", "UTF-8")):
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=message):
            incident.read(path, hipaa=False)
    with pytest.raises(ValueError, match="cannot read"):
        incident.read(tmp_path / "none", hipaa=False)


def test_the_hash_is_pinned_at_the_end_of_the_reason_whatever_its_length(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text(FULL)
    report = incident.read(path, hipaa=True)
    reason = aftercare.pinned_reason("x" * 300, report, 200)
    assert len(reason) == 200 and reason.endswith(f" incident={report.sha256}")
    assert incident.pinned(reason) == report.sha256
    assert incident.pinned("no incident here") is None
    kept = incident.keep(report, tmp_path / "kept")
    assert kept.read_text() == FULL and incident.keep(report, tmp_path / "kept") == kept


def test_the_notify_body_names_the_entry_the_checklist_and_the_incident() -> None:
    sha = "ab" * 32
    entry = make_entry(
        ZERO_HASH,
        action="rollback",
        outcome="success",
        from_image="sha-5d6e7f8",
        to_image="sha-1a2b3c4",
        actor="ops",
        reason=f"slow incident={sha}",
        stack="prod",
    )
    body = notify.payload("prod", entry, [("health", True, "ok")])
    assert body["entry"]["line"] == entry.render() and body["entry"]["to_image"] == "sha-1a2b3c4"
    assert body["incident"] == sha
    assert body["checklist"] == [{"name": "health", "ok": True, "detail": "ok"}]
