"""Verifying a log's bytes: the batched scan, naming the first problem, the adopted prefix. No I/O."""

from __future__ import annotations

import hashlib
from binascii import hexlify
from dataclasses import dataclass
from itertools import repeat
from operator import eq

from fetchml_infra.audit.line import (
    _ACTION_AT,
    _BODY,
    _HASH,
    _HASH_SEP,
    _HEX64,
    _PREV,
    _PREV_SEP,
    _S,
    _SEAL_MARKS,
    ZERO_HASH,
    Entry,
    Problem,
    _Failure,
    _line_at,
    _line_end,
    _line_of_hash,
    _parse_syntax,
    _sha,
    _short,
    is_chained,
)
from fetchml_infra.audit.prefix import _check_prefix, _intact_adoption
from fetchml_infra.audit.seal import _Pair, _past_seal, _Resume, _sealed_first_line, seal_pin

_BATCH = 1 << 20  # bytes verified per batch: big enough to amortise the calls, small enough for the cache
_DIGEST = type(hashlib.sha256()).digest


@dataclass(frozen=True)
class Verdict:
    """What verify found. ``length`` counts good lines (an adopted prefix included); ``head`` is the hash of
    the last good chained line. On failure both describe the good part before ``first_bad_line`` (1-based)."""

    ok: bool
    length: int
    head: str
    first_bad_line: int | None = None
    problem: Problem | None = None
    detail: str = ""


def _scan(
    data: bytes, pos: int, end: int, line0: int, genesis: bytes, want: int | None
) -> tuple[int, bytes, bytes | None, tuple[int, bytes, int, bool] | None]:
    """Check the chained lines in data[pos:end] (whole lines) in batches, with C-level map calls only.

    Returns (lines counted, incl. ``line0`` before pos; last good hash; hash of line ``want`` (1-based) if
    reached; and the first failing line's 0-based index, the hash it should link to, its offset and whether
    it is a seal entry that links to the line right above it, or None). A seal always links past the line it
    seals, so one that passes as a plain link seals nothing (its sealed line was deleted, say).
    Key names and values of a line whose hash, link and separators check out are not re-parsed: only a forger
    who re-hashes can make such a line, and ``Entry.parse`` (entries, tail) still rejects it."""
    prev, idx, at = genesis, line0, None
    while pos < end:
        stop = end if end - pos <= _BATCH else data.rfind(b"\n", pos, pos + _BATCH) + 1
        if stop <= pos:  # one line longer than a batch
            stop = data.find(b"\n", pos + _BATCH) + 1
        ls = data[pos:stop].split(b"\n")
        ls.pop()
        n, hs = len(ls), list(map(_HASH, ls))
        checks = (  # (seen, required) per line
            (list(map(hexlify, map(_DIGEST, map(hashlib.sha256, map(_BODY, ls))))), hs),
            (list(map(_PREV, ls)), [prev, *hs[:-1]]),
            (list(map(_HASH_SEP, ls)), [b" | hash="] * n),
            (list(map(_PREV_SEP, ls)), [b" | prev="] * n),
            (list(map(bytes.count, ls, repeat(b" | ", n))), [9] * n),
        )
        k = n
        if any(seen != required for seen, required in checks):
            k = min(list(map(eq, seen, required)).index(False) for seen, required in checks if seen != required)
        good, seal = (ls if k == n else ls[:k]), -1  # good: lines long enough for _ACTION_AT
        if _S in map(_ACTION_AT, good):  # rare: a seal, or a forged line; look closer
            seal = next((j for j, line in enumerate(good) if line[20:30] == _SEAL_MARKS[0]), -1)
            k = seal if seal >= 0 else k
        if want is not None and idx < want <= idx + k:
            at = hs[want - idx - 1]
        if k < n:
            before = hs[k - 1] if k else prev
            return idx + k, before, at, (idx + k, before, pos + sum(map(len, ls[:k])) + k, k == seal)
        prev, idx, pos = hs[-1], idx + n, stop
    return idx, prev, at, None


