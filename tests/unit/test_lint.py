"""The code stays as the next engineer should find it: ruff (lint + format) and mypy clean."""

from __future__ import annotations

import subprocess
import sys

from fetchml_infra.offline import REPO_ROOT

PATHS = ["fetchml_infra", "tests", "scripts", "policy", "__main__.py"]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=REPO_ROOT, capture_output=True, text=True)


def test_ruff_lint() -> None:
    done = run("ruff", "check", *PATHS)
    assert done.returncode == 0, done.stdout


def test_ruff_format() -> None:
    done = run("ruff", "format", "--check", *PATHS)
    assert done.returncode == 0, done.stdout


def test_mypy() -> None:
    done = run("mypy", "fetchml_infra", "tests", *sorted(str(p) for p in (REPO_ROOT / "scripts").glob("*.py")))
    assert done.returncode == 0, done.stdout
