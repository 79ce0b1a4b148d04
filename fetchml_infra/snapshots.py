"""Snapshots of the stack's data, taken before every move of its image: what one is, how it is named and which
ones a prune removes. Pure; fetchml_infra.snapshot_store reads and writes them.

A snapshot is a folder ``<stack>/<id>/`` in the ``snapshots`` bucket of the stack's MinIO: ``redis.rdb`` (the
queue, as Redis's own RDB), ``db.dump`` (``pg_dump -Fc`` of the database), ``artifacts.json`` (a manifest of
the artifacts bucket, not its objects) and, written last, ``manifest.json``: a snapshot whose manifest is
missing was cut short and is not one. The id sorts by time and carries the audit entry it was taken before.

A rollback never deletes or restores a snapshot ("new snapshots remain"); `fetchml-infra restore` reads one,
and only `fetchml-infra snapshots prune` deletes, audited.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

BUCKET = "snapshots"
MANIFEST = "manifest.json"
PARTS = {"redis": "redis.rdb", "db": "db.dump", "artifacts": "artifacts.json"}
ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-e[0-9]{6}(-[0-9]+)?$")


@dataclass(frozen=True)
class Part:
    key: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    id: str
    stack: str
    time: str  # YYYY-MM-DDTHH:MM:SSZ
    before_entry: int  # the audit chain had before_entry - 1 entries: the move it guards is entry before_entry
    audit_head: str
    image: str  # what the app ran when it was taken ("-": no app yet)
    target: str  # what the move went to
    action: str  # deploy | rollback | restore
    parts: dict[str, Part] = field(default_factory=dict)
    schema: int | None = None  # the database's schema version when it was taken (None: no database part)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw: dict[str, Any] = json.loads(data)
        parts = {name: Part(**p) for name, p in (raw.pop("parts", None) or {}).items()}
        return cls(**raw, parts=parts)

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {_size(p.bytes)}" for name, p in sorted(self.parts.items())) or "no parts"
        return (
            f"{self.id}  {self.time}  before entry #{self.before_entry} ({self.action} {self.image} -> "
            f"{self.target})  {sizes}"
        )


def new_id(now: datetime, before_entry: int, taken: set[str]) -> str:
    """Sortable by time; unique among ``taken`` (two snapshots in one second get -2, -3...)."""
    base = f"{now:%Y%m%dT%H%M%SZ}-e{before_entry:06d}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def folder(stack: str, snapshot: str) -> str:
    return f"{stack}/{snapshot}/"


def to_prune(ids: list[str], keep: int) -> list[str]:
    """The oldest ids beyond the newest ``keep``, oldest first."""
    ordered = sorted(ids)
    return ordered[: max(len(ordered) - keep, 0)]


def artifacts_listing(objects: list[tuple[str, int, str]]) -> bytes:
    """The artifacts bucket as it stood: one JSON object per line, key, size and ETag."""
    lines = (json.dumps({"key": k, "bytes": n, "etag": e}, sort_keys=True) for k, n, e in sorted(objects))
    return "".join(f"{line}\n" for line in lines).encode()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:g} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"
