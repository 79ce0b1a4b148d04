"""`fetchml-infra state upgrade`: a legacy file backend moved to the project layout, once, with a copy kept.

The move itself is Pulumi's own `pulumi state upgrade`, run on the oldest supported CLI (current CLIs can no
longer read the legacy layout, let alone upgrade it). That command writes ``meta.yaml`` before it moves any
stack, so a failure that left the layout legacy wrote nothing, and the copy is dropped again.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from fetchml_infra import lock, offline
from fetchml_infra.state_layout import backup, has_resources, layout, stack_file

Say = Callable[[str], None]


def run_upgrade(pulumi: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`pulumi state upgrade` on the CLI at ``pulumi``, answering its confirmation prompt."""
    env = {**env, "PULUMI_DIY_BACKEND_IGNORE_DEPRECATION_ERROR": "1"}
    return subprocess.run(
        [str(pulumi), "state", "upgrade", "--color", "never"],
        input="yes\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _skipped_reason(output: str, stack: str) -> str:
    """Pulumi's own words for a stack it skipped ("Skipping stack "x": no project found")."""
    marker = f'Skipping stack "{stack}":'
    for line in output.splitlines():
        if marker in line:
            return line.partition(marker)[2].strip()
    return "Pulumi gave no reason"


def upgrade(backend: Path, oldest_cli: Path, env: Mapping[str, str], say: Say) -> int:
    """Back up ``.pulumi``, upgrade it to the project layout on ``oldest_cli``, and report; the exit code."""
    before = layout(backend)
    if before.kind != "legacy":
        say(f"nothing to do: the state in {backend} is already in the {before.kind} layout")
        return 0
    held = [found for stack in before.legacy_stacks for found in lock.engine_locks(backend, stack)]
    if held:
        say(
            f"refused: an update holds a lock ({held[0].path}); run this when none runs. A lock left by a killed "
            "engine is cleared by `FETCHML_PULUMI_CLI=oldest fetchml-infra recover --stack S` (that CLI still "
            "reads this layout)"
        )
        return 2
    try:
        kept = backup(backend)
    except OSError as exc:
        say(f"refused: could not keep a copy of {backend / '.pulumi'} first ({exc}); nothing was changed")
        return 2
    say(f"kept a copy of the legacy state in {kept}")
    try:
        done = run_upgrade(oldest_cli, env)
        output, code = done.stdout + done.stderr, done.returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        output, code = str(exc), -1
    after = layout(backend)
    detail = (output.strip().splitlines() or [f"exit {code}"])[-1]
    if after.kind == "legacy":  # `state upgrade` writes meta.yaml first: nothing was written
        kept_note = "" if _drop(kept) else f"; the copy is in {kept}"
        say(f"the upgrade failed ({detail}); the state is as it was (nothing was written){kept_note}")
        return 4
    moved = [s for s in before.legacy_stacks if s not in after.legacy_stacks]
    say(f"upgraded {len(moved)} stack(s) to the project layout: {', '.join(moved) or 'none'}")
    stuck = []
    for left in after.legacy_stacks:
        state = stack_file(backend, left)
        if state is not None and has_resources(state) is False:
            # Nothing to move (never deployed, or destroyed): current CLIs would warn about the file on every
            # run, and it is in the copy, so it goes.
            state.unlink()
            say(
                f"stack {left} had no resources (never deployed, or destroyed), so there was nothing to move; "
                f"`pulumi stack init {left}` recreates it (Pulumi.{left}.yaml is kept; its old state is in the copy)"
            )
        else:
            stuck.append(left)
            say(f"stack {left} was not moved ({_skipped_reason(output, left)}); its state is untouched")
    if code != 0 or stuck:
        say(f"the upgrade did not finish ({detail}); the state before it is in {kept}")
        return 4
    return 0


def _drop(copy: Path) -> bool:
    try:
        shutil.rmtree(copy)
    except OSError:
        return False
    return True


def oldest_cli(env: Mapping[str, str], say: Say) -> Path | None:
    """The oldest supported CLI, built once into the toolchain cache if it is not there yet."""
    built = offline.toolchain_dirs(env)["pulumi-oldest"]
    if not (built / ".complete").is_file():
        say(f"building the CLI that can upgrade it (once, a few minutes) into {built}")
        script = offline.REPO_ROOT / "scripts" / "toolchain.sh"
        if subprocess.run([str(script), "--oldest"], env=dict(env)).returncode != 0:
            say(f"refused: building it failed (output above); nothing was changed. Run `{script} --oldest`")
            return None
    return built / "pulumi"


def upgrade_stack_backend(stack: str, env: Mapping[str, str], say: Say) -> int:
    """`fetchml-infra state upgrade --stack S`: the file backend S lives in, upgraded once."""
    backend = offline.backend_dir(env)
    if backend is None:
        say(f"nothing to do: {env.get('PULUMI_BACKEND_URL')} is not a local file backend (only those are checked)")
        return 0
    found = layout(backend)
    if found.kind != "legacy":
        say(f"nothing to do: the state in {backend} is already in the {found.kind} layout")
        return 0
    if stack not in found.legacy_stacks:
        say(f"refused: no stack '{stack}' in {backend} (its stacks: {', '.join(found.legacy_stacks)}); nothing changed")
        return 2
    cli = oldest_cli(env, say)
    return 2 if cli is None else upgrade(backend, cli, env, say)
