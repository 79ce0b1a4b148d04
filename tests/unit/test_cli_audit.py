"""`fetchml-infra audit ...` as an operator runs it (through `python -m fetchml_infra`): exit codes and words."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fetchml_infra import audit as fetchml_audit
from fetchml_infra import history


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fetchml_infra", "audit", *args], capture_output=True, text=True)


def started(log: Path) -> Path:
    """A stack's log as its first deploy leaves it (the CLI never creates a log by hand)."""
    fetchml_audit.append(
        str(log), action="deploy", outcome="success", from_image="none", to_image="sha-abcdef0",
        actor="ci", reason="first deploy", stack="prod",
    )  # fmt: skip
    return log


def append(log: Path, to: str, action: str = "rollback", **fields: str) -> subprocess.CompletedProcess[str]:
    """`audit append` of a move from the log's last image to ``to``; ``fields`` override options by name."""
    options = {
        "--action": action,
        "--outcome": "success",
        "--from": fetchml_audit.entries(str(log))[-1].to_image if log.exists() else "none",
        "--to": to,
        "--actor": "oncall",
        "--reason": "emergency-by-hand",
        "--stack": "prod",
        **{f"--{k}": v for k, v in fields.items()},
    }
    return audit("append", "--log", str(log), *(x for kv in options.items() for x in kv))


def test_emergency_append_then_verify_then_tail(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    first = append(log, "sha-1a2b3c4")
    assert first.returncode == 0, first.stderr
    assert (
        " | rollback | success | from=sha-abcdef0 | to=sha-1a2b3c4 | actor=oncall | reason=emergency-by-hand"
        in first.stdout
    )
    assert append(log, "sha-0dd0c0d", action="deploy").returncode == 0
    ok = audit("verify", "--log", str(log))
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {log}: 3 entries, head ")
    tail = audit("tail", "--log", str(log), "-n", "1")
    assert tail.stdout.count("\n") == 1 and "to=sha-0dd0c0d" in tail.stdout


def test_verify_names_the_first_bad_line_and_exits_1(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    for tag in ("sha-1a2b3c4", "sha-5d6e7f8", "sha-0dd0c0d"):
        assert append(log, tag).returncode == 0
    log.write_text(log.read_text().replace("to=sha-5d6e7f8", "to=sha-5d6e7f9"))
    broken = audit("verify", "--log", str(log))
    assert broken.returncode == 1
    assert broken.stdout.startswith(f"BROKEN: {log}: line 3: changed")


def test_verify_against_the_recorded_head_catches_a_cut_off_tail(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    for tag in ("sha-1a2b3c4", "sha-5d6e7f8"):
        assert append(log, tag).returncode == 0
    head = log.read_text().splitlines()[-1].rsplit("hash=", 1)[1]
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:2]))
    assert audit("verify", "--log", str(log)).returncode == 0  # alone, a shorter chain looks fine
    cut = audit("verify", "--log", str(log), "--head", head, "--length", "3")
    assert cut.returncode == 1 and "truncated" in cut.stdout


