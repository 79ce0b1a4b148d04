"""The audit log: one greppable line per deploy or rollback, hash-chained, only ever appended to.

A line (one line on disk)::

    2024-01-15T14:30:00Z | rollback | success | from=sha-abc123 | to=sha-def456 | actor=deploy-user
    | reason=health-check-failure | stack=prod | prev=<sha256 hex> | hash=<sha256 hex>

The first seven fields are the rollback procedure's format, in its order. ``hash`` is the sha256 of the
line's text before `` | hash=``, so it covers ``prev``: the hash of the line before, 64 zeros for the first.
A plain log from before the chain is adopted: an ``adopt`` entry whose ``prev`` is the sha256 of the plain
lines above it pins them. A torn last line (a crash mid-write) blocks appends until it is sealed: a
newline makes its bytes a line of their own and a ``seal`` entry pins their sha256, the chain going on
across it. The log is never rewritten, truncated or repaired here: damage is reported.

``line`` holds one line's format; ``scan``, ``seal`` and ``prefix`` verify a log's bytes (pure); ``logfile``
the file I/O and locking; ``writable`` the check, run before a deploy changes anything, that an append could
succeed; ``view`` what ``tail`` and ``verify`` print about lines that are not entries (adopted plain lines,
sealed torn lines).
"""

from fetchml_infra.audit.filebytes import LOCK_TIMEOUT
from fetchml_infra.audit.line import (
    ACTIONS,
    OUTCOMES,
    ZERO_HASH,
    AuditError,
    Entry,
    Problem,
    clean_value,
    count_entries,
    make_entry,
)
from fetchml_infra.audit.logfile import (
    adopt,
    append,
    entries,
    head,
    require_intact,
    seal,
    tail,
    verify,
)
from fetchml_infra.audit.scan import Verdict, verify_bytes
from fetchml_infra.audit.writable import FREE_SPACE_MARGIN, require_appendable

__all__ = [
    "ACTIONS",
    "FREE_SPACE_MARGIN",
    "LOCK_TIMEOUT",
    "OUTCOMES",
    "ZERO_HASH",
    "AuditError",
    "Entry",
    "Problem",
    "Verdict",
    "adopt",
    "append",
    "clean_value",
    "count_entries",
    "entries",
    "head",
    "make_entry",
    "require_appendable",
    "require_intact",
    "seal",
    "tail",
    "verify",
    "verify_bytes",
]
