"""The chain itself, over plain data: build, render, parse and verify entries. No I/O."""

from __future__ import annotations

import hashlib
import re
from binascii import hexlify
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from operator import eq, itemgetter
from typing import Literal, NamedTuple

ZERO_HASH = "0" * 64
ACTIONS = frozenset({"deploy", "rollback", "destroy", "adopt", "seal", "correct", "requeue"})
OUTCOMES = frozenset({"success", "failure"})
Problem = Literal[
    "changed", "inserted", "deleted", "reordered", "malformed", "partial-last-line", "truncated", "rewritten"
]

_KEYS = ("from", "to", "actor", "reason", "stack", "prev", "hash")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Not in a value: "|" splits fields, line breaks split entries, other control characters fool terminals.
# Tabs and non-ASCII text (a non-breaking space pasted into a reason) are fine.
_FORBIDDEN = re.compile(r"[|\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ADOPTED = re.compile(r"adopted-([0-9]+)-lines-sha256-([0-9a-f]{64})")
_SEALED = re.compile(r"sealed-torn-line-sha256-([0-9a-f]{64})")
# Either marker makes a line a seal entry to check (like is_chained), so damage to one still gets it checked.
_SEAL_MARKS = (b" | seal | ", b"reason=sealed-torn-line-sha256-")
_BATCH = 1 << 20  # bytes verified per batch: big enough to amortise the calls, small enough for the cache

# A well-formed line ends in " | prev=<64 hex> | hash=<64 hex>", so the hot loop slices at fixed offsets.
_BODY, _HASH, _PREV = itemgetter(slice(None, -72)), itemgetter(slice(-64, None)), itemgetter(slice(-136, -72))
_HASH_SEP, _PREV_SEP = itemgetter(slice(-72, -64)), itemgetter(slice(-144, -136))
# The first letter of a well-formed line's action (after "YYYY-MM-DDTHH:MM:SSZ | "): only "seal" has an "s".
_ACTION_AT, _S = itemgetter(23), ord("s")
_DIGEST = type(hashlib.sha256()).digest


class AuditError(Exception):
    """The log cannot be read or extended safely; the message says what was expected, what was seen, and
    the command to run next."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One chained line. Values are kept exactly as written (``time`` as ``YYYY-MM-DDTHH:MM:SSZ``)."""

    time: str
    action: str
    outcome: str
    from_image: str
    to_image: str
    actor: str
    reason: str
    stack: str
    prev: str
    hash: str

    def body(self) -> str:
        """The text ``hash`` covers: the whole line before `` | hash=``."""
        return (
            f"{self.time} | {self.action} | {self.outcome} | from={self.from_image} | to={self.to_image} | "
            f"actor={self.actor} | reason={self.reason} | stack={self.stack} | prev={self.prev}"
        )

    def render(self) -> str:
        """The line as written to the log, without its newline."""
        return f"{self.body()} | hash={self.hash}"

    @classmethod
    def parse(cls, line: str) -> Entry:
        """Parse one line (a trailing newline is ignored); ValueError if it is malformed or its hash is
        wrong. Links to other lines are verify's business."""
        entry = _parse_syntax(line.removesuffix("\n"))
        if isinstance(entry, str):
            raise ValueError(entry)
        actual = _sha(entry.body().encode())
        if actual != entry.hash:
            raise ValueError(f"hash mismatch: the line's text hashes to {actual}, the line says {entry.hash}")
        return entry


def _parse_syntax(line: str) -> Entry | str:
    """The Entry a line spells, its hash unchecked, or what is wrong with its syntax."""
    parts = line.split(" | ")
    if len(parts) != 10:
        return f"expected 10 fields separated by ' | ', saw {len(parts)}"
    time, action, outcome, *keyed = parts
    if not _TIME.fullmatch(time):
        return f"expected a time like 2024-01-15T14:30:00Z, saw {time!r}"
    if action not in ACTIONS or outcome not in OUTCOMES:
        return (
            f"expected an action in {sorted(ACTIONS)} and an outcome in {sorted(OUTCOMES)}, "
            f"saw {action!r}, {outcome!r}"
        )
    values = []
    for key, part in zip(_KEYS, keyed, strict=True):
        name, eq_, value = part.partition("=")
        if name != key or not eq_ or _FORBIDDEN.search(value):
            return f"expected field '{key}=<value without | or control characters>', saw {part!r}"
        values.append(value)
    if not (_HEX64.fullmatch(values[5]) and _HEX64.fullmatch(values[6])):
        return f"expected prev and hash as 64 lowercase hex digits, saw {values[5]!r}, {values[6]!r}"
    return Entry(time, action, outcome, *values)


def _check_value(field: str, value: str) -> None:
    if _FORBIDDEN.search(value):
        raise ValueError(
            f"audit field {field!r} must not contain '|', line breaks or control characters; saw {value!r}"
        )


def count_entries(n: int) -> str:
    """ "1 entry", "2 entries": the words every report of a chain's length uses."""
    return f"{n} entry" if n == 1 else f"{n} entries"


def clean_value(text: str) -> str:
    """``text`` made safe for a field ('|' becomes '/', line breaks and control characters a space), for
    callers that must record something, like a health check's own words, rather than fail."""
    return _FORBIDDEN.sub(lambda m: "/" if m[0] == "|" else " ", text)


def make_entry(
    head_hash: str,
    *,
    action: str,
    outcome: str,
    from_image: str,
    to_image: str,
    actor: str,
    reason: str,
    stack: str,
    time: datetime | None = None,
) -> Entry:
    """The entry that extends a chain whose last hash is ``head_hash`` (``ZERO_HASH`` for an empty log).

    ``time`` defaults to now and must be timezone-aware. ValueError names the field and the value."""
    if not _HEX64.fullmatch(head_hash):
        raise ValueError(f"audit field 'prev' must be 64 lowercase hex digits; saw {head_hash!r}")
    if action not in ACTIONS:
        raise ValueError(f"audit field 'action' must be one of {sorted(ACTIONS)}; saw {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"audit field 'outcome' must be one of {sorted(OUTCOMES)}; saw {outcome!r}")
    named = {"from_image": from_image, "to_image": to_image, "actor": actor, "reason": reason, "stack": stack}
    for field, value in named.items():
        _check_value(field, value)
    if time is None:
        time = datetime.now(UTC)
    elif time.tzinfo is None:
        raise ValueError(f"audit field 'time' must be timezone-aware; saw {time!r}")
    stamp = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = (stamp, action, outcome, from_image, to_image, actor, reason, stack, head_hash)
    return Entry(*values, _sha(Entry(*values, "").body().encode()))


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


def is_chained(line: bytes) -> bool:
    """Whether a line belongs to the chain rather than to an adopted plain prefix. Either marker will do,
    so damage to one of them still leaves the line recognisably chained (and then reported)."""
    return b" | hash=" in line or b" | prev=" in line


def _short(h: bytes | str) -> str:
    return (h.decode(errors="replace") if isinstance(h, bytes) else h)[:12]


_Failure = tuple[int, Problem, str]  # (0-based index of the first bad line, problem, detail)


# -- sealing a torn line ----------------------------------------------------------------------------------
# A crash can leave a torn last line. ``seal`` (logfile) keeps its bytes: it appends "\n", completing them into
# a line of their own, then a ``seal`` entry whose reason pins that line's sha256 and whose prev is the hash of
# the chained entry before it, so the chain goes on across the sealed line. verify accepts exactly that pair.


def seal_reason(torn: bytes) -> str:
    """The reason of the seal entry for a torn line's bytes (without the newline that sealing adds)."""
    return f"sealed-torn-line-sha256-{_sha(torn)}"


def seal_pin(line: bytes) -> str | None:
    """The sha256 a seal entry's line pins, or None if the line is no (well-formed) seal entry."""
    seal = _as_seal(line)
    m = _SEALED.fullmatch(seal.reason) if isinstance(seal, Entry) else None
    return m[1] if m else None


def _as_seal(line: bytes) -> Entry | str | None:
    """The seal entry a line spells (hash unchecked), what is wrong with a line that looks like one, or
    None for a line that is no seal."""
    if not (_SEAL_MARKS[0] in line or _SEAL_MARKS[1] in line):
        return None
    entry = _parse_syntax(line.decode(errors="replace"))
    return None if isinstance(entry, Entry) and entry.action != "seal" else entry


class _Resume(NamedTuple):
    """Where verification goes on after an intact seal: offset and 0-based index of the line after it, and
    the seal's hash, which that line links to."""

    pos: int
    line: int
    prev: bytes


def _line_end(data: bytes, pos: int) -> int:
    return data.index(b"\n", pos)


def _line_at(data: bytes, pos: int) -> bytes:
    return data[pos : _line_end(data, pos)]


_SealFailure = tuple[int, Problem, str, bytes]  # a _Failure and the hash of the good part before that line


def _check_seal(pair: _Pair, raw: bytes, sealed: bytes, k: int, prev: bytes, after: int) -> _Resume | _SealFailure:
    """Check the seal entry ``raw`` (0-based line ``k``, the next line at offset ``after``) of the line above
    it, ``sealed``; ``prev`` is the hash it must link to (that of the chained entry before the sealed line)."""
    seal = _as_seal(raw)
    if not isinstance(seal, Entry):
        return k, "malformed", f"expected the seal entry of line {k}: {seal}", prev
    m = _SEALED.fullmatch(seal.reason)
    if not m:
        return k, "malformed", f"expected a seal's reason=sealed-torn-line-sha256-<64 hex>, saw {seal.reason!r}", prev
    if _sha(raw.rpartition(b" | hash=")[0]) != seal.hash:
        return k, "changed", f"the seal entry's text no longer matches its hash {_short(seal.hash)}", prev
    j = pair.index_of(seal.prev.encode())  # the line the seal links to
    if m[1] != _sha(sealed):
        if not pair.whole:
            return (
                k - 1,
                "changed",
                (
                    f"the sealed line's bytes hash to {_short(_sha(sealed))}, but its seal on line {k + 1} pins "
                    f"{_short(m[1])}: the line was changed after it was sealed"
                ),
                prev,
            )
        # The sealed line passed as an entry (a torn whole entry): were lines put between it and its seal?
        below = pair.line_after_hash(seal.prev.encode())  # where the line it seals should be
        if j is not None and j + 1 < k - 1 and below is not None and _sha(below) == m[1] and pair.unsealed(below):
            return (
                j + 2,
                "inserted",
                (f"lines {j + 3}-{k} were put between the sealed line {j + 2} and its seal (line {k + 1})"),
                below[-64:],
            )
        return (
            k,
            "inserted",
            (
                f"a seal entry pinning sha256 {_short(m[1])}, but line {k} above it hashes to "
                f"{_short(_sha(sealed))}: it seals no line here"
            ),
            prev,
        )
    if seal.prev.encode() != prev:
        detail = (
            f"the seal links to prev={_short(seal.prev)} ({'on no line of the log' if j is None else f'line {j + 1}'}"
            f"), expected {_short(prev)}: the hash of the entry before the line it seals (line {k})"
        )
        at = k if pair.whole else k - 1  # a seal with its sealed line is one unit: the sealed line comes first
        if j is None:
            return at, "deleted", detail, prev
        if j > k or pair.whole:
            return at, "reordered" if j > k else "inserted", detail, prev
        return j + 1, "inserted", f"{detail}: lines {j + 2}-{k - 1} were inserted", seal.prev.encode()
    return _Resume(after, k + 1, seal.hash.encode())


@dataclass(frozen=True)
class _Pair:
    """What checking a seal needs to know about the log around it."""

    data: bytes
    end: int
    genesis: bytes
    start: int  # index of the first chained line
    whole: bool = False  # the sealed line passed the scan as an entry (a torn whole entry)

    def index_of(self, h: bytes) -> int | None:
        """0-based index of the line whose hash is ``h`` (``start - 1`` for the genesis), if any."""
        if h == self.genesis:
            return self.start - 1
        line = _line_of_hash(self.data, self.end, h.decode(errors="replace"))
        return None if line is None else line - 1

    def unsealed(self, line: bytes) -> bool:
        """Whether ``line`` is an entry not sealed already by the line below it."""
        pos = self.data.find(line + b"\n", 0, self.end) + len(line) + 1
        return isinstance(_parse_syntax(line.decode(errors="replace")), Entry) and not _seals(
            self.data, pos, self.end, line
        )

    def line_after_hash(self, h: bytes) -> bytes | None:
        """The line after the one whose hash is ``h``, if both are there."""
        pos = self.data.find(b" | hash=" + h + b"\n", 0, self.end)
        nxt = pos + 73  # past " | hash=", 64 hex digits and the newline
        return None if pos < 0 or nxt >= self.end else _line_at(self.data, nxt)


def _past_seal(pair: _Pair, i: int, o: int, before: bytes, first: int) -> _Resume | _SealFailure | None:
    """Line ``i`` (offset ``o``) failed the scan, which expected it to link to ``before``; ``first`` is the
    first line of the scanned stretch. If that is where a sealed line and its seal are: where to go on, or
    what is wrong with the pair. None when no seal is involved (the usual diagnosis applies).

    Either the torn bytes happened to be a whole entry, which passed as line ``i - 1``, and line ``i`` is the
    seal, which links past it; or line ``i`` is the sealed line (torn bytes, now a line, are no entry) and
    line ``i + 1`` its seal."""
    data, end = pair.data, pair.end
    e = _line_end(data, o)
    line = data[o:e]
    if i > first and isinstance(_as_seal(line), Entry):
        above = data[data.rfind(b"\n", 0, o - 1) + 1 : o - 1]  # passed the scan, so its prev is right
        whole = _Pair(data, end, pair.genesis, pair.start, whole=True)
        return _check_seal(whole, line, above, i, _PREV(above), e + 1)
    nxt = _line_at(data, e + 1) if e + 1 < end else None
    seal = None if nxt is None else _as_seal(nxt)
    if nxt is None or seal is None or _pinned(nxt) != _sha(line):  # not this line's seal: is there one later?
        later = data.find(b"reason=" + seal_reason(line).encode() + b" | ", e + 1, end)
        if later >= 0 and _PREV(_line_at(data, data.rfind(b"\n", 0, later) + 1)) == before:  # and links right
            j = i + 1 + data.count(b"\n", e + 1, later)
            return (
                i + 1,
                "inserted",
                f"lines {i + 2}-{j} were put between line {i + 1} and its seal (line {j + 1})",
                before,
            )
    # A broken seal-like line is this line's seal, unless it is itself a sealed line (a torn seal).
    if (
        nxt is not None
        and seal is not None
        and not (isinstance(seal, str) and _seals(data, e + 2 + len(nxt), end, nxt))
    ):
        return _check_seal(pair, nxt, line, i + 1, before, e + 2 + len(nxt))
    return None


def _pinned(line: bytes) -> str | None:
    """The sha256 a seal-like line pins, read even from a damaged line."""
    m = _SEALED.search(line.decode(errors="replace"))
    return m[1] if m else None


def _sealed_first_line(data: bytes, off: int, end: int) -> bool:
    """Whether the plain line(s) above the first chained line (at ``off``), which is not an adopt entry, are
    a sealed line: a seal after them pins the first."""
    if b" | adopt | " in _line_at(data, off):
        return False
    return data.find(b"reason=" + seal_reason(_line_at(data, 0)).encode() + b" | ", off, end) >= 0


def _seals(data: bytes, pos: int, end: int, sealed: bytes) -> bool:
    """Whether the line at ``pos`` (if any before ``end``) is a seal entry pinning ``sealed``."""
    return pos < end and seal_pin(_line_at(data, pos)) == _sha(sealed)


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


def _check_prefix(data: bytes, start: int, off: int) -> tuple[bytes, _Failure | None]:
    """Check the plain lines before the first chained line (index ``start``, byte offset ``off``).

    Returns the hash the chain starts from, and a failure or None."""
    first = data[off : data.find(b"\n", off)]
    entry = _parse_syntax(first.decode(errors="replace"))
    if isinstance(entry, str):
        if b"adopt" in first:  # a damaged adopt entry; if it still says how many lines it pins, trust that
            m = _ADOPTED.search(first.decode(errors="replace"))
            n = int(m[1]) if m else start
            if m and n < start and _sha(data[: _line_offset(data, n)]) == m[2]:
                return b"", (n, "malformed", f"lines {n + 1}-{start + 1} should be one adopt entry: {entry}")
            return b"", (start, "malformed", entry)
        return b"", (0, "malformed", f"a plain line where the chain should start (line {start + 1}: {entry})")
    if entry.action != "adopt":
        if entry.prev == ZERO_HASH:
            return b"", (
                0,
                "inserted",
                f"lines 1-{start} are plain lines in front of the chain's first entry",
            )
        return ZERO_HASH.encode(), None  # the scan names the broken link (the adopt entry is gone)
    if _sha(first.rpartition(b" | hash=")[0]) != entry.hash:
        return b"", (start, "changed", "the adopt entry's text no longer matches its hash")
    m = _ADOPTED.fullmatch(entry.reason)
    if not m or m[2] != entry.prev:
        return b"", (
            start,
            "malformed",
            f"expected reason=adopted-<n>-lines-sha256-<prev>, saw {entry.reason!r}",
        )
    n, digest, seen = int(m[1]), m[2], _sha(data[:off])
    if n == start and seen == digest:
        return digest.encode(), None
    if n < start and _sha(data[: _line_offset(data, n)]) == digest:
        return b"", (
            n,
            "inserted",
            f"lines {n + 1}-{start} were added between the adopted lines and the adopt entry",
        )
    kind: Problem = "deleted" if start < n else "inserted" if start > n else "changed"
    pinned = f"the adopt entry (line {start + 1}) pins {n} plain lines with sha256 {_short(digest)}"
    return b"", (0, kind, f"{pinned}; lines 1-{start} above it hash to {_short(seen)}")


def _intact_adoption(data: bytes) -> bool:
    """Whether ``data`` starts with plain lines and the intact adopt entry that pins them."""
    start, off = 0, 0
    while off < len(data) and not is_chained(data[off : data.find(b"\n", off)]):
        start, off = start + 1, data.find(b"\n", off) + 1
    if start == 0 or off == len(data):
        return False
    genesis, failure = _check_prefix(data, start, off)
    return failure is None and genesis != ZERO_HASH.encode()  # pinned by an adopt entry


def _line_offset(data: bytes, n: int) -> int:
    """Byte offset where line n+1 (1-based) starts."""
    pos = 0
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


def _line_of_hash(data: bytes, end: int, head: str) -> int | None:
    """1-based number of the line whose hash is ``head``, if any."""
    pos = data.find(b" | hash=" + head.encode() + b"\n", 0, end)
    return None if pos < 0 else data.count(b"\n", 0, pos) + 1


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