def test_bad_input_is_refused_with_the_field_named_and_nothing_written(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    before = log.read_bytes()
    bad = audit(
        "append",
        "--log",
        str(log),
        "--action",
        "rollback",
        "--outcome",
        "success",
        "--from",
        "a | forged",
        "--to",
        "sha-1a2b3c4",
        "--actor",
        "x",
        "--reason",
        "r",
        "--stack",
        "prod",
    )
    assert bad.returncode == 2
    assert "from" in bad.stderr and "|" in bad.stderr
    assert log.read_bytes() == before


def test_adopt_a_plain_procedure_log(tmp_path: Path) -> None:
    log = tmp_path / ".prod-audit.log"
    log.write_text("2024-01-15T14:30:00Z | rollback | success | from=sha-abc123 | to=sha-def456 | actor=deploy-user\n")
    adopted = audit("adopt", "--log", str(log), "--stack", "prod", "--actor", "oncall")
    assert adopted.returncode == 0, adopted.stderr
    assert " | adopt | success | " in adopted.stdout and "reason=adopted-1-lines-sha256-" in adopted.stdout
    assert audit("verify", "--log", str(log)).returncode == 0
    log.write_text(log.read_text().replace("actor=deploy-user", "actor=someone-else"))
    assert audit("verify", "--log", str(log)).returncode == 1


def test_seal_a_torn_line_so_the_emergency_entry_can_be_written(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    assert append(log, "sha-1a2b3c4").returncode == 0
    with open(log, "ab") as f:  # a crash half-way through the next write
        f.write(b"2024-01-15T14:30:00Z | rollback | success | from=sha-1a2b3c4 | to=sha-5d")
    before = log.read_bytes()
    refused = append(log, "sha-0dd0c0d", **{"from": "sha-1a2b3c4"})
    assert refused.returncode == 2 and "audit seal --log" in " ".join(refused.stderr.split())
    assert audit("verify", "--log", str(log)).stdout.startswith(f"BROKEN: {log}: line 3: partial-last-line")

    sealed = audit("seal", "--log", str(log), "--stack", "prod", "--actor", "oncall")
    assert sealed.returncode == 0, sealed.stderr
    assert " | seal | success | from=- | to=- | actor=oncall | reason=sealed-torn-line-sha256-" in sealed.stdout
    assert log.read_bytes() == before + b"\n" + sealed.stdout.encode()  # the torn bytes kept, then the seal
    assert audit("verify", "--log", str(log)).stdout.startswith(
        f"ok: {log}: 4 lines (3 entries, 1 sealed torn line), head "
    )
    assert append(log, "sha-0dd0c0d", **{"from": "sha-1a2b3c4"}).returncode == 0
    assert audit("verify", "--log", str(log)).returncode == 0
    tail = audit("tail", "--log", str(log), "-n", "2")
    assert " | seal | " in tail.stdout.splitlines()[0] and "to=sha-0dd0c0d" in tail.stdout.splitlines()[1]

    again = audit("seal", "--log", str(log), "--stack", "prod")
    assert again.returncode == 2 and "nothing to seal" in " ".join(again.stderr.split())


def test_seal_refuses_a_log_with_another_problem(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    for tag in ("sha-1a2b3c4", "sha-5d6e7f8"):
        assert append(log, tag).returncode == 0
    log.write_text(log.read_text().replace("to=sha-1a2b3c4", "to=sha-1a2b3c5") + "2024-01-15T14:30:00Z | roll")
    before = log.read_bytes()
    refused = audit("seal", "--log", str(log), "--stack", "prod")
    said = " ".join(refused.stderr.split())  # the error is wrapped to the terminal's width
    assert refused.returncode == 2 and "line 2: changed" in said and "Nothing was sealed" in said
    assert log.read_bytes() == before


def test_a_missing_log_is_an_error_not_an_empty_intact_chain(tmp_path: Path) -> None:
    typo = tmp_path / "prod-audti.log"
    for args in (("verify",), ("tail",)):
        done = audit(*args, "--log", str(typo))
        assert done.returncode == 2 and done.stdout == ""
        assert f"--log: no audit log at {typo}" in " ".join(done.stderr.split())
    assert append(typo, "sha-1a2b3c4").returncode == 2
    assert not typo.exists()


def test_a_manual_entry_with_a_typo_is_refused_before_it_becomes_permanent(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    before = log.read_bytes()
    cases = {
        "--to: expected sha- followed by 7 to 40 lowercase hex digits, or none; saw 'latest'": {"to": "latest"},
        "--from: expected sha- followed by 7 to 40 lowercase hex digits, or none; saw '5d6e7f8'": {"from": "5d6e7f8"},
        "--stack: this log records stack prod; saw 'staging'": {"stack": "staging"},
        "--reason: required (one readable line saying why); saw an empty reason": {"reason": " "},
        "--from and --to: a move names two images; saw 'sha-abcdef0' twice": {"to": "sha-abcdef0"},
        "--reason: must not contain invisible Unicode format or bidi controls; saw U+202E": {"reason": "ok\u202eko"},
    }
    for message, fields in cases.items():
        done = append(log, fields.pop("to", "sha-1a2b3c4"), **fields)
        said = " ".join(done.stderr.split())
        assert done.returncode == 2 and message in said and said.endswith("nothing was written"), said
    assert log.read_bytes() == before


def test_a_wrong_entry_is_corrected_by_an_entry_that_names_it(tmp_path: Path) -> None:
    log = started(tmp_path / "prod-audit.log")
    assert append(log, "sha-0dd0c0d", reason="meant sha-1a2b3c4").returncode == 0  # the typo: wrong image
    wrong = fetchml_audit.entries(str(log))[1]
    before = log.read_bytes()
    for bad, said in (
        (["--index", "9", "--reason", "x"], "--index: expected 1 to 2"),
        (["--index", "2", "--reason", " "], "--reason: required"),
        (["--index", "2", "--reason", "x", "--stack", "staging"], "--stack: this log records stack prod"),
    ):
        args = ["--log", str(log), "--stack", "prod", *bad] if "--stack" not in bad else ["--log", str(log), *bad]
        done = audit("correct", *args)
        assert done.returncode == 2 and said in " ".join(done.stderr.split()), done.stderr
    assert log.read_bytes() == before

    done = audit(
        "correct", "--log", str(log), "--stack", "prod", "--index", "2", "--reason", "the target was sha-1a2b3c4"
    )
    assert done.returncode == 0, done.stderr
    assert " | correct | success | from=- | to=- | actor=" in done.stdout
    assert f"reason=corrects entry 2 hash={wrong.hash}: the target was sha-1a2b3c4 | stack=prod" in done.stdout
    assert log.read_bytes().startswith(before)  # appended, nothing rewritten
    ok = audit("verify", "--log", str(log))
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok: {log}: 3 entries (1 correction), head ")
    assert " | correct | " in audit("tail", "--log", str(log), "-n", "1").stdout

    # The corrected entry no longer counts as a move: the chain's last move is the first deploy again.
    last = history.last_entry(fetchml_audit.entries(str(log)), "prod")
    assert last is not None and last.to_image == "sha-abcdef0"


def test_tail_shows_the_adopted_and_sealed_lines_that_verify_counts(tmp_path: Path) -> None:
    log = tmp_path / "prod-audit.log"
    log.write_bytes(b"2023-01-01 deployed sha-1111111 by hand\n2023-02-01 rolled back\n")
    assert audit("adopt", "--log", str(log), "--stack", "prod", "--actor", "oncall").returncode == 0
    assert append(log, "sha-1a2b3c4", **{"from": "none"}).returncode == 0
    with log.open("ab") as f:  # a crash mid-append: a torn line, then sealed
        f.write(b"2026-11-27T00:00:00Z | rollback | succ")
    assert audit("seal", "--log", str(log), "--stack", "prod", "--actor", "oncall").returncode == 0
    ok = audit("verify", "--log", str(log))
    assert ok.returncode == 0, ok.stdout
    # 6 lines: 2 adopted plain lines, adopt, rollback, the torn line, seal; verify says what they are.
    assert f"ok: {log}: 6 lines (3 entries, 2 adopted plain lines, 1 sealed torn line), head " in ok.stdout
    shown = audit("tail", "--log", str(log), "-n", "6").stdout.splitlines()
    assert len(shown) == 6
    assert shown[0] == "(adopted plain line 1) 2023-01-01 deployed sha-1111111 by hand"
    assert shown[1] == "(adopted plain line 2) 2023-02-01 rolled back"
    assert " | adopt | " in shown[2] and " | rollback | " in shown[3] and " | seal | " in shown[5]
    assert shown[4] == "(sealed torn line 5) 2026-11-27T00:00:00Z | rollback | succ"
    last = audit("tail", "--log", str(log), "-n", "2").stdout.splitlines()
    assert last == shown[-2:]
