"""The fetchml-safety policy pack (policy/) run by the real engine, read from its structured events.

The real FetchML project passes the pack on preview and on `up`; each policy refuses one small violating program
(or the real program with a violating config) at preview, before anything is created; an `up` is refused too, and
the refused volume never reaches Docker. What the engine said is read from its event log (policyEvent,
policyAnalyzeSummaryEvent), never from CLI text, which changes between Pulumi versions.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from fetchml_infra import engine, toolchain
from fetchml_infra.offline import REPO_ROOT
from tests import dockerhost
from tests.conftest import images
from tests.e2e.project import Project, throwaway

pytestmark = pytest.mark.e2e

A = images()["STANDIN_TAG_A"]
PROJECT = "fetchml-policy-test"
POLICIES = ["app-images-pinned", "loopback-ports", "persistent-volumes-protected", "prod-hipaa"]

PROGRAM_HEADER = """\
import pulumi
import pulumi_docker as docker

prefix = pulumi.Config().require("prefix")
"""


@dataclass
class Scratch:
    """A small throw-away program on its own file backend; docker object names start with ``prefix``."""

    stack: auto.Stack
    prefix: str
    root: Path
    env: dict[str, str]


def under_pack(command: str, stack: str, root: Path, env: dict[str, str], config: Path | None = None) -> engine.Run:
    """`pulumi preview|up` of ``stack`` under the fetchml-safety pack, given the way this CLI starts it."""
    args = [command, "--policy-pack", toolchain.policy_pack(toolchain.cli_version())]
    args += ["--policy-pack-config", str(config)] if config else []
    args += ["--yes", "--skip-preview"] if command == "up" else []
    return engine.run(args, stack=stack, cwd=root, env=env, on_output=lambda _line: None)


def policy_events(run: engine.Run) -> list[dict[str, Any]]:
    return [e["policyEvent"] for e in run.events if "policyEvent" in e]


def violations(run: engine.Run) -> list[tuple[str, str, str, str]]:
    """(enforcement level, policy, resource type, resource name) of every violation the engine reported."""
    found = []
    for p in policy_events(run):
        assert p["policyPackName"] == "fetchml-safety", p
        _, _, kind, name = p["resourceUrn"].rsplit("::", 3)
        found.append((p["enforcementLevel"], p["policyName"], kind.rsplit("$", 1)[-1], name))
    return sorted(found)


def messages(run: engine.Run) -> str:
    """Every violation's message, whitespace collapsed, so text can be matched across indentation."""
    return flat("\n".join(p["message"] for p in policy_events(run)))


def refused(command: str, stack: str, root: Path, env: dict[str, str], config: Path | None = None) -> engine.Run:
    """Run under the pack; it must fail because of a policy, not because the program failed."""
    run = under_pack(command, stack, root, env, config)
    assert run.returncode != 0, run.stderr
    assert policy_events(run), run.stderr
    diagnostics = [e["diagnosticEvent"] for e in run.events if "diagnosticEvent" in e]
    errors = [d["message"] for d in diagnostics if d["severity"] == "error"]
    assert not [m for m in errors if "Program failed" in m or "Traceback" in m], errors
    return run


def ran_and_passed(run: engine.Run) -> None:
    """The pack ran, every one of its policies passed on every resource, and it found nothing."""
    assert run.ok, run.stderr
    assert policy_events(run) == []
    summaries = [e["policyAnalyzeSummaryEvent"] for e in run.events if "policyAnalyzeSummaryEvent" in e]
    assert summaries, "the engine reported no policy summary: the pack did not run"
    for summary in summaries:
        assert summary["policyPackName"] == "fetchml-safety"
        assert (sorted(summary.get("passed") or []), summary.get("failed") or []) == (POLICIES, []), summary


def mandatory(policy: str, kind: str, *names: str) -> list[tuple[str, str, str, str]]:
    return [("mandatory", policy, f"docker:index/{kind}", name) for name in names]


