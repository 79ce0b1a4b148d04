"""The README's "Using it" block, run as written on a fresh stack of a fresh copy of the checkout.

The commands are the README's own bytes. Only the copy's stack config differs: its host ports and its
container names (`namePrefix`) are made unique, so that the test can never collide with a stack of the same
name that the machine runs for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fetchml_infra import audit
from fetchml_infra.offline import REPO_ROOT
from tests import dockerhost
from tests.providers.scripted_server import free_port

pytestmark = pytest.mark.e2e


def readme_block() -> str:
    """The first bash block under "## Using it"."""
    text = (REPO_ROOT / "README.md").read_text()
    found = re.search(r"^## Using it\n.*?^```bash\n(.*?)^```", text, re.S | re.M)
    assert found, "README.md: no ```bash block under '## Using it'"
    return found.group(1)


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of the checkout's tracked files (the working tree's bytes), sharing the bootstrapped venv,
    with a unique name prefix and free ports in Pulumi.staging.yaml; cleaned up whatever happens."""
    root = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(source.read_bytes())
            (root / name).chmod(source.stat().st_mode)
    (root / ".venv").symlink_to(REPO_ROOT / ".venv")
    prefix = f"fetchml-readme-{uuid.uuid4().hex[:6]}"
    config_file = root / "Pulumi.staging.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["config"].update(
        {
            "fetchml:namePrefix": prefix,
            "fetchml:apiHostPort": str(free_port()),
            "fetchml:redisHostPort": str(free_port()),
            "fetchml:minioHostPort": str(free_port()),
            "fetchml:proxyAdminPort": str(free_port()),
            "fetchml:workerReplicas": "1",
        }
    )
    config_file.write_text(yaml.safe_dump(config))
    try:
        yield root, prefix
    finally:
        dockerhost.remove("container", *dockerhost.containers_named(f"{prefix}-"))
        dockerhost.remove("volume", *(f"{prefix}-{v}-data" for v in ("redis", "minio", "postgres")))
        dockerhost.remove("network", f"{prefix}-net")


def test_the_readme_runs_as_written_on_a_fresh_stack(checkout: tuple[Path, str]) -> None:
    root, prefix = checkout
    # The copy's own package, not the checkout's (the venv's editable install points at the checkout).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "FETCHML_"))}
    env |= {"PYTHONPATH": str(root), "FETCHML_ACTOR": "readme-reader"}
    script = "set -euo pipefail\nset -x\n" + readme_block()
    run = subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    shown = run.stdout + run.stderr
    assert run.returncode == 0, shown[-4000:]

    A, B = "sha-1a2b3c4", "sha-5d6e7f8"
    log = root / ".state" / "audit" / "staging.audit.log"
    assert audit.verify(str(log)).ok
    assert [(e.action, e.outcome, e.from_image, e.to_image, e.reason) for e in audit.entries(str(log))] == [
        ("deploy", "success", "none", A, "release 41"),
        ("deploy", "success", A, B, "release 42"),
        ("rollback", "success", B, A, "release 42 slows training"),
        ("rollback", "success", A, B, "-"),  # the plain path: a rollback too, since B passed here before
        ("destroy", "success", B, "none", "end of trial"),
    ]
    assert {e.actor for e in audit.entries(str(log))} == {"readme-reader"}
    assert "[x] health" in shown  # the rollback's checklist
    # A staging-like stack may use the development passphrase, and is told so.
    assert "scripts/env.sh: secrets use the development passphrase" in shown
    assert "note: stack 'staging' keeps its secrets under the development passphrase" in shown
    assert "ok: .state/audit/staging.audit.log: 4 entries, head " in shown
    # What destroy says it did: the app is gone, the data volumes stay.
    assert dockerhost.containers_named(f"{prefix}-api") == []
    assert dockerhost.inspect("volume", f"{prefix}-redis-data") is not None
    assert dockerhost.inspect("volume", f"{prefix}-minio-data") is not None
    # The stack lived in the copy's own backend (destroy removed it from there), not in the checkout's.
    assert (root / ".state" / "backend" / ".pulumi" / "meta.yaml").is_file()
    assert (root / "Pulumi.staging.yaml").is_file()  # destroy keeps the stack's config
