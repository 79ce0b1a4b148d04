"""Snapshots and the data-recovery path, for real: a snapshot before every move, a deleted Redis key and a
dropped table brought back by `restore` (not by a rollback), each step in the chain, and the ways it refuses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import dockerhost
from tests.e2e.project import Project, throwaway
from tests.e2e.test_schema_rollback import app_ids, docker, ok, wait_schema

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"
SNAPSHOT = re.compile(r"snapshot ([0-9]{8}T[0-9]{6}Z-e[0-9]{6}(?:-[0-9]+)?) taken before entry #([0-9]+)")


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A, environment="staging", autoRollback="true") as p:
        yield p


def listed(p: Project) -> list[str]:
    out = ok(p.cli("snapshots"))
    return [line.split()[0] for line in out.splitlines() if re.match(r"^[0-9]{8}T", line)]


def test_a_deleted_key_and_a_dropped_table_come_back_with_restore(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    assert listed(p) == []  # the first deploy had no data to snapshot
    ok(p.cli("deploy", "--image", B, "--reason", "second"))
    wait_schema(p, 2)
    r = p.redis()
    r.set("fetchml:probe", "kept")
    r.lpush("fetchml:queue:failed", "job-0")
    p.psql("insert into experiments(name, owner) values ('exp-1', 'ana')")
    assert p.run_job("job-1")

    out = ok(p.cli("rollback", "--to", A, "--reason", "B is slow"))
    taken = sorted(set(SNAPSHOT.findall(out)))  # Pulumi prints a message twice: as it runs, and at the end
    assert len(taken) == 1 and taken[0][1] == "3", out  # taken before entry #3, the rollback itself
    snap = taken[0][0]
    assert listed(p)[-1] == snap and len(listed(p)) == 2
    assert p.chain()[-1].action == "rollback"  # the snapshot is no entry: the move is

    # The accident: a key deleted, a table dropped. A rollback would not bring them back; restore does.
    r.delete("fetchml:probe")
    p.psql("drop table experiments cascade")
    data, apps, chain = p.data_identities(), app_ids(p), p.chain()

    # Refusals first: nothing read, nothing stopped, nothing recorded.
    out = ok(p.cli("restore", "--snapshot", "20990101T000000Z-e000001", "--reason", "x", "--redis"), 2)
    assert "has no snapshot '20990101T000000Z-e000001'" in out and snap in out
    out = ok(p.cli("restore", "--snapshot", snap, "--reason", "x"), 2)
    assert "--redis / --db: name at least one part to restore; saw neither" in out
    assert p.chain() == chain and app_ids(p) == apps

    out = ok(p.cli("restore", "--snapshot", snap, "--redis", "--db", "--reason", "table dropped by hand"))
    assert "Redis restored" in out and "database restored" in out
    assert r.get("fetchml:probe") == b"kept" and r.lrange("fetchml:queue:failed", 0, -1) == [b"job-0"]
    assert r.sismember("fetchml:jobs:done", "job-1")
    assert p.psql("select name || ':' || owner from experiments") == "exp-1:ana"
    assert p.schema_version() == 2
    assert p.data_identities() == data  # no data service replaced or restarted
    assert {n: i[0] for n, i in app_ids(p).items()} == {n: i[0] for n, i in apps.items()}  # same containers
    entries = p.chain()
    assert entries[:-1] == chain
    last = entries[-1]
    assert (last.action, last.outcome, last.from_image, last.to_image) == ("restore", "success", A, A)
    assert last.reason.startswith(f"restore of redis and db from snapshot {snap} (taken before entry #3); the data")
    assert last.reason.endswith(": table dropped by hand")
    safety = listed(p)[-1]
    assert safety != snap and f"the data before it is snapshot {safety}" in last.reason
    assert p.run_job("job-2")  # the app serves again

    # Retention: prune is explicit and recorded; the newest snapshots stay.
    out = ok(p.cli("snapshots", "prune", "--keep", "1", "--reason", "disk"))
    assert listed(p) == [safety]
    pruned = p.chain()[-1]
    assert (pruned.action, pruned.from_image, pruned.to_image) == ("prune", A, A)
    assert pruned.reason.startswith("pruned 2 snapshot(s)") and pruned.reason.endswith(": disk")
    out = ok(p.cli("snapshots", "prune", "--keep", "1", "--reason", "disk"))
    assert "nothing to prune" in out and p.chain()[-1] == pruned


def test_a_deploy_whose_snapshot_cannot_be_stored_does_not_start(staging: Project) -> None:
    p = staging
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    chain, apps = p.chain(), app_ids(p)
    docker("stop", f"{p.prefix}-minio")
    try:
        out = ok(p.cli("deploy", "--image", B, "--reason", "minio down"), 2)
    finally:
        docker("start", f"{p.prefix}-minio")
    assert "could not be taken" in out and "a deploy snapshots the data first, so it did not start" in out
    assert p.chain() == chain and p.config("image") == A
    assert {n: i[0] for n, i in app_ids(p).items() if "minio" not in n} == {
        n: i[0] for n, i in apps.items() if "minio" not in n
    }
    ok(p.cli("deploy", "--image", B, "--reason", "minio back"))
    assert len(listed(p)) == 1 and dockerhost.identity(p.api(B))
