"""Which Pulumi runs and what follows from its version: the supported range, how the policy pack starts, which
toolchain directories lead PATH, the backend layout, and that provider bookkeeping is never an app change."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fetchml_infra import offline, outcome, review, state_layout, state_upgrade, toolchain

VERSIONS = offline.read_versions()
OLDEST = toolchain.parse(VERSIONS["PULUMI_OLDEST_VERSION"])


@pytest.mark.parametrize(
    ("text", "version"),
    [("v3.276.0", (3, 276, 0)), ("3.64.0-dev.0", (3, 64, 0)), ("  v3.9.10\n", (3, 9, 10)), ("", None), ("x", None)],
)
def test_parse(text: str, version: tuple[int, int, int] | None) -> None:
    assert toolchain.parse(text) == version


def test_supported_range_starts_at_the_oldest_in_toolchain_env() -> None:
    assert OLDEST is not None and toolchain.minimum() == OLDEST
    assert toolchain.unsupported(f"v{VERSIONS['PULUMI_OLDEST_VERSION']}", "/x/pulumi") is None
    assert toolchain.unsupported(f"v{VERSIONS['PULUMI_VERSION']}", "/x/pulumi") is None
    assert toolchain.unsupported("v3.50.0", "/x/pulumi") == (
        f"pulumi v3.50.0 at /x/pulumi is older than the oldest supported {toolchain.show(OLDEST)}; "
        "upgrade it, or remove it from PATH and run scripts/bootstrap to build the project's own"
    )
    assert "printed 'not a version'" in (toolchain.unsupported("not a version", "/x/pulumi") or "")


def test_the_pack_starts_as_an_executable_from_v3_276_and_as_a_directory_before() -> None:
    assert toolchain.policy_pack((3, 276, 0)) == str(toolchain.POLICY_EXECUTABLE)
    assert toolchain.policy_pack((3, 300, 1)) == str(toolchain.POLICY_EXECUTABLE)
    assert toolchain.policy_pack((3, 275, 0)) == str(toolchain.POLICY_DIR)
    assert toolchain.POLICY_EXECUTABLE.stat().st_mode & 0o111, "policy/fetchml-safety must be executable"


def _built(root: Path, name: str) -> Path:
    d = root / "toolchain" / name
    d.mkdir(parents=True)
    (d / ".complete").write_text("2026-11-27T00:00:00Z\n")
    return d


def test_path_leads_with_the_chosen_built_cli_and_keeps_the_users_own_otherwise(tmp_path: Path) -> None:
    base = {"FETCHML_CACHE": str(tmp_path), "PATH": "/home/u/.pulumi/bin:/usr/bin"}
    # Nothing built: the user's own pulumi (first on their PATH) stays first.
    assert offline.environment(base)["PATH"].split(":")[-2:] == ["/home/u/.pulumi/bin", "/usr/bin"]
    host = f"python-host-v{VERSIONS['PULUMI_PYTHON_HOST_VERSION']}"
    current = _built(tmp_path, f"pulumi-v{VERSIONS['PULUMI_VERSION']}-{host}")
    oldest = _built(tmp_path, f"pulumi-v{VERSIONS['PULUMI_OLDEST_VERSION']}-{host}")
    env = offline.environment(base)
    assert env["PATH"].split(":")[0] == str(current) and env["FETCHML_PULUMI_CLI"] == "current"
    env = offline.environment({**base, "FETCHML_PULUMI_CLI": "oldest"})
    assert env["PATH"].split(":")[0] == str(oldest) and str(current) not in env["PATH"]
    # The choice is kept, so a process started below (the CLI, the engine) makes the same one.
    assert offline.environment(env)["PATH"] == env["PATH"]
    with pytest.raises(ValueError, match="FETCHML_PULUMI_CLI: expected 'current' or 'oldest', saw 'newest'"):
        offline.environment({**base, "FETCHML_PULUMI_CLI": "newest"})


def _stack_file(backend: Path, rel: str) -> None:
    f = backend / ".pulumi" / "stacks" / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("{}")


def test_backend_layouts(tmp_path: Path) -> None:
    assert state_layout.layout(tmp_path) == state_layout.Layout("empty", ())
    _stack_file(tmp_path, "prod.json")
    _stack_file(tmp_path, "staging.json.gz")
    legacy = state_layout.Layout("legacy", ("prod", "staging"))
    assert state_layout.layout(tmp_path) == legacy
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 0\n")
    assert state_layout.layout(tmp_path) == legacy
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    _stack_file(tmp_path, "fetchml/prod.json")
    assert state_layout.layout(tmp_path) == state_layout.Layout("project", ("prod", "staging"))


def test_legacy_layout_is_refused_only_by_clis_that_cannot_read_it(tmp_path: Path) -> None:
    _stack_file(tmp_path, "prod.json")
    message = state_layout.refusal(tmp_path, "prod", (3, 276, 0))
    assert message is not None and "`fetchml-infra state upgrade --stack prod`" in message and "one-way" in message
    assert state_layout.refusal(tmp_path, "prod", (3, 274, 1)) is None
    assert state_layout.refusal(None, "prod", (3, 276, 0)) is None  # not a file backend
    (tmp_path / ".pulumi" / "meta.yaml").write_text("version: 1\n")
    assert state_layout.refusal(tmp_path, "prod", (3, 276, 0)) is None


URN = "urn:pulumi:s::fetchml::"


def _pre(op: str, kind: str, name: str, protect: bool = False) -> dict[str, Any]:
    meta = {"op": op, "urn": f"{URN}{kind}::{name}", "type": kind, "old": {"protect": protect}, "new": {}}
    return {"resourcePreEvent": {"metadata": meta}}


def test_preview_plan_leaves_provider_bookkeeping_out_and_names_policy_refusals() -> None:
    events: list[dict[str, Any]] = [
        _pre("update", "pulumi:providers:pulumi-python", "default"),
        _pre("update", "pulumi:providers:docker", "default_4_2_3"),
        _pre("replace", "docker:index/container:Container", "api"),
        _pre("update", "pulumi-python:dynamic:Resource", "health-gate"),
        _pre("same", "docker:index/volume:Volume", "redis-data", protect=True),
        {
            "policyEvent": {
                "resourceUrn": f"{URN}docker:index/container:Container::api",
                "message": "A prod FetchML container must run HIPAA.\n  seen: none\n",
                "policyName": "prod-hipaa",
                "enforcementLevel": "mandatory",
            }
        },
        {"policyEvent": {"resourceUrn": "", "message": "advice", "policyName": "x", "enforcementLevel": "advisory"}},
    ]
    steps, errors = review.plan(events)
    assert [(s.op, s.name) for s in steps] == [("replace", "api"), ("update", "health-gate")]
    assert errors == ["policy prod-hipaa (api): A prod FetchML container must run HIPAA.; seen: none"]


def test_an_updated_provider_is_not_a_changed_resource() -> None:
    def done(kind: str, name: str) -> dict[str, Any]:
        return {"resOutputsEvent": {"metadata": {"op": "update", "urn": f"{URN}{kind}::{name}", "type": kind}}}

    events = [done("pulumi:providers:pulumi-python", "default"), done("pulumi-python:dynamic:Resource", "audit-entry")]
    assert outcome.classify(events, returncode=0).changed == ("audit-entry",)


def test_upgrade_refuses_while_a_lock_is_held_and_copies_never_overwrite(tmp_path: Path) -> None:
    _stack_file(tmp_path, "prod.json")
    lock = tmp_path / ".pulumi" / "locks" / "prod" / "f00.json"
    lock.parent.mkdir(parents=True)
    lock.write_text("{}")
    said: list[str] = []
    assert state_upgrade.upgrade(tmp_path, tmp_path / "no-such-pulumi", {}, said.append) == 2
    assert said[0].startswith(f"refused: an update holds a lock ({lock}); run this when none runs.")
    assert "FETCHML_PULUMI_CLI=oldest fetchml-infra recover --stack S" in said[0]
    assert not list(tmp_path.glob(".pulumi.legacy-backup-*"))

    when = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
    first, second = state_layout.backup(tmp_path, when), state_layout.backup(tmp_path, when)
    assert (first.name, second.name) == (".pulumi.legacy-backup-20261127T030000Z", f"{first.name}-2")
    assert (second / "stacks" / "prod.json").read_text() == "{}"


def _fake_pulumi(tmp_path: Path, script: str) -> Path:
    """A stand-in for `pulumi state upgrade`: ``script`` runs in the backend's .pulumi directory."""
    fake = tmp_path / "fake-pulumi"
    fake.write_text(f'#!/bin/sh\ncd "$BACKEND/.pulumi" || exit 9\n{script}\n')
    fake.chmod(0o755)
    return fake


