"""Foundation smoke test: the real `pulumi` engine, the Python language host, the docker provider plugin and
a Python dynamic provider from the installed fetchml_infra package, against the real Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from fetchml_infra.offline import REPO_ROOT
from tests import dockerhost
from tests.providers.scripted_server import free_port

pytestmark = pytest.mark.e2e
PROGRAM = Path(__file__).parent / "smoke_program" / "__main__.py"


@pytest.fixture
def smoke(tmp_path: Path) -> Iterator[tuple[auto.Stack, str, dict[str, str]]]:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(PROGRAM, project / "__main__.py")
    (project / "Pulumi.yaml").write_text(
        "name: fetchml-smoke\nruntime:\n  name: python\n  options:\n" f"    virtualenv: {REPO_ROOT / '.venv'}\n"
    )
    env = {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}"}
    (tmp_path / "backend").mkdir()
    prefix = f"smoke-{uuid.uuid4().hex[:8]}"
    stack = auto.create_stack(prefix, work_dir=str(project), opts=auto.LocalWorkspaceOptions(env_vars=env))
    stack.set_all_config(
        {
            "fetchml-smoke:prefix": auto.ConfigValue(prefix),
            "fetchml-smoke:image": auto.ConfigValue("sha-1a2b3c4"),
            "fetchml-smoke:port": auto.ConfigValue(str(free_port())),
            "fetchml-smoke:auditLog": auto.ConfigValue(str(tmp_path / "audit.log")),
        }
    )
    cli_env = {**os.environ, **env}
    try:
        yield stack, prefix, cli_env
    finally:
        subprocess.run(
            ["pulumi", "state", "unprotect", "--all", "--yes", "--stack", prefix],
            cwd=project,
            env=cli_env,
            capture_output=True,
        )
        stack.destroy()
        stack.workspace.remove_stack(prefix)
        dockerhost.remove("container", f"{prefix}-api")
        dockerhost.remove("volume", f"{prefix}-data")
        dockerhost.remove("network", f"{prefix}-net")


def test_real_engine_creates_updates_and_refuses_to_destroy_protected(smoke) -> None:
    stack, prefix, cli_env = smoke
    version = subprocess.run(["pulumi", "version"], capture_output=True, text=True, env=cli_env).stdout.strip()
    assert version.startswith("v3.")

    up = stack.up(color="never")
    assert up.summary.result == "succeeded"
    assert up.outputs["version"].value == "sha-1a2b3c4"  # the dynamic HealthGate reached the container
    assert dockerhost.inspect("network", f"{prefix}-net") is not None
    assert dockerhost.inspect("volume", f"{prefix}-data") is not None
    api = dockerhost.container(f"{prefix}-api")
    assert api["State"]["Running"] is True
    [(host_ip, _port)] = dockerhost.published(f"{prefix}-api", 9101)
    assert host_ip == "127.0.0.1"

    # The engine really used the docker plugin and the Python dynamic provider host.
    deployment = stack.export_stack().deployment
    types = {r["type"] for r in deployment["resources"]}
    assert "pulumi:providers:docker" in types
    assert "pulumi-python:dynamic/fetchml:HealthGate" in types
    assert "docker:index/container:Container" in types
    provider = next(r for r in deployment["resources"] if r["type"] == "pulumi:providers:docker")
    assert provider["inputs"].get("version") == "4.2.3"

    # An input change replaces the container (new ID), keeps the volume, and re-runs the gate.
    stack.set_config("fetchml-smoke:complianceMode", auto.ConfigValue("hipaa"))
    second = stack.up(color="never")
    assert second.summary.resource_changes.get("replace") == 1
    assert dockerhost.container(f"{prefix}-api")["Id"] != api["Id"]
    assert second.outputs["reported_compliance_mode"].value == "hipaa"
    assert dockerhost.inspect("volume", f"{prefix}-data") is not None

    # Destroy must refuse the protected volume, and the volume must survive the attempt.
    with pytest.raises(auto.errors.CommandError) as refused:
        stack.destroy(color="never")
    assert "protect" in str(refused.value)
    assert dockerhost.inspect("volume", f"{prefix}-data") is not None
    state = json.dumps(stack.export_stack().deployment)
    assert f"{prefix}-data" in state
