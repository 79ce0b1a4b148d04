"""The database's part of the rollback scope, for real: migrations persist through a rollback, a target the
schema has outgrown is refused (CLI, plain `pulumi up`, preview) unless forced, and the refusal changes
nothing. Releases: A migrates to schema 1 and runs on 0-2, B to 2 (0-2), D to 3 (0-3)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import dockerhost
from tests.e2e.project import Project, throwaway

pytestmark = pytest.mark.e2e
A, B, D = "sha-1a2b3c4", "sha-5d6e7f8", "sha-3c3c3c3"


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="staging", autoRollback="true") as p:
        yield p


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    out = str(done.stdout + done.stderr)
    assert done.returncode == code, f"exit {done.returncode}, expected {code}\n{out[-4000:]}"
    return out


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=120)


def app_ids(p: Project) -> dict[str, tuple[str, str]]:
    names = dockerhost.containers_named(f"{p.prefix}-")
    return {n: dockerhost.identity(n) for n in names}


def wait_schema(p: Project, version: int) -> None:
    """The API migrates in the background after it starts; the gate passes on /health before that ends."""
    for _ in range(80):
        try:
            if p.schema_version() == version:
                return
        except AssertionError:
            pass  # schema_migrations not there yet
        time.sleep(0.25)
    assert p.schema_version() == version


def test_migrations_persist_through_a_rollback_and_an_outgrown_target_is_refused(staging: Project) -> None:
    p = staging
    first = ok(p.cli("deploy", "--image", A, "--reason", "first"))
    assert "no database yet" in first
    wait_schema(p, 1)
    p.psql("insert into experiments(name) values ('exp-a')")

    out = ok(p.cli("deploy", "--image", B, "--reason", "adds runs"))
    assert "live schema 1; sha-5d6e7f8 runs on 0 to 2; 1 migration(s) to apply on start" in out
    wait_schema(p, 2)
    p.psql("insert into runs(experiment_id, status) select id, 'done' from experiments")
    p.psql("update experiments set owner = 'ana'")
    data = p.data_identities()

    # Back to A, which still runs on schema 2: the rollback never reverts a migration.
    out = ok(p.cli("rollback", "--to", A, "--reason", "B is slow"))
    assert "ok  schema: live schema 2; sha-1a2b3c4 runs on 0 to 2" in out
    assert "[x] schema version: 2; sha-1a2b3c4 runs on 0 to 2" in out
    assert "[x] migrations pending: none" in out and "[x] database: fetchml-" in out
    assert p.schema_version() == 2
    assert (
        p.psql(
            "select e.name || ':' || e.owner || ':' || r.status from runs r join experiments e "
            "on e.id = r.experiment_id"
        )
        == "exp-a:ana:done"
    )
    assert p.psql(
        "select string_agg(version::text || '=' || applied_by, ',' order by version) from schema_migrations"
    ) == (f"1={A},2={B}")
    assert p.data_identities() == data  # Redis, MinIO and PostgreSQL neither replaced nor restarted

    ok(p.cli("deploy", "--image", D, "--reason", "adds metrics"))
    wait_schema(p, 3)
    before, chain, config = app_ids(p), p.chain(), p.config("image")

    # B runs on 0-2 only: refused before anything changed, naming both versions.
    out = ok(p.cli("rollback", "--to", B, "--reason", "D is slow"), 2)
    assert "the live database schema is 3, but sha-5d6e7f8 runs on schema 0 to 2" in out
    assert "needs a forward fix or data recovery, not a rollback (data recovery: fetchml-infra restore)" in out
    assert "Nothing was changed" in out
    assert app_ids(p) == before and p.chain() == chain and p.config("image") == config == D

    # The preview (and so the PR comment) says it, and the plain `pulumi up` path refuses the same way.
    ok(p.pulumi("config", "set", "image", B))
    shown = ok(p.cli("preview"), 1)  # a preview the program refuses is a failed check
    assert "schema: REFUSED: the live database schema is 3, but sha-5d6e7f8 runs on schema 0 to 2" in shown
    plain = p.pulumi("up", "--yes", "--skip-preview")
    assert plain.returncode != 0
    assert "the live database schema is 3, but sha-5d6e7f8 runs on schema 0 to 2" in plain.stdout + plain.stderr
    assert "Traceback" not in plain.stdout + plain.stderr
    assert app_ids(p) == before and p.chain() == chain and p.schema_version() == 3
    ok(p.pulumi("config", "set", "image", D))

    # --force-schema goes, and says so in the audit entry; the schema stays 3.
    out = ok(p.cli("rollback", "--to", B, "--reason", "D is slow", "--force-schema"), 1)  # checklist: schema red
    assert "going anyway (--force-schema, recorded)" in out
    assert "[ ] schema version: 3; sha-5d6e7f8 runs on 0 to 2" in out
    last = p.chain()[-1]
    assert (last.action, last.outcome, last.from_image, last.to_image) == ("rollback", "success", D, B)
    assert last.reason == (
        "D is slow; schema check overridden (--force-schema): the live database schema is 3, but sha-5d6e7f8 "
        "runs on schema 0 to 2"
    )
    assert p.schema_version() == 3 and p.config("image") == B
    assert "forceSchema" not in p.pulumi("config").stdout  # set for that one update only


def test_a_database_that_is_down_refuses_the_move_and_the_next_one_works(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    wait_schema(p, 1)
    chain = p.chain()
    docker("stop", f"{p.prefix}-postgres")
    out = ok(p.cli("deploy", "--image", B, "--reason", "db down"), 2)
    assert f"the database container {p.prefix}-postgres is not running" in out
    assert f"start it (`docker start {p.prefix}-postgres`)" in out and "or add --force-schema" in out
    assert p.chain() == chain and p.config("image") == A
    docker("start", f"{p.prefix}-postgres")
    ok(p.cli("deploy", "--image", B, "--reason", "db back"))
    wait_schema(p, 2)
    assert [(e.action, e.to_image) for e in p.chain()] == [("deploy", A), ("deploy", B)]