def _checkpoint(backend: Path, stack: str, resources: list[object] | None, raw: str | None = None) -> None:
    f = backend / ".pulumi" / "stacks" / f"{stack}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(raw if raw is not None else json.dumps({"checkpoint": {"latest": {"resources": resources}}}))


def test_upgrade_reports_moved_empty_and_stuck_stacks(tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    _checkpoint(backend, "prod", [{"urn": "urn:pulumi:prod::fetchml::pulumi:pulumi:Stack::fetchml-prod"}])
    _checkpoint(backend, "spare", [])
    _checkpoint(backend, "torn", None, raw="{not json")
    fake = _fake_pulumi(
        tmp_path,
        'printf "version: 1\\n" > meta.yaml && mkdir -p stacks/fetchml && mv stacks/prod.json stacks/fetchml/\n'
        "echo 'warning: Skipping stack \"torn\": read checkpoint: invalid character' >&2\n"
        "echo 'warning: Skipping stack \"spare\": no project found' >&2",
    )
    said: list[str] = []
    assert state_upgrade.upgrade(backend, fake, {"BACKEND": str(backend)}, said.append) == 4
    assert said[1] == "upgraded 1 stack(s) to the project layout: prod"
    assert said[2].startswith("stack spare had no resources (never deployed, or destroyed)")
    assert said[3] == "stack torn was not moved (read checkpoint: invalid character); its state is untouched"
    assert said[4].startswith("the upgrade did not finish")
    assert not (backend / ".pulumi" / "stacks" / "spare.json").exists()  # kept only in the copy
    assert (backend / ".pulumi" / "stacks" / "torn.json").read_text() == "{not json"
    (copy,) = backend.glob(".pulumi.legacy-backup-*")
    assert sorted(f.name for f in (copy / "stacks").iterdir()) == ["prod.json", "spare.json", "torn.json"]


def test_an_upgrade_that_wrote_nothing_leaves_no_copy_and_a_missing_stack_is_refused(tmp_path: Path) -> None:
    backend = tmp_path / "backend"
    _checkpoint(backend, "prod", [{"urn": "u"}])
    said: list[str] = []
    fake = _fake_pulumi(tmp_path, "echo 'error: permission denied' >&2; exit 1")
    assert state_upgrade.upgrade(backend, fake, {"BACKEND": str(backend)}, said.append) == 4
    assert said[-1] == "the upgrade failed (error: permission denied); the state is as it was (nothing was written)"
    assert not list(backend.glob(".pulumi.legacy-backup-*"))

    env = {"PULUMI_BACKEND_URL": f"file://{backend}", "HOME": str(tmp_path)}
    said.clear()
    assert state_upgrade.upgrade_stack_backend("prdo", env, said.append) == 2
    assert said == [f"refused: no stack 'prdo' in {backend} (its stacks: prod); nothing changed"]
