"""A throw-away copy of the real FetchML project on the real engine: its own backend, stack, ports and names.

The program is the repository's own __main__.py; only Pulumi.yaml differs (it names the repository's
virtualenv by absolute path), so stack config files land in the temp dir, never in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from minio import Minio
from pulumi import automation as auto

from fetchml_infra import audit, offline, passphrase
from fetchml_infra.offline import REPO_ROOT
from tests import dockerhost
from tests.providers.scripted_server import free_port

T = TypeVar("T")
MINIO_USER = "fetchml-e2e-admin"
MINIO_PASSWORD = "e2e-password-not-secret-here"
MINIO_APP_SECRET = "e2e-app-secret-key-not-secret-here"
POSTGRES_PASSWORD = "e2e-postgres-password-not-secret-here"


@dataclass
class Project:
    root: Path
    stack_name: str
    env: dict[str, str]
    ports: dict[str, int]
    stack: auto.Stack = field(init=False)

    @property
    def prefix(self) -> str:
        return f"fetchml-{self.stack_name}"  # the program's default namePrefix

    def api(self, image: str) -> str:
        """The container name of ``image``'s API (one per image, behind the stack's proxy)."""
        return f"{self.prefix}-api-{image}"

    def worker(self, image: str, n: int = 1) -> str:
        return f"{self.prefix}-worker-{image}-{n}"

    @property
    def audit_log(self) -> Path:
        return self.root / ".state" / "audit" / f"{self.stack_name}.audit.log"

    def cli(self, *args: str, on_stack: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the installed `fetchml-infra` as an operator would (on this stack, unless told otherwise)."""
        return subprocess.run(
            ["fetchml-infra", *args, *(["--stack", self.stack_name] if on_stack else [])],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the plain `pulumi` CLI: the 3 a.m. path."""
        return subprocess.run(
            ["pulumi", *args, "--stack", self.stack_name, "--non-interactive"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def pulumi_plain(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`pulumi ARGS --non-interactive` in the project, as typed (no stack added), ``stdin`` on its input."""
        return subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=self.root,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def incident(self, why: str = "the release failed its gate") -> str:
        """A filled-in incident report (a HIPAA rollback needs one: ``rollback --incident PATH``); its path."""
        path = self.root.parent / "incident.txt"
        path.write_text(f"why-rolled-back: {why}\nimpact-on-phi-handling: none\nexposure-risk: none\n")
        return str(path)

    def config(self, key: str) -> str:
        return str(self.stack.get_config(f"fetchml:{key}").value)

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self.stack.outputs().items()}

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.ports["redis"], socket_timeout=5)

    def run_job(self, job: str, timeout: float = 20.0) -> bool:
        """Queue ``job`` and wait until a worker records it done; whether it did."""
        r = self.redis()
        r.lpush("fetchml:queue:pending", job)
        deadline = time.monotonic() + timeout
        while not r.sismember("fetchml:jobs:done", job):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def minio(self) -> Minio:
        return Minio(f"127.0.0.1:{self.ports['minio']}", MINIO_USER, MINIO_PASSWORD, secure=False)

    def data_identities(self) -> dict[str, tuple[str, str]]:
        """Container ID and start time of Redis and MinIO: equal only if neither was replaced nor restarted."""
        return {name: dockerhost.identity(f"{self.prefix}-{name}") for name in ("redis", "minio", "postgres")}

    def volumes(self) -> dict[str, int]:
        """The inode of each data volume's directory: a volume made again gets a new one. (Not CreatedAt: Docker
        reports the directory's mtime, which moves when MinIO makes a bucket.)"""
        return {
            name: os.stat(dockerhost.inspect("volume", f"{self.prefix}-{name}-data")["Mountpoint"]).st_ino  # type: ignore[index]
            for name in ("redis", "minio", "postgres")
        }

    def psql(self, sql: str) -> str:
        """One query in the stack's database, as the CLI runs it (`docker exec`, local trust)."""
        done = subprocess.run(
            [
                "docker",
                "exec",
                f"{self.prefix}-postgres",
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "fetchml",
                "-tAc",
                sql,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def schema_version(self) -> int:
        return int(self.psql("select coalesce(max(version), 0) from schema_migrations") or 0)

    def chain(self) -> list[audit.Entry]:
        verdict = audit.verify(str(self.audit_log))
        assert verdict.ok, f"audit chain broken: {verdict}"
        return audit.entries(str(self.audit_log))

    def teardown(self) -> None:
        # A fault test may leave a killed engine's lock behind; clean-up must not depend on recovery working.
        shutil.rmtree(Path(self.env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi" / "locks", True)
        self.pulumi("state", "unprotect", "--all", "--yes")
        try:
            self.stack.destroy(color="never")
        finally:
            self.stack.workspace.remove_stack(self.stack_name)
            dockerhost.remove("container", *dockerhost.containers_named(f"{self.prefix}-"))
            dockerhost.remove("volume", *(f"{self.prefix}-{v}-data" for v in ("redis", "minio", "postgres")))
            dockerhost.remove("network", f"{self.prefix}-net")


def bare_project(tmp_path: Path, cli: str = "current", *, extra_env: Mapping[str, str] | None = None) -> Project:
    """The project directory, backend, environment and ports of a test stack, but no stack yet (``stack`` is
    set by make_project, or by a test that creates the stack itself). A ``PULUMI_CONFIG_PASSPHRASE_FILE`` in
    ``extra_env`` replaces the development passphrase."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO_ROOT / "__main__.py", root / "__main__.py")
    (root / "Pulumi.yaml").write_text(
        (REPO_ROOT / "Pulumi.yaml").read_text().replace("virtualenv: .venv", f"virtualenv: {REPO_ROOT / '.venv'}")
    )
    backend = tmp_path / "backend"
    backend.mkdir()
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    base = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "FETCHML_PROJECT_DIR": str(root),
        "FETCHML_ACTOR": "e2e-operator",
        **(extra_env or {}),
    }
    if "PULUMI_CONFIG_PASSPHRASE_FILE" in (extra_env or {}):
        base.pop("PULUMI_CONFIG_PASSPHRASE", None)  # Pulumi would take it first
    env = offline.environment(base, cli=cli)
    ports = {"api": free_port(), "redis": free_port(), "minio": free_port(), "admin": free_port()}
    return Project(root, name, env, ports)


def workspace_options(project: Project, extra_env: Mapping[str, str] | None = None) -> auto.LocalWorkspaceOptions:
    """The Automation API layers these over this process's environment, which holds the development
    passphrase (scripts/test sources scripts/env.sh); a passphrase file's text must win over it."""
    keys = ("PATH", "PULUMI_BACKEND_URL", "FETCHML_ACTOR", "FETCHML_PULUMI_CLI", *(extra_env or {}))
    env_vars = {k: project.env[k] for k in keys}
    if "PULUMI_CONFIG_PASSPHRASE_FILE" in project.env:
        env_vars["PULUMI_CONFIG_PASSPHRASE"] = Path(project.env["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text().strip()
    return auto.LocalWorkspaceOptions(env_vars=env_vars)


def make_project(
    tmp_path: Path, cli: str = "current", *, extra_env: Mapping[str, str] | None = None, **config: str
) -> Project:
    """``cli``: which built Pulumi runs it ("oldest": the oldest supported); ``extra_env`` is added to
    the environment of every command (e.g. a backend layout switch, or a passphrase file)."""
    project = bare_project(tmp_path, cli, extra_env=extra_env)
    name, root, ports = project.stack_name, project.root, project.ports
    project.stack = auto.create_stack(name, work_dir=str(root), opts=workspace_options(project, extra_env))
    values = {
        "environment": "staging",
        "workerReplicas": "1",
        "healthTimeoutSeconds": "12",
        "apiHostPort": str(ports["api"]),
        "redisHostPort": str(ports["redis"]),
        "minioHostPort": str(ports["minio"]),
        "proxyAdminPort": str(ports["admin"]),
        **config,
    }
    settings = {f"fetchml:{k}": auto.ConfigValue(v) for k, v in values.items()}
    settings["fetchml:minioRootUser"] = auto.ConfigValue(MINIO_USER, secret=True)
    settings["fetchml:minioRootPassword"] = auto.ConfigValue(MINIO_PASSWORD, secret=True)
    settings["fetchml:minioAppSecretKey"] = auto.ConfigValue(MINIO_APP_SECRET, secret=True)
    settings["fetchml:postgresPassword"] = auto.ConfigValue(POSTGRES_PASSWORD, secret=True)
    project.stack.set_all_config(settings)
    return project


@contextmanager
def throwaway(tmp_path: Path, cli: str = "current", **config: str) -> Iterator[Project]:
    """A project stack for one test, torn down afterwards (unprotect, destroy, remove, volumes gone). A prod or
    HIPAA stack gets a private passphrase in a file, as a team keeps it (the development one is refused)."""
    extra_env = None
    if passphrase.needs_private(config.get("environment", "staging"), config.get("complianceMode", "none")):
        phrase = tmp_path / "passphrase"
        phrase.write_text(f"e2e-private-{uuid.uuid4().hex}\n")
        phrase.chmod(0o600)
        extra_env = {"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase)}
    project = make_project(tmp_path, cli, extra_env=extra_env, **config)
    try:
        yield project
    finally:
        project.teardown()
