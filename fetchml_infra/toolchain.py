"""Which Pulumi CLI this project runs on, and what that version can do.

The supported range starts at ``PULUMI_OLDEST_VERSION`` in scripts/toolchain.env (the oldest CLI that reads the
current file-backend layout; CI runs a smoke on it). Two facts depend on the version:

- from v3.276.0 a policy pack may be given as an executable, which the engine runs directly. The pack is
  started that way there, because the Python language host that can be built here (v3.61.0) cannot start a
  pack the way current CLIs ask a host to (it runs `python ''` in the project directory instead);
- older CLIs start the pack directory through `pulumi-analyzer-policy-python`, as they always did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache

from fetchml_infra.offline import REPO_ROOT, read_versions

Version = tuple[int, int, int]

EXECUTABLE_POLICY_PACKS: Version = (3, 276, 0)
POLICY_DIR = REPO_ROOT / "policy"
POLICY_EXECUTABLE = POLICY_DIR / "fetchml-safety"


def parse(text: str) -> Version | None:
    """``v3.276.0`` (or ``3.64.0-dev``) -> (3, 276, 0); None when ``text`` names no version."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def show(version: Version) -> str:
    return "v" + ".".join(map(str, version))


def minimum() -> Version:
    oldest = parse(read_versions()["PULUMI_OLDEST_VERSION"])
    assert oldest is not None, "scripts/toolchain.env: PULUMI_OLDEST_VERSION is not a version"
    return oldest


def unsupported(seen: str | None, where: str) -> str | None:
    """Why the CLI at ``where`` cannot be used (its `pulumi version` printed ``seen``), or None if it can."""
    version = parse(seen or "")
    if version is None:
        return f"`{where} version` printed {seen!r}, expected a version such as v3.276.0; run scripts/bootstrap"
    if version < minimum():
        return (
            f"pulumi {show(version)} at {where} is older than the oldest supported {show(minimum())}; "
            "upgrade it, or remove it from PATH and run scripts/bootstrap to build the project's own"
        )
    return None


@cache
def cli_version() -> Version:
    """The version of the `pulumi` on PATH, checked once per process against the supported range."""
    where = shutil.which("pulumi")
    if where is None:
        raise RuntimeError("no `pulumi` on PATH; run scripts/bootstrap (or `. scripts/env.sh` in this shell)")
    seen = subprocess.run([where, "version"], capture_output=True, text=True).stdout.strip()
    problem = unsupported(seen, where)
    if problem:
        raise RuntimeError(problem)
    version = parse(seen)
    assert version is not None
    if os.environ.get("FETCHML_PULUMI_CLI") == "oldest" and version != minimum():
        raise RuntimeError(
            f"FETCHML_PULUMI_CLI=oldest asks for pulumi {show(minimum())}, but the pulumi on PATH ({where}) is "
            f"{show(version)}; build the oldest with `scripts/toolchain.sh --oldest`"
        )
    return version


def policy_pack(version: Version) -> str:
    """What to pass to `--policy-pack` for the fetchml-safety pack on a CLI of ``version``."""
    return str(POLICY_EXECUTABLE if version >= EXECUTABLE_POLICY_PACKS else POLICY_DIR)
