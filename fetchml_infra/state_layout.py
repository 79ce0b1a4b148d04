"""The layout of a file (DIY) backend: which one it is, what a CLI makes of it, and the copy kept before the
one-way upgrade (fetchml_infra.state_upgrade).

Pulumi's file backend has two layouts: the legacy one (``.pulumi/stacks/<stack>.json``, no ``meta.yaml`` or
``version: 0``) and the project layout (``meta.yaml`` ``version: 1``, ``.pulumi/stacks/<project>/<stack>.json``).
A CLI from v3.275.0 refuses the legacy layout outright and can no longer upgrade it, so the upgrade runs on the
oldest supported CLI (v3.64.0, the first with `pulumi state upgrade`), after a copy of ``.pulumi`` is kept.
The upgrade is one-way: CLIs older than v3.64.0 cannot read the result.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

READS_ONLY_PROJECT_LAYOUT = (3, 275, 0)
_STACK_FILE = re.compile(r"^(?P<name>.+?)\.json(\.gz)?$")


@dataclass(frozen=True)
class Layout:
    kind: str  # "legacy" | "project" | "empty"
    legacy_stacks: tuple[str, ...]  # stacks still stored in the legacy layout


def layout(backend: Path) -> Layout:
    """Which layout the file backend at ``backend`` holds (pure apart from reading the directory)."""
    pulumi = backend / ".pulumi"
    stacks_dir = pulumi / "stacks"
    legacy = tuple(
        sorted(
            m["name"]
            for f in (stacks_dir.iterdir() if stacks_dir.is_dir() else ())
            if f.is_file() and (m := _STACK_FILE.match(f.name))
        )
    )
    meta = pulumi / "meta.yaml"
    version = re.search(r"^version:\s*(\d+)", meta.read_text(), re.M) if meta.is_file() else None
    if version is not None and int(version[1]) >= 1:
        return Layout("project", legacy)
    return Layout("legacy" if legacy else "empty", legacy)


def stack_file(backend: Path, stack: str) -> Path | None:
    """The legacy-layout state file of ``stack``, if there is one."""
    found = [f for f in (backend / ".pulumi" / "stacks").glob(f"{stack}.json*") if _STACK_FILE.match(f.name)]
    return found[0] if found else None


def has_resources(state_file: Path) -> bool | None:
    """Does the checkpoint in ``state_file`` hold resources? None when it cannot be read."""
    try:
        raw = state_file.read_bytes()
        data = json.loads(gzip.decompress(raw) if state_file.name.endswith(".gz") else raw)
        latest = (data.get("checkpoint") or {}).get("latest") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return bool(latest.get("resources"))


def advice(backend: Path, stack: str) -> str:
    return (
        f"the state in {backend} is in Pulumi's legacy file-backend layout, which pulumi v3.275.0 and later "
        f"refuse to read; upgrade it once with `fetchml-infra state upgrade --stack {stack}` (one-way: it keeps "
        "a copy of .pulumi first, and pulumi older than v3.64.0 cannot read the result)"
    )


def backup(backend: Path, now: datetime | None = None) -> Path:
    """A copy of ``backend/.pulumi`` beside it, named for the time (and a count, if that name is taken)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = backend / f".pulumi.legacy-backup-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = backend / f".pulumi.legacy-backup-{stamp}-{n}"
    shutil.copytree(backend / ".pulumi", target, symlinks=True)
    return target


def refusal(backend: Path | None, stack: str, cli: tuple[int, int, int]) -> str | None:
    """Why commands cannot run on ``backend`` with a CLI of version ``cli``: its legacy layout, which that CLI
    no longer reads. None for other backends, for the project layout, and for CLIs that still read it."""
    if backend is None or layout(backend).kind != "legacy" or cli < READS_ONLY_PROJECT_LAYOUT:
        return None
    return advice(backend, stack)
