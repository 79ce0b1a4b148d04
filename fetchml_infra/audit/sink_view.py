"""check-sink's read of the sink: every version of every object of a stack, each latest body and its lock,
into a ``findings.SinkView``. Objects an earlier check found sound, and unchanged since, are not read again."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from fetchml_infra.audit.findings import SinkEntry, SinkView
from fetchml_infra.audit.target import SinkError

if TYPE_CHECKING:
    from fetchml_infra.audit.sink import Sink

PARALLEL = 16  # concurrent reads when every object is fetched (the sink's client pools as many connections)
_INDEX = re.compile(r"[0-9]{12}")


def _versions(sink: Sink, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every version and delete marker under ``prefix``, by key."""
    versions: dict[str, list[dict[str, Any]]] = {}
    pages = sink._s3.get_paginator("list_object_versions").paginate(Bucket=sink.target.bucket, Prefix=prefix)
    try:
        for page in pages:
            for v in page.get("Versions", []):
                versions.setdefault(v["Key"], []).append(v)
            for m in page.get("DeleteMarkers", []):
                versions.setdefault(m["Key"], []).append({**m, "marker": True})
    except (ClientError, BotoCoreError, OSError) as exc:
        raise SinkError(f"audit sink {sink.target.url()}: listing {prefix} failed: {exc}") from None
    return versions


def read(sink: Sink, known: Mapping[int, bytes], verified: tuple[int, Mapping[int, str]]) -> SinkView:
    """Everything check-sink compares: every version of every object, each latest body and its lock.

    ``verified`` = (entries, {checkpoint length: ETag}) an earlier check found sound: an entry below that
    count that still has its one version is not read again when its ETag (the MD5 of its bytes) matches the
    ``known`` local line, nor a checkpoint whose one version has the ETag remembered. Lock and metadata cannot
    have changed: COMPLIANCE retention is never shortened and any write makes a new version."""
    view = SinkView(bucket_lock=sink._bucket_lock())
    entries = _versions(sink, f"entries/{sink.stack}/")
    todo: dict[str, list[dict[str, Any]]] = {}
    for key, vs in entries.items():
        i = _index(sink, key, "entries")
        only = vs[0] if len(vs) == 1 and not vs[0].get("marker") else None
        line = known.get(i)
        if 0 <= i < verified[0] and only and line and only["ETag"].strip('"') == hashlib.md5(line).hexdigest():
            view.entries[i] = SinkEntry(line, str(i), sink.stack, trusted=True)
        else:
            todo[key] = vs
    for key, vs in _versions(sink, f"checkpoints/{sink.stack}/").items():
        length, only = _index(sink, key, "checkpoints"), vs[0] if len(vs) == 1 and not vs[0].get("marker") else None
        if only and length > 0 and verified[1].get(length) == only["ETag"]:
            view.checkpoint_etags[length] = only["ETag"]  # sound before, unchanged: not read again
        else:
            todo[key] = vs
    with ThreadPoolExecutor(PARALLEL) as pool:
        read = dict(zip(todo, pool.map(lambda item: _read_key(sink, item), todo.items()), strict=True))
    for key, (body, head, vs) in read.items():
        kind = "checkpoints" if key.startswith("checkpoints/") else "entries"
        i = _index(sink, key, kind)
        if i < 0 or not body:
            view.strays.append(key)
        elif kind == "checkpoints":
            view.checkpoints[i] = body
            if len(vs) == 1 and not vs[0].get("marker"):
                view.checkpoint_etags[i] = vs[0]["ETag"]
        else:
            meta = head.get("Metadata", {})
            view.entries[i] = SinkEntry(
                body=body[0],
                meta_index=meta.get("index"),
                meta_stack=meta.get("stack"),
                versions=sum(1 for v in vs if not v.get("marker")),
                delete_markers=sum(1 for v in vs if v.get("marker")),
                mode=head.get("ObjectLockMode"),
                retain_until=head.get("ObjectLockRetainUntilDate"),
                written=head.get("LastModified"),
            )
    return view


def _index(sink: Sink, key: str, kind: str) -> int:
    """The index a key names (exactly ``<kind>/<stack>/`` and twelve ASCII digits), or -1: a stray."""
    name = key.removeprefix(f"{kind}/{sink.stack}/")
    return int(name) if _INDEX.fullmatch(name) and key == f"{kind}/{sink.stack}/{name}" else -1


def _read_key(sink: Sink, item: tuple[str, list[dict[str, Any]]]) -> tuple[list[Any], dict[str, Any], list[Any]]:
    """(bodies: the latest for an entry, every version's for a checkpoint; the latest's head; versions)."""
    key, vs = item
    live = [v for v in vs if not v.get("marker")]
    if key.startswith("checkpoints/"):
        return [sink.body(key, v["VersionId"]).decode(errors="replace") for v in live], {}, vs
    latest = max(live, key=lambda v: v["LastModified"], default=None)  # under a delete marker too
    if latest is None:
        return [], {}, vs
    extra = {"VersionId": latest["VersionId"]} if latest.get("VersionId") not in (None, "null") else {}
    got = sink._call(f"reading {key}", sink._s3.get_object, Key=key, **extra)  # body, metadata and lock
    return [bytes(got["Body"])], got, vs
