"""The audit chain: every kind of tampering is found, on the right line, and named; appends never rewrite."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchml_infra import audit
from fetchml_infra.audit import ZERO_HASH, AuditError, Entry, make_entry, verify
from fetchml_infra.audit.line import is_chained

T = datetime(2024, 1, 15, 14, 30, tzinfo=UTC)
PLAIN = (
    b"2024-01-15T14:30:00Z | rollback | success | from=sha-abc123 | to=sha-def456 | actor=deploy-user\n"
    b"2024-01-16T09:00:00Z | deploy | success | from=sha-def456 | to=sha-0a1b2c | actor=deploy-user\n"
    b"2024-01-17T10:15:00Z | rollback | failure | from=sha-0a1b2c | to=sha-def456 | actor=oncall\n"
)
# An oracle for "is this line well-formed", written independently of audit's parser.
LINE = re.compile(
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z \| (deploy|rollback|adopt) \| (success|failure)"
    rb" \| from=[^|\n]* \| to=[^|\n]* \| actor=[^|\n]* \| reason=[^|\n]* \| stack=[^|\n]*"
    rb" \| prev=[0-9a-f]{64} \| hash=[0-9a-f]{64}"
)


def fields(i: int, actor: str = "deploy-user") -> dict[str, Any]:
    return {
        "action": "rollback" if i % 3 else "deploy",
        "outcome": "failure" if i % 7 == 6 else "success",
        "from_image": f"sha-{i:06x}",
        "to_image": f"sha-{i + 1:06x}",
        "actor": actor,
        "reason": "health-check-failure",
        "stack": "prod",
    }


def chain(n: int, actor: str = "deploy-user", head: str = ZERO_HASH) -> list[bytes]:
    """n chained lines (with newlines), built purely."""
    out = []
    for i in range(n):
        e = make_entry(head, time=T, **fields(i, actor))
        out.append(e.render().encode() + b"\n")
        head = e.hash
    return out


def hash_of(line: bytes) -> str:
    return line.rstrip(b"\n")[-64:].decode()


LOG = chain(200)
HEAD = hash_of(LOG[-1])


def check(lines: list[bytes], line: int | None, problem: str | None, **expected: object) -> audit.Verdict:
    v = verify(b"".join(lines), **expected)  # type: ignore[arg-type]
    assert (v.first_bad_line, v.problem) == (line, problem), v.detail
    assert v.ok is (problem is None)
    return v


# -- format ---------------------------------------------------------------------------------------------


def test_line_keeps_the_procedures_seven_fields_then_stack_prev_hash() -> None:
    e = make_entry(
        ZERO_HASH,
        action="rollback",
        outcome="success",
        from_image="sha-abc123",
        to_image="sha-def456",
        actor="deploy-user",
        reason="health-check-failure",
        stack="prod",
        time=T,
    )
    line = e.render()
    assert line.startswith(
        "2024-01-15T14:30:00Z | rollback | success | from=sha-abc123 | to=sha-def456 | actor=deploy-user"
        " | reason=health-check-failure | stack=prod | prev=" + ZERO_HASH + " | hash="
    )
    import hashlib

    assert e.hash == hashlib.sha256(line.rpartition(" | hash=")[0].encode()).hexdigest()
    assert Entry.parse(line + "\n") == e


@pytest.mark.parametrize("field", ["from_image", "to_image", "actor", "reason", "stack"])
@pytest.mark.parametrize("bad", ["a|b", "a\nb", "a\rb", "esc\x1b[31m", "line\u2028sep", "nul\x00"])
def test_field_with_pipe_or_line_break_is_rejected_naming_field_and_value(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"'{field}'") + ".*" + re.escape(repr(bad))):
        make_entry(ZERO_HASH, time=T, **{**fields(0), field: bad})


def test_tabs_and_unicode_are_fine_and_clean_value_makes_anything_safe() -> None:
    e = make_entry(ZERO_HASH, time=T, **{**fields(0), "reason": "tab\there nbsp\u00a0ünï"})
    assert Entry.parse(e.render()) == e and verify(e.render().encode() + b"\n").ok
    assert audit.clean_value("timeout | 503\nretry\x1b[0m") == "timeout / 503 retry [0m"
    make_entry(ZERO_HASH, time=T, **{**fields(0), "reason": audit.clean_value("a|b\r\nc")})


def test_unknown_action_or_outcome_and_naive_time_are_rejected() -> None:
    with pytest.raises(ValueError, match="'action'.*'undo'"):
        make_entry(ZERO_HASH, time=T, **{**fields(0), "action": "undo"})
    with pytest.raises(ValueError, match="'outcome'.*'maybe'"):
        make_entry(ZERO_HASH, time=T, **{**fields(0), "outcome": "maybe"})
    with pytest.raises(ValueError, match="timezone-aware"):
        make_entry(ZERO_HASH, time=datetime(2024, 1, 1), **fields(0))


def test_parse_rejects_a_line_whose_hash_does_not_match() -> None:
    line = LOG[0].decode().replace("deploy-user", "deploy-usr")
    with pytest.raises(ValueError, match="hash mismatch"):
        Entry.parse(line)


# -- tampering, one kind at a time ----------------------------------------------------------------------


def test_intact_log_verifies() -> None:
    v = check(LOG, None, None, expected_head=HEAD, expected_length=200)
    assert (v.length, v.head) == (200, HEAD)


def test_every_single_byte_flip_is_found_on_its_line() -> None:
    data = bytearray(b"".join(LOG))
    starts = [0]
    for line in LOG:
        starts.append(starts[-1] + len(line))
    line_no = 0
    for pos in range(len(data)):
        while pos >= starts[line_no + 1]:
            line_no += 1
        original = data[pos]
        data[pos] ^= 0x01
        v = verify(bytes(data))
        mutated = bytes(data[starts[line_no] : starts[line_no + 1]])
        if original == 0x0A:  # two lines become one, or the last one loses its end
            expected = (200, "partial-last-line") if pos == len(data) - 1 else (line_no + 1, "malformed")
        else:
            expected = (line_no + 1, "changed" if LINE.fullmatch(mutated[:-1]) else "malformed")
        assert (v.first_bad_line, v.problem) == expected, (pos, v.detail)
        assert v.length == line_no and not v.ok
        data[pos] = original
    assert verify(bytes(data)).ok


def test_deleted_line() -> None:
    check(LOG[:49] + LOG[50:], 50, "deleted")
    check(LOG[1:], 1, "deleted")
    check(LOG[:49] + LOG[52:], 50, "deleted")


def test_deleted_last_line_needs_the_recorded_head() -> None:
    check(LOG[:-1], None, None)  # indistinguishable from a log that is one entry shorter...
    check(LOG[:-1], 200, "truncated", expected_head=HEAD, expected_length=200)  # ...unless recorded


def test_inserted_lines() -> None:
    forged = make_entry(hash_of(LOG[48]), time=T, **fields(999, "mallory")).render().encode() + b"\n"
    check(LOG[:49] + [forged] + LOG[49:], 50, "inserted")  # well-formed, linked, own hash valid
    check(
        LOG[:49] + [b"2024-01-15T14:30:00Z | rollback | success | from=a | to=b | actor=x\n"] + LOG[49:],
        50,
        "inserted",
    )
    check(LOG[:50] + [LOG[49]] + LOG[50:], 51, "inserted")  # a duplicate
    top = make_entry(ZERO_HASH, time=T, **fields(999, "mallory")).render().encode() + b"\n"
    check([top, *LOG], 1, "inserted")
    check(LOG[:49] + [forged, forged] + LOG[49:], 50, "inserted")


def test_appended_after_recorded_head_is_inserted_unless_allowed() -> None:
    rec = hash_of(LOG[99])
    check(LOG, 101, "inserted", expected_head=rec, expected_length=100)
    check(LOG, None, None, expected_head=rec, expected_length=100, allow_longer=True)
    check(LOG, None, None, expected_head=rec, allow_longer=True)


def test_reordered_lines() -> None:
    check(LOG[:49] + [LOG[50], LOG[49]] + LOG[51:], 50, "reordered")
    check(LOG[:9] + LOG[10:] + [LOG[9]], 10, "reordered")
    check([LOG[120], *LOG[:120], *LOG[121:]], 1, "reordered")


def test_changed_and_rehashed_line_breaks_the_next_link() -> None:
    # Re-hashing an edited line keeps it self-consistent; the next line's prev still names the old hash.
    # That looks exactly like a deletion before line 51; the detail names both causes.
    e = Entry.parse(LOG[49].decode())
    edited = make_entry(e.prev, time=T, **{**fields(49), "actor": "mallory"}).render().encode() + b"\n"
    v = check(LOG[:49] + [edited] + LOG[50:], 51, "deleted")
    assert "re-hashed" in v.detail


def test_truncation_with_and_without_recorded_head() -> None:
    check(LOG[:150], None, None)
    check(LOG[:150], 151, "truncated", expected_head=HEAD, expected_length=200)
    check(LOG[:150], 151, "truncated", expected_length=200)
    check(LOG[:150], 151, "truncated", expected_head=HEAD)
    check(LOG[:150] + [LOG[150][:40]], 151, "truncated", expected_head=HEAD, expected_length=200)
    check([], 1, "truncated", expected_head=HEAD, expected_length=200)


def test_rewritten_history_is_not_a_truncation() -> None:
    other = chain(200, actor="mallory")
    v = check(other, 200, "rewritten", expected_head=HEAD, expected_length=200)
    assert "no line" in v.detail
    check(other + chain(5, "x", hash_of(other[-1])), 200, "rewritten", expected_head=HEAD, expected_length=200)


def test_partial_last_line_keeps_every_complete_entry() -> None:
    torn = LOG[:150] + [LOG[150][:100]]
    v = check(torn, 151, "partial-last-line")
    assert (v.length, v.head) == (150, hash_of(LOG[149]))
    whole_but_newline = LOG[:150] + [LOG[150].rstrip(b"\n")]
    v = check(whole_but_newline, 151, "partial-last-line", expected_head=hash_of(LOG[149]), expected_length=150)
    assert "whole entry" in v.detail and v.length == 150


def test_a_complete_log_missing_file_and_an_empty_one() -> None:
    check([], None, None)
    check([], None, None, expected_head=ZERO_HASH, expected_length=0)


# -- the file: append, head, tail, partial lines, adoption ----------------------------------------------


def write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_append_creates_extends_and_head_tail_agree(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "prod.audit.log"
    made = [audit.append(log, time=T, **fields(i)) for i in range(5)]
    assert log.read_bytes() == b"".join(e.render().encode() + b"\n" for e in made)
    assert made[0].prev == ZERO_HASH and all(b.prev == a.hash for a, b in pairwise(made))
    assert audit.head(log) == (made[-1].hash, 5)
    assert audit.tail(log, 2) == made[-2:] and audit.tail(log, 0) == [] and audit.entries(log) == made
    v = verify(log, expected_head=made[-1].hash, expected_length=5)
    assert v.ok and (v.head, v.length) == audit.head(log)


def test_append_is_one_write_of_the_whole_line_on_an_append_fd_then_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_fds: list[int] = []
    writes: list[tuple[int, bytes]] = []
    order: list[str] = []
    real_open, real_write, real_fsync = os.open, os.write, os.fsync

    def spy_open(path: Any, flags: int, *a: Any) -> int:
        fd = real_open(path, flags, *a)
        if flags & os.O_APPEND:
            append_fds.append(fd)
        return fd

    def spy_write(fd: int, data: bytes) -> int:
        writes.append((fd, data))
        order.append("write")
        return real_write(fd, data)

    def spy_fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    log = tmp_path / "a.log"
    write(log, LOG[:3])
    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "write", spy_write)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    e = audit.append(log, time=T, **fields(3))
    monkeypatch.undo()
    assert writes == [(append_fds[0], e.render().encode() + b"\n")]
    assert order == ["write", "fsync"]
    assert log.read_bytes() == b"".join(LOG[:3]) + e.render().encode() + b"\n"


def test_append_after_a_torn_line_refuses_and_leaves_the_file_alone(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    write(log, LOG[:10])
    with open(log, "ab") as f:
        f.write(LOG[10][: len(LOG[10]) // 2])  # a crash half-way through a write
    before = log.read_bytes()
    v = verify(log)
    assert (v.first_bad_line, v.problem, v.length, v.head) == (11, "partial-last-line", 10, hash_of(LOG[9]))
    with pytest.raises(AuditError, match=re.escape(f"fetchml-infra audit verify --log {log}")):
        audit.append(log, **fields(10))
    assert log.read_bytes() == before
    assert audit.head(log) == (hash_of(LOG[9]), 10) and len(audit.entries(log)) == 10


def test_append_refuses_after_a_tampered_last_line(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    write(log, [*LOG[:9], LOG[9].replace(b"deploy-user", b"deploy-usr")])
    with pytest.raises(AuditError, match="hash mismatch.*audit verify"):
        audit.append(log, **fields(10))


def test_adopted_plain_log_verifies_and_guards_its_prefix(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(PLAIN)
    with pytest.raises(AuditError, match="adopt"):
        audit.append(log, **fields(0))
    a = audit.adopt(log, actor="ops", stack="prod", time=T)
    digest = __import__("hashlib").sha256(PLAIN).hexdigest()
    assert (a.action, a.prev, a.reason) == ("adopt", digest, f"adopted-3-lines-sha256-{digest}")
    assert log.read_bytes().startswith(PLAIN)
    later = [audit.append(log, time=T, **fields(i)) for i in range(3)]
    assert later[0].prev == a.hash
    v = verify(log)
    assert v.ok and (v.length, v.head) == (7, later[-1].hash) == (audit.head(log)[1], audit.head(log)[0])
    assert audit.entries(log) == [a, *later]
    with pytest.raises(AuditError, match="already chained"):
        audit.adopt(log, actor="ops", stack="prod")

    lines = log.read_bytes().splitlines(keepends=True)
    check([lines[0].replace(b"deploy-user", b"deploy-usr"), *lines[1:]], 1, "changed")
    check([lines[0], lines[2], *lines[3:]], 1, "deleted")  # line 2 of the prefix deleted
    check(
        [*lines[:3], b"2024-01-18T00:00:00Z | deploy | success | from=x | to=y | actor=z\n", *lines[3:]],
        4,
        "inserted",
    )
    check([*lines[:3], *lines[4:]], 4, "deleted")  # the adopt entry itself deleted
    check([*lines[:4], lines[5], lines[4], *lines[6:]], 5, "reordered")
    check(lines, None, None, expected_head=later[-1].hash, expected_length=7)


def test_adopt_needs_a_plain_log(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="no file"):
        audit.adopt(tmp_path / "missing.log", actor="ops", stack="prod")
    (tmp_path / "torn.log").write_bytes(PLAIN[:-5])
    with pytest.raises(AuditError, match="incomplete last line"):
        audit.adopt(tmp_path / "torn.log", actor="ops", stack="prod")


def test_plain_log_that_was_never_adopted_does_not_verify() -> None:
    check([PLAIN], 1, "malformed")
    check([b"\n", LOG[0][1:], *LOG[1:]], 1, "malformed")  # found by hypothesis: a byte of line 1 became \n
    check([PLAIN, *LOG], 1, "inserted")  # plain lines pasted in front of a chain


# -- properties -----------------------------------------------------------------------------------------

value = st.text(
    st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" ", exclude_characters="|"),
    max_size=12,
).filter(str.isprintable)
entry_fields = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["deploy", "rollback"]),
        "outcome": st.sampled_from(["success", "failure"]),
        "from_image": value,
        "to_image": value,
        "actor": value,
        "reason": value,
        "stack": value,
    }
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry_fields, max_size=8))
def test_any_appends_verify_and_head_matches(batch: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "a.log"
        made = [audit.append(log, time=T, **f) for f in batch]
        v = verify(log)
        assert v.ok, v.detail
        assert (v.head, v.length) == audit.head(log) == (made[-1].hash if made else ZERO_HASH, len(made))
        assert audit.entries(log) == made
        assert [Entry.parse(e.render()) for e in made] == made


def adopted_chain(n: int) -> list[bytes]:
    """PLAIN, its adopt entry, then n - 4 chained lines (n >= 5)."""
    digest = __import__("hashlib").sha256(PLAIN).hexdigest()
    a = make_entry(
        digest,
        action="adopt",
        outcome="success",
        from_image="-",
        to_image="-",
        actor="ops",
        reason=f"adopted-3-lines-sha256-{digest}",
        stack="prod",
        time=T,
    )
    return [*PLAIN.splitlines(keepends=True), a.render().encode() + b"\n", *chain(n - 4, head=a.hash)]


@st.composite
def mutation(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], str]:
    n = draw(st.integers(2, 25))
    lines = chain(n)
    if draw(st.booleans()):
        n = max(n, 5)
        lines = adopted_chain(n)
    kind = draw(st.sampled_from(["byte", "delete", "insert", "copy", "swap", "truncate"]))
    i = draw(st.integers(0, n - 1))
    if kind == "byte":
        data = bytearray(b"".join(lines))
        start = sum(map(len, lines[:i]))
        pos = draw(st.integers(start, start + len(lines[i]) - 1))
        data[pos] = draw(st.integers(0, 255).filter(lambda b: b != data[pos]))
        return lines, bytes(data).splitlines(keepends=True), kind
    if kind == "delete":
        return lines, lines[:i] + lines[i + 1 :], kind
    if kind == "insert":
        at = draw(st.integers(0, n))
        kind = "insert" if at < n else "insert-at-end"
        junk = draw(
            st.sampled_from(
                [
                    b"\n",
                    b"garbage\n",
                    PLAIN.splitlines(keepends=True)[0],
                    make_entry(
                        hash_of(lines[at - 1]) if at and is_chained(lines[at - 1]) else ZERO_HASH,
                        time=T,
                        **fields(77),
                    )
                    .render()
                    .encode()
                    + b"\n",
                    make_entry("ab" * 32, time=T, **fields(77)).render().encode() + b"\n",
                ]
            )
        )
        return lines, lines[:at] + [junk] + lines[at:], kind
    if kind == "copy":
        at = draw(st.integers(0, n))
        kind = "copy" if is_chained(lines[i]) else "copy-plain"
        return lines, lines[:at] + [lines[i]] + lines[at:], kind
    if kind == "swap":
        j = draw(st.integers(0, n - 1).filter(lambda j: j != i))
        out = list(lines)
        out[i], out[j] = out[j], out[i]
        return lines, out, kind
    cut = draw(st.integers(0, len(b"".join(lines)) - 1))
    return lines, b"".join(lines)[:cut].splitlines(keepends=True), kind


ALLOWED = {
    "byte": {"changed", "malformed", "truncated"},  # a lost final newline: fewer complete lines than recorded
    "delete": {"deleted", "truncated"},
    "insert": {"inserted"},
    # Past the recorded head nothing follows to tell an inserted line with a bad link from a lost one.
    "insert-at-end": {"inserted", "malformed", "deleted"},
    "copy": {"inserted"},
    "copy-plain": {"inserted", "malformed"},  # malformed when nothing follows it
    "swap": {"reordered"},
    "truncate": {"truncated"},
}


@settings(max_examples=400, deadline=None)
@given(mutation())
def test_any_single_mutation_is_found_at_the_first_changed_line(
    case: tuple[list[bytes], list[bytes], str],
) -> None:
    original, mutated, kind = case
    first = next(
        (k for k, (a, b) in enumerate(zip(original, mutated, strict=False)) if a != b),
        min(len(original), len(mutated)),
    )
    v = verify(b"".join(mutated), expected_head=hash_of(original[-1]), expected_length=len(original))
    assert not v.ok
    if original[0] == PLAIN.splitlines(keepends=True)[0] and first < 4:
        # In an adopted prefix only "lines 1-3 no longer match their digest" is known: at or before.
        assert v.first_bad_line is not None and v.first_bad_line <= first + 1, v.detail
        return
    assert v.first_bad_line == first + 1, v.detail
    assert v.problem in ALLOWED[kind], v.detail


def test_verify_reads_the_file_it_is_given(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    write(log, LOG)
    assert verify(log).ok and verify(str(log)).ok and verify(os.fspath(log)).ok
    assert verify(tmp_path / "missing.log").ok
