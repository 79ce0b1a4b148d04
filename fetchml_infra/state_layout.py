"""The layout of a file (DIY) backend, and the one-way upgrade from the legacy layout.

Pulumi's file backend has two layouts: the legacy one (``.pulumi/stacks/<stack>.json``, no ``meta.yaml`` or
``version: 0``) and the project layout (``meta.yaml`` ``version: 1``, ``.pulumi/stacks/<project>/<stack>.json``).
A CLI from v3.275.0 refuses the legacy layout outright and can no longer upgrade it, so the upgrade runs on the
oldest supported CLI (v3.64.0, the first with `pulumi state upgrade`), after a copy of ``.pulumi`` is kept.
The upgrade is one-way: CLIs older than v3.64.0 cannot read the result.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fetchml_infra import offline

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


def run_upgrade(pulumi: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`pulumi state upgrade` on the CLI at ``pulumi``, answering its confirmation prompt."""
    env = {**env, "PULUMI_DIY_BACKEND_IGNORE_DEPRECATION_ERROR": "1"}
    return subprocess.run(
        [str(pulumi), "state", "upgrade", "--color", "never"],
        input="yes\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def refusal(backend: Path | None, stack: str, cli: tuple[int, int, int]) -> str | None:
    """Why commands cannot run on ``backend`` with a CLI of version ``cli``: its legacy layout, which that CLI
    no longer reads. None for other backends, for the project layout, and for CLIs that still read it."""
    if backend is None or layout(backend).kind != "legacy" or cli < READS_ONLY_PROJECT_LAYOUT:
        return None
    return advice(backend, stack)


def upgrade(backend: Path, oldest_cli: Path, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    """Back up ``.pulumi``, upgrade it to the project layout on ``oldest_cli``, and report; the exit code."""
    before = layout(backend)
    if before.kind != "legacy":
        say(f"nothing to do: the state in {backend} is already in the {before.kind} layout")
        return 0
    locks = backend / ".pulumi" / "locks"
    held = [p for p in locks.rglob("*.json")] if locks.is_dir() else []
    if held:
        say(f"refused: an update holds a lock ({held[0]}); run this when no update runs (`fetchml-infra status`)")
        return 2
    try:
        kept = backup(backend)
    except OSError as exc:
        say(f"refused: could not keep a copy of {backend / '.pulumi'} first ({exc}); nothing was changed")
        return 2
    say(f"kept a copy of the legacy state in {kept}")
    done = run_upgrade(oldest_cli, env)
    after = layout(backend)
    detail = ((done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"])[-1]
    if after.kind == "legacy":  # `state upgrade` writes meta.yaml first: nothing was written
        shutil.rmtree(kept)
        say(f"the upgrade failed ({detail}); the state is as it was (nothing was written)")
        return 4
    if done.returncode != 0:
        say(f"the upgrade stopped part-way ({detail}); the state before it is in {kept}")
        return 4
    moved = [s for s in before.legacy_stacks if s not in after.legacy_stacks]
    say(f"upgraded {len(moved)} stack(s) to the project layout: {', '.join(moved) or 'none'}")
    for left in after.legacy_stacks:
        # The upgrade reads a stack's project from its resources; a stack never deployed has none, so it stays
        # behind, unseen by current CLIs (which warn about it on every run). Its file is in the copy.
        for f in (backend / ".pulumi" / "stacks").glob(f"{left}.json*"):
            f.unlink()
        say(
            f"stack {left} had never been deployed, so it had nothing to move; recreate it with "
            f"`pulumi stack init {left}` (Pulumi.{left}.yaml is kept; its old state file is in the copy)"
        )
    return 0


def oldest_cli(env: Mapping[str, str], say: Callable[[str], None]) -> Path:
    """The oldest supported CLI, built once into the toolchain cache if it is not there yet."""
    built = offline.toolchain_dirs(env)["pulumi-oldest"]
    if not (built / ".complete").is_file():
        say(f"building the CLI that can upgrade it (once, a few minutes) into {built}")
        subprocess.run([str(offline.REPO_ROOT / "scripts" / "toolchain.sh"), "--oldest"], env=dict(env), check=True)
    return built / "pulumi"


def upgrade_stack_backend(stack: str, env: Mapping[str, str], say: Callable[[str], None]) -> int:
    """`fetchml-infra state upgrade --stack S`: the backend S lives in, upgraded once."""
    backend = offline.backend_dir(env)
    if backend is None:
        say(f"nothing to do: {env.get('PULUMI_BACKEND_URL')} is not a file backend (only those have layouts)")
        return 0
    if layout(backend).kind != "legacy":
        return upgrade(backend, Path("pulumi"), env, say)  # says there is nothing to do
    if stack not in layout(backend).legacy_stacks:
        say(f"note: no stack '{stack}' in {backend}; upgrading the stacks it has")
    return upgrade(backend, oldest_cli(env, say), env, say)