def flat(output: str) -> str:
    """The CLI output with runs of whitespace collapsed, so message text can be matched across indentation."""
    return " ".join(output.split())


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Callable[[str], Scratch]]:
    made: list[Scratch] = []

    def make(body: str) -> Scratch:
        prefix = f"policy-{uuid.uuid4().hex[:8]}"
        root = tmp_path / prefix
        (root / "backend").mkdir(parents=True)
        (root / "Pulumi.yaml").write_text(
            f"name: {PROJECT}\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO_ROOT / '.venv'}\n"
        )
        (root / "__main__.py").write_text(PROGRAM_HEADER + textwrap.dedent(body))
        env = {"PULUMI_BACKEND_URL": f"file://{root / 'backend'}"}
        stack = auto.create_stack(prefix, work_dir=str(root), opts=auto.LocalWorkspaceOptions(env_vars=env))
        stack.set_config(f"{PROJECT}:prefix", auto.ConfigValue(prefix))
        made.append(Scratch(stack, prefix, root, {**os.environ, **env}))
        return made[-1]

    yield make
    for s in made:
        try:
            if (s.stack.export_stack().deployment or {}).get("resources"):
                s.stack.destroy(color="never")
            s.stack.workspace.remove_stack(s.prefix)
        finally:
            names = ("redis", "api", "worker-1", "worker-2")
            dockerhost.remove("container", *(f"{s.prefix}-{n}" for n in names))
            dockerhost.remove("volume", f"{s.prefix}-data")


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="prod", complianceMode="hipaa", autoRollback="false") as p:
        yield p


def test_real_project_passes_the_pack_on_preview_and_up(prod: Project) -> None:
    for command in ("preview", "up"):
        run = under_pack(command, prod.stack_name, prod.root, prod.env)
        ran_and_passed(run)
        warnings = [e["diagnosticEvent"]["message"] for e in run.events if "diagnosticEvent" in e]
        assert not [w for w in warnings if "can't run policy" in w]  # no policy skipped for want of a value
    assert prod.outputs()["reported_compliance_mode"] == "hipaa"


def test_unprotected_volume_is_refused_at_preview_and_up_and_never_created(scratch) -> None:
    s = scratch('docker.Volume("data", name=f"{prefix}-data")\n')

    run = refused("preview", s.prefix, s.root, s.env)
    assert violations(run) == mandatory("persistent-volumes-protected", "volume:Volume", "data")
    text = messages(run)
    assert "Docker volumes hold FetchML's queue and artifacts and must be protected." in text
    assert (
        f"volume 'data' on stack '{s.prefix}' "
        f"seen: docker volume '{s.prefix}-data' is registered without protect (protect=False) "
        "expected: every persistent volume protected (protect=True, and retain_on_delete=True) so that no update, "
        "rollback or destroy can delete the Redis queue or the MinIO artifacts "
        "fix: register 'data' with opts=pulumi.ResourceOptions(protect=True, retain_on_delete=True) and run again"
    ) in text

    up = refused("up", s.prefix, s.root, s.env)
    assert violations(up) == mandatory("persistent-volumes-protected", "volume:Volume", "data")
    assert dockerhost.inspect("volume", f"{s.prefix}-data") is None
    state = (s.stack.export_stack().deployment or {}).get("resources") or []
    assert not [r for r in state if r["type"] == "docker:index/volume:Volume"]


def test_unpinned_images_are_refused(scratch) -> None:
    s = scratch(
        """\
        def image(name, ref):
            return docker.RemoteImage(name, name=ref, keep_locally=True)

        image("api-latest", "ghcr.io/jfraeysd/fetchml-api:latest")
        image("worker-untagged", "ghcr.io/jfraeysd/fetchml-worker")
        image("api-semver", "ghcr.io/jfraeysd/fetchml-api:v1.2.3")
        image("redis-latest", "fetchml-infra/redis:latest")
        image("api-pinned", "ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4")
        image("redis-pinned", "fetchml-infra/redis:7.0")
        image("billing", "registry.local:5000/acme/billing-api:v2")
        """
    )
    run = refused("preview", s.prefix, s.root, s.env)
    unpinned = ["api-latest", "api-semver", "redis-latest", "worker-untagged"]
    assert violations(run) == mandatory("app-images-pinned", "remoteImage:RemoteImage", *unpinned)
    text = messages(run)
    assert (
        f"remote image 'api-latest' on stack '{s.prefix}' "
        "seen: app image 'ghcr.io/jfraeysd/fetchml-api:latest' uses the moving tag 'latest' "
        "expected: an app image tagged sha-<7 to 40 lowercase hex digits of the commit>, e.g. "
        "ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4, so that a rollback names exactly the image that ran before "
        f"fix: deploy a commit's image: `fetchml-infra deploy --stack {s.prefix} --image sha-<commit>` "
        f"(or `pulumi config set image sha-<commit> --stack {s.prefix}`)"
    ) in text
    assert (
        "seen: app image 'ghcr.io/jfraeysd/fetchml-worker' has no tag, so Docker resolves it to the moving tag "
        "'latest'"
    ) in text
    assert "seen: app image 'ghcr.io/jfraeysd/fetchml-api:v1.2.3' uses tag 'v1.2.3'" in text
    assert (
        "seen: data-store image 'fetchml-infra/redis:latest' uses the moving tag 'latest' "
        "expected: an image pinned to a tag other than 'latest' or to a digest, e.g. fetchml-infra/redis:7.0 or "
        "fetchml-infra/redis@sha256:<64 hex>, so that the image under a persistent volume never moves by itself "
        "fix: pin it with the key that sets it: "
        f"`pulumi config set redisImage|minioImage fetchml-infra/redis:<version> --stack {s.prefix}` and run again"
    ) in text

    # The app repositories come from the policy config: naming billing-api there makes its v2 tag unacceptable.
    config = s.root / "app-repositories.json"
    config.write_text(json.dumps({"app-images-pinned": {"appRepositories": ["acme/billing-api", "fetchml-api"]}}))
    run = refused("preview", s.prefix, s.root, s.env, config)
    unpinned = ["api-latest", "api-semver", "billing", "redis-latest", "worker-untagged"]
    assert violations(run) == mandatory("app-images-pinned", "remoteImage:RemoteImage", *unpinned)
    assert "seen: app image 'registry.local:5000/acme/billing-api:v2' uses tag 'v2'" in messages(run)


