"""Secrets on the real engine: prod refuses the development passphrase (CLI and plain `pulumi up`), `init`
sets secrets from a file, the app holds only its own MinIO key, and rotation and a change of passphrase work
end to end."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from minio import Minio
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.minioadmin import MinioAdmin
from pulumi import automation as auto

from fetchml_infra import audit
from fetchml_infra.offline import REPO_ROOT
from tests import dockerhost
from tests.e2e.project import Project, bare_project, make_project, workspace_options

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"
REFUSED = "must not keep its secrets under the development passphrase"
ROOT_USER, ROOT_PASSWORD, NEW_ROOT_PASSWORD = "prod-root-e2e", "prod-root-password-e2e", "rotated-root-password-e2e"


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, f"exit {done.returncode}, expected {code}\n{done.stdout[-3000:]}\n{done.stderr}"
    return done.stdout + done.stderr


def private_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def app_containers(p: Project) -> list[str]:
    return dockerhost.containers_named(f"{p.prefix}-api-") + dockerhost.containers_named(f"{p.prefix}-worker-")


def test_a_prod_stack_under_the_development_passphrase_is_refused_by_the_cli_and_by_plain_pulumi_up(
    tmp_path: Path,
) -> None:
    p = make_project(tmp_path, image=A, environment="prod", complianceMode="hipaa", autoRollback="false")
    try:
        for args in (("deploy", "--image", A, "--reason", "first"), ("preview",)):
            out = ok(p.cli(*args), code=2)
            assert REFUSED in out and "PULUMI_CONFIG_PASSPHRASE_FILE" in out, out
        up = p.pulumi("up", "--yes", "--skip-preview")
        assert up.returncode != 0 and REFUSED in up.stdout + up.stderr
        # Nothing was changed: no container, no entry, no resource but the stack itself.
        assert all(dockerhost.inspect("container", c) is None for c in (*app_containers(p), f"{p.prefix}-minio"))
        assert not p.audit_log.exists()
        resources = (p.stack.export_stack().deployment or {}).get("resources", [])
        assert {r["type"] for r in resources} <= {"pulumi:pulumi:Stack"}
    finally:
        p.teardown()


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[tuple[Project, Path]]:
    """A prod project from the repository's own Pulumi.prod.yaml (which holds no secret), not yet a stack,
    with a private passphrase in a file; torn down afterwards."""
    phrase = private_file(tmp_path, "passphrase", "a-private-passphrase-for-e2e\n")
    p = bare_project(tmp_path, extra_env={"PULUMI_CONFIG_PASSPHRASE_FILE": str(phrase)})
    config = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
    assert set(config) == {"config"}, "Pulumi.prod.yaml must carry no encryption salt and no secret"
    config["config"].update(
        {
            "fetchml:apiHostPort": str(p.ports["api"]),
            "fetchml:redisHostPort": str(p.ports["redis"]),
            "fetchml:minioHostPort": str(p.ports["minio"]),
            "fetchml:proxyAdminPort": str(p.ports["admin"]),
            "fetchml:workerReplicas": "1",
            "fetchml:healthTimeoutSeconds": "15",
        }
    )
    (p.root / f"Pulumi.{p.stack_name}.yaml").write_text(yaml.safe_dump(config))
    try:
        yield p, phrase
    finally:
        if "stack" in p.__dict__:
            p.teardown()


def test_init_then_deploy_prod_with_least_privilege_rotation_and_a_new_passphrase(
    prod: tuple[Project, Path], tmp_path: Path
) -> None:
    p, phrase = prod
    name, config_file = p.stack_name, p.root / f"Pulumi.{p.stack_name}.yaml"
    secrets = private_file(tmp_path, "prod.secrets", f"minioRootUser={ROOT_USER}\nminioRootPassword={ROOT_PASSWORD}\n")
    before = config_file.read_bytes()

    # Refused before anything is created: the development passphrase, then a file others can read.
    dev = {k: v for k, v in p.env.items() if k != "PULUMI_CONFIG_PASSPHRASE_FILE"}
    dev["PULUMI_CONFIG_PASSPHRASE"] = "fetchml-dev-only-passphrase"
    init = ["fetchml-infra", "init", "--stack", name, "--secrets-file", str(secrets)]
    out = ok(subprocess.run(init, cwd=p.root, env=dev, capture_output=True, text=True), code=2)
    assert REFUSED in out and "nothing was created or set" in out
    secrets.chmod(0o644)
    out = ok(p.cli("init", "--secrets-file", str(secrets)), code=2)
    assert "chmod 600" in out
    assert config_file.read_bytes() == before and name not in ok(p.pulumi_plain("stack", "ls"))
    secrets.chmod(0o600)

    out = ok(p.cli("init", "--secrets-file", str(secrets)))
    assert f"created stack '{name}'" in out and "set minioAppSecretKey (generated)" in out
    assert ROOT_PASSWORD not in out and ROOT_USER not in out
    stored = yaml.safe_load(config_file.read_text())
    assert "encryptionsalt" in stored
    for key in ("minioRootUser", "minioRootPassword", "minioAppSecretKey"):
        assert set(stored["config"][f"fetchml:{key}"]) == {"secure"}, key
    assert ROOT_PASSWORD.encode() not in config_file.read_bytes()
    out = ok(p.cli("init", "--secrets-file", str(secrets)), code=2)  # again: nothing is overwritten silently
    assert "already set on the stack; to replace them, pass --rotate" in out
    p.stack = auto.select_stack(name, work_dir=str(p.root), opts=workspace_options(p))
    app_key = p.config("minioAppSecretKey")

    ok(p.cli("deploy", "--image", A, "--reason", "first prod deploy"))
    minio = f"127.0.0.1:{p.ports['minio']}"
    root = Minio(minio, ROOT_USER, ROOT_PASSWORD, secure=False)
    app = Minio(minio, "fetchml-app", app_key, secure=False)
    check_least_privilege(p, root, app, app_key)

    # A deploy never touches the credentials or MinIO.
    minio_before = dockerhost.identity(f"{p.prefix}-minio")
    ok(p.cli("deploy", "--image", B, "--reason", "release"))
    assert dockerhost.identity(f"{p.prefix}-minio") == minio_before
    assert app.get_object("artifacts", "e2e/by-app.txt").read() == b"written with the app key"

    # Rotation: new root password and a new app key, applied by `pulumi up`; the data stays, the old keys die.
    length = len(audit.entries(str(p.audit_log)))
    rotated = private_file(tmp_path, "rotated.secrets", f"minioRootPassword={NEW_ROOT_PASSWORD}\n")
    out = ok(p.cli("init", "--secrets-file", str(rotated), "--rotate"))
    assert "set minioRootPassword" in out and "set minioAppSecretKey (generated)" in out
    ok(p.pulumi("up", "--yes", "--skip-preview"))
    new_app_key = p.config("minioAppSecretKey")
    assert new_app_key != app_key
    with pytest.raises(S3Error):
        root.list_buckets()
    with pytest.raises(S3Error):
        app.get_object("artifacts", "e2e/by-app.txt")
    root = Minio(minio, ROOT_USER, NEW_ROOT_PASSWORD, secure=False)
    app = Minio(minio, "fetchml-app", new_app_key, secure=False)
    assert app.get_object("artifacts", "e2e/by-app.txt").read() == b"written with the app key"
    assert {b.name for b in root.list_buckets()} >= {"artifacts", "snapshots"}
    assert len(audit.entries(str(p.audit_log))) == length  # no image moved, so no entry claims one

    # A new passphrase: Pulumi re-encrypts config and state; the old passphrase no longer opens them.
    new_phrase = private_file(tmp_path, "passphrase-2", "the-next-private-passphrase\n")
    change = p.pulumi_plain(
        "stack", "change-secrets-provider", "passphrase", "--stack", name, stdin=new_phrase.read_text()
    )
    ok(change)
    assert p.pulumi_plain("config", "get", "minioRootPassword", "--stack", name).returncode != 0
    phrase.write_text(new_phrase.read_text())  # the secret store now holds the new one
    p.stack = auto.select_stack(name, work_dir=str(p.root), opts=workspace_options(p))
    assert ok(p.pulumi_plain("config", "get", "minioRootPassword", "--stack", name)).strip() == NEW_ROOT_PASSWORD
    out = ok(p.cli("rollback", "--reason", "after the passphrase change", "--incident", p.incident()))
    assert "[x] health" in out
    assert audit.entries(str(p.audit_log))[-1].to_image == A


def check_least_privilege(p: Project, root: Minio, app: Minio, app_key: str) -> None:
    """The app's key reads and writes the artifacts bucket and does nothing else; the app never sees root's."""
    app.put_object("artifacts", "e2e/by-app.txt", io.BytesIO(b"written with the app key"), 24)
    assert app.get_object("artifacts", "e2e/by-app.txt").read() == b"written with the app key"
    root.make_bucket("snapshots")
    root.put_object("snapshots", "s1/dump.rdb", io.BytesIO(b"snapshot"), 8)
    for attempt in (
        lambda: app.remove_object("snapshots", "s1/dump.rdb"),
        lambda: app.get_object("snapshots", "s1/dump.rdb"),
        lambda: app.remove_object("artifacts", "e2e/by-app.txt"),
        lambda: app.make_bucket("elsewhere"),
    ):
        with pytest.raises(S3Error) as denied:
            attempt()
        assert denied.value.code == "AccessDenied"
    assert root.get_object("snapshots", "s1/dump.rdb").read() == b"snapshot"
    admin = MinioAdmin(f"127.0.0.1:{p.ports['minio']}", StaticProvider("fetchml-app", app_key), secure=False)
    policy = p.root / "wide-open.json"
    policy.write_text('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["*"]}]}')
    calls: list[Callable[[], object]] = [
        lambda: admin.policy_add("wide-open", str(policy)),
        lambda: admin.policy_set("consoleAdmin", user="fetchml-app"),
        lambda: admin.user_list(),
        lambda: admin.list_service_account(ROOT_USER),  # root's keys are not the app's to read
        lambda: admin.info(),
    ]
    for call in calls:
        with pytest.raises(MinioAdminException):
            call()
    for container in app_containers(p):
        shown = str(dockerhost.container(container)["Config"]["Env"])
        assert ROOT_USER not in shown and ROOT_PASSWORD not in shown and app_key not in shown, container
    # The worker writes each job's artifact itself, with the app key.
    assert p.run_job("job-e2e-1"), "the worker did not finish the job"
    assert b'"job":"job-e2e-1"' in app.get_object("artifacts", "jobs/job-e2e-1/result.json").read().replace(b" ", b"")


def test_init_on_a_config_file_that_cannot_be_written_says_so_and_the_next_init_works(
    prod: tuple[Project, Path], tmp_path: Path
) -> None:
    p, _ = prod
    config_file = p.root / f"Pulumi.{p.stack_name}.yaml"
    before = config_file.read_bytes()
    secrets = private_file(tmp_path, "prod.secrets", f"minioRootUser={ROOT_USER}\nminioRootPassword={ROOT_PASSWORD}\n")
    subprocess.run(["chattr", "+i", str(config_file)], check=True)
    try:
        done = p.cli("init", "--secrets-file", str(secrets))
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert f"{config_file.name}: operation not permitted" in out
        assert "the stack was created but its config was not saved and no secret was set; run init again" in out
        assert ROOT_PASSWORD not in out and config_file.read_bytes() == before
    finally:
        subprocess.run(["chattr", "-i", str(config_file)], check=True)
    out = ok(p.cli("init", "--secrets-file", str(secrets)))  # nothing to clean up by hand
    assert "set minioRootPassword" in out
    p.stack = auto.select_stack(p.stack_name, work_dir=str(p.root), opts=workspace_options(p))
    assert p.config("minioRootPassword") == ROOT_PASSWORD
