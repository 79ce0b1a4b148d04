"""The supported range of Pulumi CLIs, on the real engine: the oldest supported CLI runs the whole procedure
(deploy, a failed deploy that rolls back by itself, a rollback, a policy refusal), state it wrote in the
legacy layout is named and upgraded once to what the current CLI reads, and an unsupported CLI is refused
by name before anything runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchml_infra import engine, offline, state_layout, toolchain
from fetchml_infra.offline import REPO_ROOT, read_versions
from tests.e2e.project import Project, make_project, throwaway
from tests.e2e.test_zero_downtime import STORY

pytestmark = pytest.mark.e2e
A, B, BROKEN = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee"
VERSIONS = read_versions()
OLDEST, CURRENT = f"v{VERSIONS['PULUMI_OLDEST_VERSION']}", f"v{VERSIONS['PULUMI_VERSION']}"
LEGACY = {"PULUMI_SELF_MANAGED_STATE_LEGACY_LAYOUT": "1"}  # how a CLI of before v3.6x laid out new state


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, f"exit {done.returncode}, expected {code}\n{done.stdout[-3000:]}\n{done.stderr}"
    return str(done.stdout + done.stderr)


def version(env: dict[str, str]) -> str:
    return subprocess.run(["pulumi", "version"], env=env, capture_output=True, text=True).stdout.strip()


def moves(p: Project) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()]


def tree_digest(root: Path) -> str:
    """One digest of every file's path and bytes under ``root``: equal only if nothing was written."""
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def oldest_staging(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, cli="oldest", image=A, environment="staging", autoRollback="true") as p:
        yield p


def test_oldest_supported_cli_runs_the_procedure(oldest_staging: Project) -> None:
    p = oldest_staging
    assert version(p.env) == OLDEST
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    ok(p.cli("deploy", "--image", B))
    out = ok(p.cli("deploy", "--image", BROKEN), code=3)
    assert "health gate failed" in out and f"rolled back to {B}" in out
    assert json.loads(p.config("deniedImages")) == [BROKEN]
    ok(p.cli("rollback", "--reason", "smoke"))
    assert moves(p) == STORY
    assert p.outputs()["image"] == A


def test_oldest_supported_cli_enforces_the_policy_pack(tmp_path: Path) -> None:
    """The pack starts the way that CLI starts packs (the directory, through pulumi-analyzer-policy-python)
    and refuses an unprotected volume before it is created."""
    (tmp_path / "backend").mkdir()
    venv = REPO_ROOT / ".venv"
    (tmp_path / "Pulumi.yaml").write_text(
        f"name: oldest-policy\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
    )
    volume = f"oldest-policy-{tmp_path.name[-8:]}"
    (tmp_path / "__main__.py").write_text(f"import pulumi_docker as docker\ndocker.Volume('data', name='{volume}')\n")
    env = offline.environment({**os.environ, "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}"}, cli="oldest")
    pulumi = ["pulumi", "--non-interactive"]
    assert subprocess.run([*pulumi, "version"], env=env, capture_output=True, text=True).stdout.strip() == OLDEST
    subprocess.run([*pulumi, "stack", "init", "s"], cwd=tmp_path, env=env, check=True, capture_output=True)
    pack = toolchain.policy_pack(toolchain.parse(OLDEST) or (0, 0, 0))
    assert pack == str(REPO_ROOT / "policy")
    run = engine.run(["preview", "--policy-pack", pack], stack="s", cwd=tmp_path, env=env, on_output=lambda _: None)
    assert run.returncode != 0
    policies = [e["policyEvent"] for e in run.events if "policyEvent" in e]
    assert [(p["policyName"], p["enforcementLevel"], p["resourceUrn"].rsplit("::", 1)[-1]) for p in policies] == [
        ("persistent-volumes-protected", "mandatory", "data")
    ]
    assert subprocess.run(["docker", "volume", "inspect", volume], capture_output=True).returncode != 0