def test_prod_container_without_hipaa_is_refused(scratch) -> None:
    # The real program refuses this config itself (complianceMode, so that a plain `pulumi up` keeps the rule
    # too); the pack holds the rule for any program, so a small one shows it.
    s = scratch(
        """\
        redis = docker.RemoteImage("redis-image", name="fetchml-infra/redis:7.0", keep_locally=True)
        for name, mode in (("api", "none"), ("worker-1", None), ("worker-2", "hipaa")):
            envs = ["FETCHML_ENVIRONMENT=prod"] + ([f"FETCHML_COMPLIANCE_MODE={mode}"] if mode else [])
            docker.Container(name, name=f"{prefix}-{name}", image=redis.image_id, envs=envs)
        """
    )
    run = refused("preview", s.prefix, s.root, s.env)
    assert violations(run) == mandatory("prod-hipaa", "container:Container", "api", "worker-1")
    assert (
        f"container 'api' on stack '{s.prefix}' "
        "seen: FETCHML_ENVIRONMENT=prod with FETCHML_COMPLIANCE_MODE=none "
        "expected: every prod container runs with FETCHML_COMPLIANCE_MODE=hipaa "
        f"fix: `pulumi config set complianceMode hipaa --stack {s.prefix}` (the program sets "
        "FETCHML_COMPLIANCE_MODE from it) and run again"
    ) in messages(run)
    assert "seen: FETCHML_ENVIRONMENT=prod with no FETCHML_COMPLIANCE_MODE" in messages(run)
    for name in ("api", "worker-1", "worker-2"):
        assert dockerhost.inspect("container", f"{s.prefix}-{name}") is None


def test_public_port_is_refused_unless_allowed_by_policy_config(scratch) -> None:
    s = scratch(
        """\
        redis = docker.RemoteImage("redis-image", name="fetchml-infra/redis:7.0", keep_locally=True)
        docker.Container(
            "redis",
            name=f"{prefix}-redis",
            image=redis.image_id,
            ports=[
                docker.ContainerPortArgs(internal=6379, external=16379, ip="0.0.0.0"),
                docker.ContainerPortArgs(internal=6380, external=16380),
                docker.ContainerPortArgs(internal=6381, external=16381, ip="127.0.0.1"),
            ],
        )
        """
    )
    run = refused("preview", s.prefix, s.root, s.env)
    assert violations(run) == mandatory("loopback-ports", "container:Container", "redis", "redis")
    text = messages(run)
    assert (
        f"container 'redis' on stack '{s.prefix}' "
        "seen: container port 6379 published on host port 16379 with ip '0.0.0.0' "
        "expected: every published port bound to a loopback address (127.0.0.1 or ::1), so FetchML, Redis and MinIO "
        "are reachable only from this host "
        f"fix: `pulumi config set bindAddress 127.0.0.1 --stack {s.prefix}` (or set ip='127.0.0.1' on the port); "
        "if public exposure is intended and reviewed, run with --policy-pack-config FILE, FILE holding "
        '{"loopback-ports": {"allowPublicBind": true}}'
    ) in text
    # No ip means every interface (the provider fills in 0.0.0.0); the loopback port is fine.
    assert "seen: container port 6380 published on host port 16380" in text
    assert "port 6381" not in text

    config = s.root / "allow-public-bind.json"
    config.write_text(json.dumps({"loopback-ports": {"allowPublicBind": True}}))
    ran_and_passed(under_pack("preview", s.prefix, s.root, s.env, config))
    assert dockerhost.inspect("container", f"{s.prefix}-redis") is None
