"""No secret value in anything a deploy, a failed deploy and a rollback leave behind: the state export,
the outputs, the stack history, the audit log, every CLI output, the preview and its PR comment, `docker
inspect` of every container of the stack, and what the Docker engine logged meanwhile."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e.project import MINIO_APP_SECRET, MINIO_PASSWORD, MINIO_USER, POSTGRES_PASSWORD, throwaway

pytestmark = pytest.mark.e2e
A, B, BROKEN = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee"
DOCKERD_LOG = Path("/var/log/fetchml-dockerd.log")
SECRETS = {
    "minioRootUser": MINIO_USER,
    "minioRootPassword": MINIO_PASSWORD,
    "minioAppSecretKey": MINIO_APP_SECRET,
    "postgresPassword": POSTGRES_PASSWORD,
}


def test_no_secret_value_reaches_any_artifact_of_a_deploy_a_failure_and_a_rollback(tmp_path: Path) -> None:
    log_start = DOCKERD_LOG.stat().st_size if DOCKERD_LOG.exists() else 0
    seen: dict[str, str] = {}
    with throwaway(tmp_path, image=A) as p:

        def cli(name: str, *args: str, code: int = 0) -> None:
            done = p.cli(*args)
            assert done.returncode == code, f"{name}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr}"
            seen[f"cli {name}"] = done.stdout + done.stderr

        cli("deploy", "deploy", "--image", A, "--reason", "first")
        p.stack.set_config("fetchml:image", auto.ConfigValue(B))  # what a PR would propose
        cli("preview", "preview")
        cli("preview --markdown", "preview", "--markdown")
        cli("deploy B", "deploy", "--image", B, "--reason", "release")
        cli("failed deploy", "deploy", "--image", BROKEN, "--reason", "broken release", code=3)  # rolls back
        cli("rollback", "rollback", "--to", A, "--reason", "back to A")
        cli("status", "status")
        cli("history", "history", "--json")
        for what, args in {
            "stack export": ("stack", "export"),
            "stack outputs": ("stack", "output", "--json"),
            "stack history": ("stack", "history", "--json"),
            "config (no --show-secrets)": ("config", "--json"),
        }.items():
            done = p.pulumi(*args)
            assert done.returncode == 0, done.stderr
            seen[what] = done.stdout
        seen["audit log"] = p.audit_log.read_text()
        containers = [p.api(A), p.worker(A), *(f"{p.prefix}-{n}" for n in ("proxy", "redis", "minio", "postgres"))]
        inspected = subprocess.run(["docker", "inspect", *containers], capture_output=True, text=True, check=True)
        seen["docker inspect"] = inspected.stdout
    if DOCKERD_LOG.exists():
        with DOCKERD_LOG.open("rb") as f:
            f.seek(log_start)
            seen["dockerd log"] = f.read().decode(errors="replace")
    assert '"ciphertext"' in seen["stack export"]  # the secrets are there, encrypted
    assert '"secret": true' in seen["config (no --show-secrets)"]
    leaks = [(where, key) for where, text in seen.items() for key, value in SECRETS.items() if value in text]
    assert leaks == [], leaks
