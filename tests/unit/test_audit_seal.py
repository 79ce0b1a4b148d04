"""Sealing a torn last line: every byte is kept, the chain goes on across it, and tampering with the sealed
line, its seal, or a seal that seals nothing is still found on the right line."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetchml_infra import audit, history
from fetchml_infra.audit import ZERO_HASH, AuditError, Entry, make_entry, verify
from fetchml_infra.audit.seal import seal_reason
from tests.unit.test_audit_chain import LINE, T, chain, check, fields, hash_of

BEFORE = chain(10)  # lines 1-10
NEXT = make_entry(hash_of(BEFORE[-1]), time=T, **fields(10)).render().encode() + b"\n"
TORN = NEXT[:100]  # what a crash half-way through writing line 11 leaves


def seal_line(torn: bytes, prev: str) -> bytes:
    """The line ``seal`` writes after completing ``torn`` into a line: it pins the bytes, links to ``prev``."""
    values = {"from_image": "-", "to_image": "-", "actor": "oncall", "reason": seal_reason(torn), "stack": "prod"}
    return make_entry(prev, action="seal", outcome="success", time=T, **values).render().encode() + b"\n"


def sealed(torn: bytes = TORN, before: list[bytes] = BEFORE, after: int = 3) -> list[bytes]:
    """``before``, the torn bytes completed into a line, their seal, then ``after`` chained lines."""
    seal = seal_line(torn, hash_of(before[-1]) if before else ZERO_HASH)
    return [*before, torn + b"\n", seal, *chain(after, head=hash_of(seal))]


def kw(i: int) -> dict[str, Any]:
    return {**fields(i), "time": T}


# -- the pattern verify accepts -------------------------------------------------------------------------


def test_a_sealed_line_and_its_seal_verify_and_every_line_counts() -> None:
    lines = sealed()
    v = check(lines, None, None)
    assert (v.length, v.head) == (15, hash_of(lines[-1]))
    v = check(sealed(after=0), None, None)
    assert (v.length, v.head) == (12, hash_of(sealed(after=0)[-1]))
    # The head recorded before the crash is still there; the head recorded after the seal too.
    check(lines, None, None, expected_head=hash_of(BEFORE[-1]), expected_length=10, allow_longer=True)
    check(lines, None, None, expected_head=hash_of(lines[11]), expected_length=12, allow_longer=True)
    check(lines, 16, "truncated", expected_head=hash_of(lines[-1]), expected_length=16)


def test_a_torn_whole_entry_and_a_torn_first_line_are_sealed_the_same_way() -> None:
    check(sealed(torn=NEXT.rstrip(b"\n")), None, None)  # passes as an entry, but the seal links past it
    check(sealed(torn=b"2024-01-15T14:30:00Z | rollback | suc", before=[]), None, None)  # no chained line
    check(sealed(torn=NEXT[:-60], before=[]), None, None)  # a torn first line that looks chained
    once = sealed(after=2)
    check(sealed(torn=chain(1, head=hash_of(once[-1]))[0][:77], before=once), None, None)  # sealed twice


@pytest.mark.parametrize("torn", [TORN, NEXT.rstrip(b"\n")], ids=["torn-line", "whole-entry-but-its-newline"])
def test_every_byte_flip_around_a_seal_is_found_on_its_line(torn: bytes) -> None:
    lines = sealed(torn=torn)
    data = bytearray(b"".join(lines))
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    for line_no in range(9, 14):  # line 10, the sealed line, the seal, and the two lines after it
        for pos in range(starts[line_no], starts[line_no + 1]):
            original = data[pos]
            data[pos] ^= 0x01
            v = verify(bytes(data))
            assert (v.first_bad_line, v.ok) == (line_no + 1, False), (line_no, pos, v.detail)
            assert v.problem in {"changed", "malformed"}, (line_no, pos, v.detail)
            data[pos] = original
    assert verify(bytes(data)).ok


def test_tampering_with_the_sealed_line_is_found_on_it() -> None:
    lines = sealed()
    v = check([*lines[:10], lines[10].replace(b"rollback", b"rollbakk"), *lines[11:]], 11, "changed")
    assert "changed after it was sealed" in v.detail and (v.length, v.head) == (10, hash_of(BEFORE[-1]))
    check([*lines[:10], b"\n", *lines[11:]], 11, "changed")  # emptied
    v = check([*lines[:10], *lines[11:]], 11, "deleted")  # removed: the seal now seals nothing
    assert "seal" in v.detail
    check([*lines[:10], lines[10], b"junk\n", *lines[11:]], 12, "inserted")  # between it and its seal
    check([*lines[:3], lines[10], *lines[3:]], 4, "inserted")  # a copy elsewhere is no sealed line


def test_tampering_with_the_seal_is_found_on_it() -> None:
    lines = sealed()
    check([*lines[:11], lines[11].replace(b"actor=oncall", b"actor=oncal1"), *lines[12:]], 12, "changed")
    check([*lines[:11], lines[11].replace(b" | seal | ", b" | sea1 | "), *lines[12:]], 12, "malformed")
    check([*lines[:11], *lines[12:]], 11, "malformed")  # a torn line left without its seal
    # A seal whose prev is wrong, even re-hashed: it must link to the entry before the sealed line. Like any
    # link, one to an earlier line says the lines between were inserted; one to no line, that one was deleted.
    for prev, line, problem in (
        (hash_of(BEFORE[8]), 10, "inserted"),
        (ZERO_HASH, 1, "inserted"),
        ("ab" * 32, 11, "deleted"),
    ):
        bad = seal_line(TORN, prev)
        v = check([*lines[:11], bad, *chain(3, head=hash_of(bad))], line, problem)
        assert "the seal links to prev=" in v.detail
    # A seal pinning other bytes: the sealed line is what does not match.
    other = seal_line(TORN + b"x", hash_of(BEFORE[-1]))
    check([*lines[:11], other, *chain(3, head=hash_of(other))], 11, "changed")


def test_a_seal_that_seals_nothing_is_found() -> None:
    log = chain(12)
    # Linked to the line above it, like any entry: no line is sealed, the next line skips it.
    orphan = seal_line(b"nothing", hash_of(log[4]))
    check([*log[:5], orphan, *log[5:]], 6, "inserted")
    check([*log, seal_line(b"nothing", hash_of(log[-1]))], 13, "deleted")  # at the end
    first = seal_line(b"nothing", ZERO_HASH)
    check([first, *chain(2, head=hash_of(first))], 1, "deleted")
    # Shaped like a seal of the line above it, but pinning other bytes.
    fake = seal_line(b"nothing", Entry.parse(log[4].decode()).prev)
    check([*log[:5], fake, *log[5:]], 6, "inserted")
    # A whole pair made up, well-formed and linked: the line after it still links to line 5.
    junk = b"2024-01-15T14:30:00Z | rollback | success | from=a\n"
    pair = [junk, seal_line(b"2024-01-15T14:30:00Z | rollback | success | from=a", hash_of(log[4]))]
    check([*log[:5], *pair, *log[5:]], 6, "inserted")


def test_a_seal_cut_off_after_its_newline_leaves_the_completed_line_reported() -> None:
    lines = sealed(after=0)
    data = b"".join(lines[:11]) + lines[11][:50]  # a partial write: the newline and part of the seal
    v = verify(data)
    assert (v.first_bad_line, v.problem) == (11, "malformed"), v.detail


# -- the file: seal, append, entries, tail --------------------------------------------------------------


def torn_log(path: Path, n: int = 10) -> list[Entry]:
    made = [audit.append(path, **kw(i)) for i in range(n)]
    line = make_entry(made[-1].hash, **kw(n)).render().encode()
    with open(path, "ab") as f:
        f.write(line[: len(line) // 2])  # a crash half-way through a write
    return made


def test_torn_line_append_refuses_seal_then_verify_and_append_work(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "prod.audit.log"
    made = torn_log(log)
    before = log.read_bytes()
    torn = before[before.rfind(b"\n") + 1 :]
    with pytest.raises(AuditError, match="fetchml-infra audit seal --log"):
        audit.append(log, **kw(10))
    assert verify(log).problem == "partial-last-line"

    s = audit.seal(log, actor="oncall", stack="prod", time=T)
    assert (s.action, s.outcome, s.from_image, s.to_image, s.actor, s.stack) == (
        "seal",
        "success",
        "-",
        "-",
        "oncall",
        "prod",
    )
    assert s.reason == f"sealed-torn-line-sha256-{hashlib.sha256(torn).hexdigest()}" and s.prev == made[-1].hash
    assert log.read_bytes() == before + b"\n" + s.render().encode() + b"\n"  # the torn bytes, byte for byte
    assert LINE.fullmatch(s.render().encode().replace(b" | seal | ", b" | adopt | "))  # the usual format
    v = verify(log)
    assert v.ok and (v.length, v.head) == (12, s.hash) == (audit.head(log)[1], audit.head(log)[0]), v.detail

    after = audit.append(log, **kw(11))
    assert after.prev == s.hash
    v = verify(log, expected_head=made[-1].hash, expected_length=10, allow_longer=True)
    assert v.ok and (v.length, v.head) == (13, after.hash), v.detail
    assert audit.entries(log) == [*made, s, after]  # the sealed line is no entry
    assert audit.tail(log, 3) == [made[-1], s, after] and audit.tail(log, 100) == [*made, s, after]
    assert log.read_bytes().startswith(before + b"\n")


def test_history_ignores_seal_entries(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    torn_log(log, 4)
    plain = audit.entries(log)
    s = audit.seal(log, actor="oncall", stack="prod", time=T)
    assert audit.entries(log) == [*plain, s]
    for image in ("sha-000001", "sha-000003", "sha-new"):
        assert history.classify([*plain, s], "prod", image) == history.classify(plain, "prod", image)
    assert history.last_entry([*plain, s], "prod") == plain[-1]


def test_seal_is_one_write_of_newline_and_seal_then_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "a.log"
    torn_log(log, 3)
    before = log.read_bytes()
    writes: list[bytes] = []
    order: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def spy_write(fd: int, data: bytes) -> int:
        writes.append(data)
        order.append("write")
        return real_write(fd, data)

    def spy_fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "write", spy_write)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    s = audit.seal(log, actor="oncall", stack="prod", time=T)
    monkeypatch.undo()
    assert writes == [b"\n" + s.render().encode() + b"\n"] and order == ["write", "fsync"]
    assert log.read_bytes() == before + writes[0]


def test_sealing_again_after_another_crash(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    made = torn_log(log, 3)
    first = audit.seal(log, actor="oncall", stack="prod", time=T)
    more = [audit.append(log, **kw(i)) for i in range(3, 5)]
    with open(log, "ab") as f:
        f.write(make_entry(more[-1].hash, **kw(5)).render().encode())  # a whole entry, but its newline
    second = audit.seal(log, actor="oncall", stack="prod", time=T)
    assert second.prev == more[-1].hash
    last = audit.append(log, **kw(6))
    v = verify(log)
    assert v.ok and v.length == 3 + 2 + 2 + 2 + 1, v.detail
    assert audit.entries(log) == [*made, first, *more, second, last]


def test_seal_refuses_a_healthy_log_a_missing_one_and_nothing_is_written(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with pytest.raises(AuditError, match="found no file"):
        audit.seal(log, actor="oncall", stack="prod")
    assert not log.exists()
    for i in range(3):
        audit.append(log, **kw(i))
    before = log.read_bytes()
    with pytest.raises(AuditError, match="nothing to seal"):
        audit.seal(log, actor="oncall", stack="prod")
    log.write_bytes(b"")
    with pytest.raises(AuditError, match="nothing to seal"):
        audit.seal(log, actor="oncall", stack="prod")
    log.write_bytes(before)
    assert verify(log).ok


def test_seal_refuses_a_log_with_any_other_problem(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    made = torn_log(log, 6)
    tampered = log.read_bytes().replace(made[2].render().encode(), made[2].render().encode().replace(b"y-u", b"y-v"))
    for data, where in (
        (tampered, "line 3: changed"),  # a tampered line above the torn one
        (b"".join(sealed(after=0)[:11]), "line 11: malformed"),  # a completed torn line, no seal
        (b"".join(sealed(after=0)[:11]) + b"torn", "line 11: malformed"),
        (b"2024-01-15T14:30:00Z | rollback | success | from=a | to=b | actor=x\ntorn", "never adopted"),
    ):
        log.write_bytes(data)
        with pytest.raises(AuditError, match=where):
            audit.seal(log, actor="oncall", stack="prod")
        assert log.read_bytes() == data


def test_only_seal_writes_seal_entries_and_entries_refuses_a_stray_one(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    with pytest.raises(ValueError, match="'seal'"):
        audit.append(log, **{**kw(0), "action": "seal"})
    assert not log.exists()
    lines = chain(3)
    log.write_bytes(b"".join([*lines, seal_line(b"nothing", hash_of(lines[-1]))]))
    with pytest.raises(AuditError, match="line 4: expected a seal entry right below the line it seals"):
        audit.entries(log)


SEALED_LOGS = [
    sealed(),
    sealed(torn=NEXT.rstrip(b"\n")),
    sealed(torn=b"2024-01-15T14:30:00Z | rollback | suc", before=[]),
    sealed(torn=NEXT[:-60], before=[]),
]


@st.composite
def sealed_mutation(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    lines = draw(st.sampled_from(SEALED_LOGS))
    n = len(lines)
    kind = draw(st.sampled_from(["delete", "insert", "copy", "swap", "truncate"]))
    i = draw(st.integers(0, n - 1))
    if kind == "delete":
        return lines, lines[:i] + lines[i + 1 :]
    if kind == "copy":
        at = draw(st.integers(0, n))
        return lines, lines[:at] + [lines[i]] + lines[at:]
    if kind == "swap":
        j = draw(st.integers(0, n - 1).filter(lambda j: lines[j] != lines[i]))
        out = list(lines)
        out[i], out[j] = out[j], out[i]
        return lines, out
    if kind == "insert":
        at = draw(st.integers(0, n))
        above = hash_of(lines[at - 1]) if at else ZERO_HASH
        above = above if re.fullmatch("[0-9a-f]{64}", above) else ZERO_HASH
        junk = draw(
            st.sampled_from(
                [
                    b"\n",
                    b"garbage\n",
                    make_entry(above, time=T, **fields(77)).render().encode() + b"\n",
                    seal_line(b"nothing", above),
                ]
            )
        )
        return lines, lines[:at] + [junk] + lines[at:]
    cut = draw(st.integers(0, len(b"".join(lines)) - 1))
    return lines, b"".join(lines)[:cut].splitlines(keepends=True)


@settings(max_examples=400, deadline=None)
@given(sealed_mutation())
def test_any_single_mutation_of_a_sealed_log_is_found_at_the_first_changed_line(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    original, mutated = case
    first = next(
        (k for k, (a, b) in enumerate(zip(original, mutated, strict=False)) if a != b),
        min(len(original), len(mutated)),
    )
    v = verify(b"".join(mutated), expected_head=hash_of(original[-1]), expected_length=len(original))
    assert not v.ok
    torn = original[len(original) - 5]  # the sealed line (three lines and its seal follow it)
    if v.first_bad_line != first + 1:
        at = v.first_bad_line - 1 if v.first_bad_line else -1
        # A sealed line left without its seal right below it is a lone torn line again, reported on itself.
        lone = 0 <= at < len(mutated) and mutated[at] == torn and mutated[at + 1 : at + 2] != [original[-4]]
        # Of two identical lines, either may be the copy.
        twin = 0 < first < len(mutated) and mutated[first - 1] == mutated[first] and at == first - 1
        assert lone or twin, (first + 1, v.detail)