def test_legacy_state_is_named_then_upgraded_once(tmp_path: Path) -> None:
    p = make_project(tmp_path, "oldest", extra_env=LEGACY, image=A, environment="staging", autoRollback="true")
    backend = Path(p.env["PULUMI_BACKEND_URL"].removeprefix("file://"))
    oldest_env = p.env
    try:
        out = ok(p.cli("deploy", "--image", A, "--reason", "on the old CLI"))
        assert "note: the state in" in out and "legacy file-backend layout" in out  # said, not refused
        init = ["pulumi", "stack", "init", "never-deployed", "--non-interactive"]
        subprocess.run(init, cwd=p.root, env=p.env, check=True, capture_output=True)  # never deployed
        assert state_layout.layout(backend) == state_layout.Layout(
            "legacy", tuple(sorted(("never-deployed", p.stack_name)))
        )

        # The current CLI: every command names the upgrade and writes nothing.
        p.env = offline.environment({k: v for k, v in p.env.items() if k not in LEGACY}, cli="current")
        assert version(p.env) == CURRENT
        before = tree_digest(backend)
        out = ok(p.cli("status"), code=2)
        assert f"`fetchml-infra state upgrade --stack {p.stack_name}`" in out and "legacy" in out
        assert tree_digest(backend) == before

        # An upgrade that cannot write changes nothing and says so; the next one works.
        subprocess.run(["chattr", "+i", str(backend / ".pulumi")], check=True)
        try:
            out = ok(p.cli("state", "upgrade"), code=4)
        finally:
            subprocess.run(["chattr", "-i", str(backend / ".pulumi")], check=True)
        assert "the upgrade failed" in out and "the state is as it was (nothing was written)" in out
        assert state_layout.layout(backend).kind == "legacy" and tree_digest(backend) == before

        out = ok(p.cli("state", "upgrade"))
        assert "kept a copy of the legacy state in" in out
        assert f"upgraded 1 stack(s) to the project layout: {p.stack_name}" in out
        assert "stack never-deployed had no resources (never deployed, or destroyed)" in out
        assert state_layout.layout(backend) == state_layout.Layout("project", ())
        copies = sorted(backend.glob(".pulumi.legacy-backup-*"))
        assert (copies[-1] / "stacks" / f"{p.stack_name}.json").is_file()

        # The stack, its history and its chain carry on under the current CLI.
        ok(p.cli("status"))
        assert [r["image"] for r in json.loads(ok(p.cli("history", "--json")))] == [A]
        ok(p.cli("deploy", "--image", B))
        assert moves(p) == [("deploy", "success", "none", A), ("deploy", "success", A, B)]
        assert "nothing to do" in ok(p.cli("state", "upgrade"))
    finally:
        if state_layout.layout(backend).kind == "legacy":
            p.env = oldest_env
        p.teardown()


def test_an_unsupported_cli_is_refused_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho v3.50.0\n")
    fake.chmod(0o755)
    env = {**os.environ, "FETCHML_CACHE": str(tmp_path / "empty-cache"), "PATH": f"{fake.parent}:/usr/bin:/bin"}
    env = offline.environment(env)
    done = subprocess.run(["fetchml-infra", "status", "--stack", "any"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert f"pulumi v3.50.0 at {fake} is older than the oldest supported {OLDEST}" in done.stderr

    plan = subprocess.run([REPO_ROOT / "scripts" / "toolchain.sh", "--plan"], env=env, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert f"your pulumi v3.50.0 at {fake} is older than the oldest supported {OLDEST}" in plan.stdout
    assert f"would use pulumi {CURRENT} (to build in" in plan.stdout

    # A user's own CLI of a supported version is used as it is, and nothing is built.
    oldest_dir = offline.toolchain_dirs(os.environ)["pulumi-oldest"]
    env["PATH"] = f"{oldest_dir}:/usr/bin:/bin"
    plan = subprocess.run([REPO_ROOT / "scripts" / "toolchain.sh", "--plan"], env=env, capture_output=True, text=True)
    assert f"using your pulumi {OLDEST} at {oldest_dir / 'pulumi'}" in plan.stdout, plan.stdout + plan.stderr