def _diagnose(lines: list[bytes], k: int, before: bytes, genesis: bytes, first: int) -> _Failure:
    """Name what is wrong at ``lines[k]``, the first line that failed ``_scan``; the result's index may be
    earlier (the first of several inserted lines). ``before`` is the hash line k should link to, ``first``
    the file line number of ``lines[0]``."""
    hashes = [line[-64:] for line in lines]

    def back(h: bytes) -> int | None:
        """Index of the nearest line before k whose hash is h (-1 for the chain's start), if any."""
        return next((i for i in range(k - 1, -1, -1) if hashes[i] == h), -1 if h == genesis else None)

    def where(i: int) -> str:
        return f"line {first + i}" if i >= 0 else "the start of the chain"

    def parse(i: int) -> Entry | str:
        return _parse_syntax(lines[i].decode(errors="replace"))

    nxt = parse(k + 1) if k + 1 < len(lines) else None
    # The chain resuming right after line k from a line before it: lines from there to k were inserted.
    resumes = back(nxt.prev.encode()) if isinstance(nxt, Entry) else None
    inserted: _Failure | None = None
    if resumes is not None:
        inserted = (
            resumes + 1,
            "inserted",
            f"line {first + k + 1} links to {where(resumes)}, skipping this one",
        )
    entry = parse(k)
    if isinstance(entry, str):
        return inserted or (k, "malformed", entry)
    claimed, prev = entry.hash.encode(), entry.prev.encode()
    if _sha(lines[k].rpartition(b" | hash=")[0]).encode() != claimed:
        return inserted or (k, "changed", f"the line's text no longer matches its hash {_short(claimed)}")
    if claimed in hashes[k + 1 :]:
        return k, "inserted", f"a copy of line {first + hashes.index(claimed, k + 1)}"
    if prev in hashes[k + 1 :]:
        return k, "reordered", f"it links to line {first + hashes.index(prev, k + 1)}, which comes after it"
    if inserted:
        return inserted
    if claimed in hashes[:k]:
        return k, "inserted", f"a copy of line {first + hashes.index(claimed)}"
    j = back(prev)
    if j is not None:
        return (
            j + 1,
            "inserted",
            f"line {first + k} links to {where(j)}: the {k - j - 1} line(s) between were inserted",
        )
    return (
        k,
        "deleted",
        (
            f"it links to prev={_short(prev)}, which is on no line of the log, expected {_short(before)}: "
            f"the entry before it was deleted (or the line above was edited and re-hashed)"
        ),
    )


