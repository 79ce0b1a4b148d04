"""What an entry written by hand (`fetchml-infra audit append`) must be, checked before it is written (pure).

The log is append-only, so a typo in a manual entry would be permanent evidence: tags must look like tags,
the stack must be the log's own, the reason must say something, and no field may hide text behind Unicode
format or bidi controls (which display one thing and record another).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping

TAG = re.compile(r"^(sha-[0-9a-f]{7,40}|none)$")
# A correction names the entry it corrects by position and hash: "corrects entry 4 hash=<64 hex>: <why>".
_CORRECTS = re.compile(r"^corrects entry \d+ hash=([0-9a-f]{64}): ")
NOT_CORRECTABLE = ("adopt", "seal", "correct", "requeue", "restore", "prune")


def correction_reason(index: int, entry_hash: str, reason: str) -> str:
    return f"corrects entry {index} hash={entry_hash}: {reason.strip()}"


def corrected(entries: Iterable[object]) -> set[str]:
    """Hashes of the entries a ``correct`` entry in ``entries`` names: they no longer count as moves."""
    found = set()
    for e in entries:
        m = _CORRECTS.match(str(getattr(e, "reason", ""))) if getattr(e, "action", "") == "correct" else None
        if m:
            found.add(m[1])
    return found


def _hidden(value: str) -> str | None:
    """The first Unicode format (Cf) character in ``value``, as U+XXXX, if there is one."""
    return next((f"U+{ord(ch):04X}" for ch in value if unicodedata.category(ch) == "Cf"), None)


def problems(fields: Mapping[str, str], log_stacks: Collection[str]) -> list[str]:
    """Every reason the manual entry ``fields`` (option name -> value: --from, --to, --reason, --stack,
    --actor) must not be appended to a log whose entries name the stacks ``log_stacks``."""
    found = []
    for option in ("--from", "--to"):
        if not TAG.fullmatch(fields[option]):
            found.append(
                f"{option}: expected sha- followed by 7 to 40 lowercase hex digits, or none; saw {fields[option]!r}"
            )
    if fields["--from"] == fields["--to"]:
        found.append(f"--from and --to: a move names two images; saw {fields['--to']!r} twice")
    if not fields["--reason"].strip():
        found.append("--reason: required (one readable line saying why); saw an empty reason")
    if log_stacks and fields["--stack"] not in log_stacks:
        found.append(
            f"--stack: this log records stack {', '.join(sorted(log_stacks))}; saw {fields['--stack']!r} "
            "(check --log and --stack)"
        )
    for option, value in fields.items():
        hidden = _hidden(value)
        if hidden:
            found.append(f"{option}: must not contain invisible Unicode format or bidi controls; saw {hidden}")
    return found
