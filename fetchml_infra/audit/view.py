"""What an operator reads: the last lines of a log as verify counts them, and what kind of line each is.

verify counts every complete line: chained entries, the plain lines an ``adopt`` entry pins and the torn
lines a ``seal`` entry pins. ``tail`` shows all three, marking the lines that are not entries, so the two
commands never disagree about what the log holds."""

from __future__ import annotations

import re
from pathlib import Path

from fetchml_infra.audit.filebytes import _complete_end, _count_lines, _last_lines, _reading, _sealed
from fetchml_infra.audit.line import count_entries, is_chained

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def _printable(line: bytes) -> str:
    """A line as one readable, inert line: invalid bytes and control or bidi characters escaped."""
    text = line.decode("utf-8", errors="backslashreplace")
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def tail_lines(path: str | Path, n: int) -> list[str]:
    """The last ``n`` lines of the log, oldest first: entries as written, other lines marked with their
    line number (``(adopted plain line 3) ...``, ``(sealed torn line 9) ...``)."""
    with _reading(Path(path)) as snap:
        if snap is None or n <= 0:
            return []
        fd, size = snap
        end = _complete_end(fd, size)
        # One line more than shown: a seal entry pins the line above it, so the top line needs its neighbour.
        lines = _last_lines(fd, end, n + 1)
        total = _count_lines(fd, end)
    sealed = _sealed(lines)
    first = total - len(lines) + 1  # the line number of lines[0]
    shown = []
    for i, line in enumerate(lines):
        if i in sealed:
            shown.append(f"(sealed torn line {first + i}) {_printable(line)}")
        elif is_chained(line):
            shown.append(_printable(line))
        else:
            shown.append(f"(adopted plain line {first + i}) {_printable(line)}")
    return shown[-n:]


def describe(lines: int, entries: int, seals: int) -> str:
    """``6 lines (3 entries, 2 adopted plain lines, 1 sealed torn line)``, or ``3 entries`` when every
    line is an entry."""
    if lines == entries:
        return count_entries(entries)
    adopted = lines - entries - seals
    parts = [count_entries(entries)]
    if adopted:
        parts.append(f"{adopted} adopted plain line{'s' if adopted != 1 else ''}")
    if seals:
        parts.append(f"{seals} sealed torn line{'s' if seals != 1 else ''}")
    return f"{lines} lines ({', '.join(parts)})"
