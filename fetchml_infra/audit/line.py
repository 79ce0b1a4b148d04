"""One audit line: its format, building an entry, parsing one, and the small helpers every reader of the log's
bytes shares. No I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Literal

ZERO_HASH = "0" * 64
ACTIONS = frozenset({"deploy", "rollback", "destroy", "adopt", "seal", "correct", "requeue", "restore", "prune"})
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

# A well-formed line ends in " | prev=<64 hex> | hash=<64 hex>", so the hot loop slices at fixed offsets.
_BODY, _HASH, _PREV = itemgetter(slice(None, -72)), itemgetter(slice(-64, None)), itemgetter(slice(-136, -72))
_HASH_SEP, _PREV_SEP = itemgetter(slice(-72, -64)), itemgetter(slice(-144, -136))
# The first letter of a well-formed line's action (after "YYYY-MM-DDTHH:MM:SSZ | "): only "seal" has an "s".
_ACTION_AT, _S = itemgetter(23), ord("s")


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


def is_chained(line: bytes) -> bool:
    """Whether a line belongs to the chain rather than to an adopted plain prefix. Either marker will do,
    so damage to one of them still leaves the line recognisably chained (and then reported)."""
    return b" | hash=" in line or b" | prev=" in line


def _short(h: bytes | str) -> str:
    return (h.decode(errors="replace") if isinstance(h, bytes) else h)[:12]


_Failure = tuple[int, Problem, str]  # (0-based index of the first bad line, problem, detail)


def _line_end(data: bytes, pos: int) -> int:
    return data.index(b"\n", pos)


def _line_at(data: bytes, pos: int) -> bytes:
    return data[pos : _line_end(data, pos)]


def _line_of_hash(data: bytes, end: int, head: str) -> int | None:
    """1-based number of the line whose hash is ``head``, if any."""
    pos = data.find(b" | hash=" + head.encode() + b"\n", 0, end)
    return None if pos < 0 else data.count(b"\n", 0, pos) + 1
