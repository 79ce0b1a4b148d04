"""The incident report a rollback carries (``rollback --incident FILE``; required on HIPAA stacks): why it rolled
back, the impact on PHI handling, any exposure risk. Its sha256 is pinned in the audit entry
(``reason=... incident=<sha256>``); its text is kept beside the log and, write-once, in the sink.

A report names no patient and holds no PHI: it is evidence for an audit, not a record of care.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("why-rolled-back", "impact-on-phi-handling", "exposure-risk")
MAX_BYTES = 64 * 1024
PIN = "incident="


def template(stack: str) -> str:
    lines = [
        f"# Incident report for a rollback of stack {stack}: fill in each line, save it (no PHI), then run the",
        "# rollback again with --incident FILE. Its sha256 goes into the audit entry; the text into the sink.",
        "why-rolled-back: ",
        "impact-on-phi-handling: ",
        "exposure-risk: ",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Report:
    text: bytes
    sha256: str

    def pin(self) -> str:
        return f"{PIN}{self.sha256}"


def read(path: Path, *, hipaa: bool) -> Report:
    """The report in ``path``; ValueError naming the file and what is missing. A HIPAA stack's report must fill
    in every field of the template."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"--incident: cannot read {path}: {exc.strerror}") from None
    if not data.strip() or len(data) > MAX_BYTES:
        raise ValueError(f"--incident: expected a report of 1 to {MAX_BYTES} bytes in {path}, saw {len(data)} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"--incident: expected UTF-8 text in {path}") from None
    if hipaa:
        given = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
        empty = [f for f in FIELDS if not given.get(f)]
        if empty:
            raise ValueError(
                f"--incident: a HIPAA stack's report fills in {', '.join(FIELDS)}; {path} leaves "
                f"{', '.join(empty)} empty or missing"
            )
    return Report(data, hashlib.sha256(data).hexdigest())


def keep(report: Report, folder: Path) -> Path:
    """Write the report under ``folder`` as ``<sha256>`` (content-addressed: writing it twice is harmless)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / report.sha256
    if not path.exists():
        tmp = folder / f".{report.sha256}.{os.getpid()}"
        tmp.write_bytes(report.text)
        tmp.replace(path)
    return path


def pinned(reason: str) -> str | None:
    """The incident sha256 a reason pins, if any."""
    _, found, rest = reason.rpartition(PIN)
    return rest[:64] if found and len(rest) >= 64 else None