def verify_bytes(
    data: bytes,
    expected_head: str | None = None,
    expected_length: int | None = None,
    *,
    allow_longer: bool = False,
) -> Verdict:
    """Verify a log's content; see ``verify`` (which also reads files)."""
    if expected_head is not None and not _HEX64.fullmatch(expected_head):
        raise ValueError(f"expected_head must be 64 lowercase hex digits; saw {expected_head!r}")
    end = data.rfind(b"\n") + 1  # data[:end] holds the complete lines
    zero = ZERO_HASH.encode()

    def bad(line: int, problem: Problem, detail: str, length: int, head: bytes) -> Verdict:
        return Verdict(False, length, head.decode(), line + 1, problem, detail)

    start, off = 0, 0  # the first chained line: index and offset (after an adopted plain prefix)
    while off < end and not is_chained(data[off : data.find(b"\n", off)]):
        start, off = start + 1, data.find(b"\n", off) + 1
    if start and off < end and _sealed_first_line(data, off, end):
        start, off = 0, 0  # no plain prefix: a torn first line, sealed; the chain starts with the pair
    if off == end and start and end == len(data):
        return bad(
            0,
            "malformed",
            f"{start} plain lines and no chained entry: adopt the log first " "(fetchml-infra audit adopt)",
            0,
            zero,
        )
    genesis = zero
    if start and off < end:
        genesis, failure = _check_prefix(data, start, off)
        if failure:
            return bad(*failure, length=failure[0], head=zero)
    length, head, at, broken = _scan(data, off, end, start, genesis, expected_length)
    stretch = start  # the first line of the stretch just scanned
    while broken:  # rare: look for a sealed line and its seal at the break, and go on past them
        if broken[3]:  # a seal that links to the line right above it, which is not the line it seals
            k, o = broken[0], broken[2]
            after = _line_end(data, o) + 1
            skipped = after < end and _PREV(_line_at(data, after)) == broken[1]  # the next line links past it
            pin = _short(seal_pin(_line_at(data, o)) or "?")
            if skipped:
                return bad(k, "inserted", f"a seal entry (pinning {pin}) that line {k + 2} links past", k, broken[1])
            return bad(
                k,
                "deleted",
                f"a seal entry that links to the line right above it, so the line it sealed (sha256 {pin}) is "
                f"not there: that line was deleted (or the seal does not belong here)",
                k,
                broken[1],
            )
        step = _past_seal(_Pair(data, end, genesis, start), broken[0], broken[2], broken[1], stretch)
        if step is None:
            break
        if not isinstance(step, _Resume):
            k, problem, detail, good = step
            return bad(k, problem, detail, k, good)
        stretch = step.line
        if expected_length == step.line:  # the recorded head is the seal's
            at = step.prev
        length, head, at_, broken = _scan(data, step.pos, end, step.line, step.prev, expected_length)
        at = at or at_
    if broken:
        lines = data[off:end].split(b"\n")
        lines.pop()
        k, problem, detail = _diagnose(lines, broken[0] - start, broken[1], genesis, start + 1)
        at_k = off + sum(map(len, lines[:k])) + k
        if problem == "malformed" and not is_chained(lines[k]) and _intact_adoption(data[at_k:end]):
            problem, detail, k = (
                "inserted",
                f"lines 1-{start + k} were put in front of an adopted log",
                -start,
            )
        return bad(start + k, problem, detail, start + k, _HASH(lines[k - 1]) if k > 0 else zero)

    def find(h: str) -> str:
        line = _line_of_hash(data, end, h)
        return f"line {line}" if line else "no line"

    if expected_length is not None and length < expected_length:
        torn = " and a torn last line" if end < len(data) else ""
        where = f"; the recorded head is on {find(expected_head)}" if expected_head else ""
        return bad(
            length,
            "truncated",
            f"expected {expected_length} lines, found {length}{torn}{where}",
            length,
            head,
        )
    recorded = expected_length  # the line the recorded head is on, when known
    if expected_head is not None and expected_length is not None:
        seen = ZERO_HASH if expected_length == 0 else at.decode() if at else None
        if seen != expected_head:
            return bad(
                max(expected_length, 1) - 1,
                "rewritten",
                f"expected the recorded head " f"{_short(expected_head)} on this line; it is on {find(expected_head)}",
                length,
                head,
            )
    elif expected_head is not None:
        recorded = 0 if expected_head == ZERO_HASH else _line_of_hash(data, end, expected_head)
        if recorded is None:
            return bad(
                length,
                "truncated",
                f"the recorded head {_short(expected_head)} is on no line: the log "
                "was cut off (or rewritten; pass the recorded length to tell)",
                length,
                head,
            )
    if recorded is not None and recorded < length and not allow_longer:
        return bad(
            recorded,
            "inserted",
            f"{length - recorded} lines follow the recorded head (line {recorded})",
            length,
            head,
        )
    if end < len(data):
        whole = isinstance(_parse_syntax(data[end:].decode(errors="replace")), Entry)
        what = "a whole entry but its newline" if whole else f"{len(data) - end} bytes of an entry"
        return bad(
            length,
            "partial-last-line",
            f"the last line has no newline ({what}): a write was cut off; "
            f"lines 1-{length} verify; appends are refused until an operator resolves it "
            "(fetchml-infra audit seal keeps the torn bytes as a line of their own and continues the chain)",
            length,
            head,
        )
    return Verdict(True, length, head.decode(), detail=f"{length} lines verify, head {head.decode()}")
