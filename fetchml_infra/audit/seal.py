"""Sealing a torn line: the seal entry's reason, and checking a sealed line and its seal where the scan finds one.

A crash can leave a torn last line. ``seal`` (logfile) keeps its bytes: it appends "\n", completing them into
a line of their own, then a ``seal`` entry whose reason pins that line's sha256 and whose prev is the hash of
the chained entry before it, so the chain goes on across the sealed line. verify accepts exactly that pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from fetchml_infra.audit.line import (
    _PREV,
    _SEAL_MARKS,
    _SEALED,
    Entry,
    Problem,
    _line_at,
    _line_end,
    _line_of_hash,
    _parse_syntax,
    _sha,
    _short,
)


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
