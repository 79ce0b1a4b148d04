"""An adopted log: the plain lines from before the chain, pinned by the ``adopt`` entry after them. No I/O."""

from __future__ import annotations

from fetchml_infra.audit.line import _ADOPTED, ZERO_HASH, Problem, _Failure, _parse_syntax, _sha, _short, is_chained


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
