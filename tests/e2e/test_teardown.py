"""`fetchml-infra destroy` on the real engine: the app and the stack go, the data volumes stay (a re-created
stack finds the same queue), the chain records the move to no image, and deleting data needs confirming."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import dockerhost
from tests.e2e.project import make_project

pytestmark = pytest.mark.e2e
A = "sha-1a2b3c4"


def test_destroy_keeps_the_data_unless_confirmed_and_records_the_move(tmp_path: Path) -> None:
    p = make_project(tmp_path)
    volumes = [f"{p.prefix}-minio-data", f"{p.prefix}-postgres-data", f"{p.prefix}-redis-data"]
    try:
        assert p.cli("deploy", "--image", A).returncode == 0
        p.redis().set("fetchml:e2e:kept", "yes")
        api = dockerhost.identity(p.api(A))

        refused = [p.cli("destroy", "--reason", " "), p.cli("destroy", "--reason", "x", "--delete-data")]
        assert [r.returncode for r in refused] == [2, 2]
        assert "not confirmed (pass --confirm-stack" in " ".join(refused[1].stderr.split())
        assert dockerhost.identity(p.api(A)) == api and len(p.chain()) == 1

        done = p.cli("destroy", "--reason", "end of the trial")
        assert done.returncode == 0, done.stdout + done.stderr
        kept_names = " ".join(volumes)
        assert (
            "kept the data volumes (the queue, the artifacts and the database); delete them with "
            f"`docker volume rm {kept_names}`" in done.stdout
        )
        assert dockerhost.containers_named(f"{p.prefix}-") == []  # the proxy goes too
        assert all(dockerhost.inspect("volume", v) for v in volumes)
        last = p.chain()[-1]
        assert (last.action, last.outcome, last.from_image, last.to_image) == ("destroy", "success", A, "none")
        assert last.reason == "end of the trial"
        stacks = subprocess.run(["pulumi", "stack", "ls"], cwd=p.root, env=p.env, capture_output=True, text=True)
        assert p.stack_name not in stacks.stdout and (p.root / f"Pulumi.{p.stack_name}.yaml").exists()

        # The same stack name and config come back onto the same data.
        init = ["pulumi", "stack", "init", p.stack_name, "--non-interactive"]
        subprocess.run(init, cwd=p.root, env=p.env, check=True, capture_output=True)
        assert p.cli("deploy", "--image", A).returncode == 0
        assert p.redis().get("fetchml:e2e:kept") == b"yes"
        assert [(e.from_image, e.to_image) for e in p.chain()] == [("none", A), (A, "none"), ("none", A)]

        gone = p.cli("destroy", "--reason", "for good", "--delete-data", "--confirm-stack", p.stack_name)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert not any(dockerhost.inspect("volume", v) for v in volumes)
        assert p.chain()[-1].to_image == "none" and p.chain()[-1].reason == "for good"
    finally:
        dockerhost.remove("container", *dockerhost.containers_named(f"{p.prefix}-"))
        dockerhost.remove("volume", *volumes)
        dockerhost.remove("network", f"{p.prefix}-net")
