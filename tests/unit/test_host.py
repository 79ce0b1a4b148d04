"""What the Docker host has, the pure part: the names and ports a stack needs, what its state manages, which
needed names are foreign, and which image the app containers really run."""

from __future__ import annotations

from typing import Any

import pytest

from fetchml_infra import host, ports
from fetchml_infra.config import parse
from fetchml_infra.host import AppContainer
from tests.unit.test_config import SECRETS, good

API_ID = "a" * 64
WORKER_ID = "b" * 64
NET_ID = "c" * 64


def test_needs_follow_the_stack_config() -> None:
    cfg = parse("staging", good(workerReplicas="2", namePrefix="fx", apiHostPort="19101"), SECRETS)
    n = host.needs(cfg)
    assert n.stack == "staging"
    tag = "sha-1a2b3c4"
    assert n.containers == (
        f"fx-api-{tag}",
        f"fx-worker-{tag}-1",
        f"fx-worker-{tag}-2",
        "fx-proxy",
        "fx-redis",
        "fx-minio",
        "fx-postgres",
    )
    assert n.networks == ("fx-net",)
    assert n.volumes == ("fx-redis-data", "fx-minio-data", "fx-postgres-data")
    assert n.ports == (
        ("127.0.0.1", 19101, "api"),
        ("127.0.0.1", 2019, "proxy-admin"),
        ("127.0.0.1", 6379, "redis"),
        ("127.0.0.1", 9000, "minio"),
    )


def test_needs_default_prefix_is_per_stack() -> None:
    n = host.needs(parse("staging", good(), SECRETS))
    assert n.containers == (
        "fetchml-staging-api-sha-1a2b3c4",
        "fetchml-staging-worker-sha-1a2b3c4-1",
        "fetchml-staging-proxy",
        "fetchml-staging-redis",
        "fetchml-staging-minio",
        "fetchml-staging-postgres",
    )


def resource(type_: str, urn_name: str, id_: str | None, **outputs: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "urn": f"urn:pulumi:staging::fetchml::fetchml:index:FetchML${type_}::{urn_name}",
        "custom": True,
        "type": type_,
        "outputs": outputs,
    }
    if id_ is not None:
        r["id"] = id_
    return r


def test_managed_reads_a_stack_export() -> None:
    deployment = {
        "manifest": {"time": "2026-11-27T11:34:26Z", "version": "v3.60.0"},
        "resources": [
            {"urn": "urn:pulumi:staging::fetchml::pulumi:pulumi:Stack::fetchml-staging", "type": "pulumi:pulumi:Stack"},
            {
                "urn": "urn:pulumi:staging::fetchml::pulumi:providers:docker::default_4_2_3",
                "id": "0f3c-provider",
                "type": "pulumi:providers:docker",
            },
            resource("docker:index/network:Network", "network", NET_ID, name="fetchml-staging-net"),
            resource("docker:index/volume:Volume", "redis-data", "fetchml-staging-redis-data"),
            resource("docker:index/volume:Volume", "minio-data", "fetchml-staging-minio-data"),
            resource("docker:index/remoteImage:RemoteImage", "redis-image", "sha256:1234fetchml-infra/redis:7.0"),
            resource("docker:index/container:Container", "api", API_ID, name="fetchml-staging-api"),
            resource("docker:index/container:Container", "worker-1", WORKER_ID, name="fetchml-staging-worker-1"),
            resource("docker:index/container:Container", "worker-2", None),  # a create that never finished
            resource("pulumi-python:dynamic:Resource", "health-gate", "gate-1"),
        ],
    }
    assert host.managed(deployment) == {
        "container": {API_ID, WORKER_ID},
        "network": {NET_ID},
        "volume": {"fetchml-staging-redis-data", "fetchml-staging-minio-data"},
    }
    assert host.managed({}) == {"container": set(), "network": set(), "volume": set()}


def test_name_conflicts_name_the_foreign_object_and_the_fix() -> None:
    n = host.needs(parse("staging", good(workerReplicas="2"), SECRETS))
    stray = "d" * 64
    found = {
        "container": {"fetchml-staging-api-sha-1a2b3c4": API_ID, "fetchml-staging-worker-sha-1a2b3c4-2": stray},
        "network": {"fetchml-staging-net": NET_ID},
        "volume": {"fetchml-staging-redis-data": "fetchml-staging-redis-data", "fetchml-staging-minio-data": "x"},
    }
    mine = {"container": {API_ID}, "network": {NET_ID}, "volume": {"fetchml-staging-redis-data"}}
    problems = host.name_conflicts(n, mine, found)
    assert len(problems) == 2
    worker, volume = problems
    name = "fetchml-staging-worker-sha-1a2b3c4-2"
    assert worker.startswith(f"container '{name}' (dddddddddddd) exists but stack 'staging' does not")
    assert f"`docker rm -f {name}`" in worker
    assert "namePrefix" in worker and "--stack staging" in worker
    assert volume.startswith("volume 'fetchml-staging-minio-data' exists but stack 'staging' does not manage it")
    assert "`docker volume rm fetchml-staging-minio-data`" in volume


def test_nothing_on_the_host_or_all_managed_is_no_conflict() -> None:
    n = host.needs(parse("staging", good(), SECRETS))
    assert host.name_conflicts(n, {}, {}) == []
    found = {"network": {"fetchml-staging-net": NET_ID}}
    assert host.name_conflicts(n, {"network": {NET_ID}}, found) == []
    assert host.name_conflicts(n, {}, found)[0].startswith("network 'fetchml-staging-net' (cccccccccccc) exists")


def test_published_ports_come_from_inspect() -> None:
    obj = {
        "Id": API_ID,
        "Name": "/fx-api",
        "HostConfig": {"PortBindings": {"9101/tcp": [{"HostIp": "127.0.0.1", "HostPort": "19101"}]}},
        "NetworkSettings": {"Ports": {"9101/tcp": [{"HostIp": "127.0.0.1", "HostPort": "19101"}], "80/tcp": None}},
    }
    assert ports.published([obj, {"Id": WORKER_ID, "Name": "/fx-worker-1"}]) == [(API_ID, "fx-api", "127.0.0.1", 19101)]


SS = """\
LISTEN 0      4096       127.0.0.1:19101      0.0.0.0:*    users:(("docker-proxy",pid=4242,fd=4))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=7,fd=3))
LISTEN 0      5      127.0.0.53%lo:53         0.0.0.0:*
LISTEN 0      511             [::]:8080          [::]:*    users:(("python3",pid=99,fd=5),("python3",pid=100,fd=5))
"""


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("127.0.0.1", 19101, "pid 4242 (docker-proxy)"),
        ("127.0.0.1", 22, "pid 7 (sshd)"),  # a wildcard listener holds every address
        ("127.0.0.1", 8080, "pid 99 (python3)"),
        ("127.0.0.53", 53, "a process ss cannot name (not root?)"),
        ("127.0.0.2", 19101, None),
        ("127.0.0.1", 1910, None),
    ],
)
def test_listener_from_ss(address: str, port: int, expected: str | None) -> None:
    assert ports.listener(SS, address, port) == expected


def app(role: str, image: str = "sha-1a2b3c4", running: bool = True, restarts: int = 0, tag: str = "") -> AppContainer:
    """An app container as host.app_containers reads it: named for the image ``tag`` (``image`` by default)."""
    tag = tag or image or "sha-0000000"
    key = f"api-{tag}" if role == "api" else f"worker-{tag}-{role.rpartition('-')[2]}"
    return AppContainer(f"fx-{key}", f"{key}-id", image, running, restarts=restarts, role=role, tag=tag)


def apps(*containers: AppContainer) -> dict[str, AppContainer]:
    return {c.name.removeprefix("fx-"): c for c in containers}


def test_running_image_when_all_agree() -> None:
    running = apps(app("api"), app("worker-1"), app("worker-2"))
    assert host.running_image(running, 2) == "sha-1a2b3c4"
    assert host.running_image(running, 1) == "sha-1a2b3c4"  # an extra worker is not asked about
    assert host.describe(running, 2, "sha-1a2b3c4") == (
        "api sha-1a2b3c4 (running), worker-1 sha-1a2b3c4 (running), worker-2 sha-1a2b3c4 (running)"
    )


def test_running_image_with_one_missing() -> None:
    partial = apps(app("api"), app("worker-1"))
    assert host.running_image(partial, 2) is None
    assert host.describe(partial, 2, "sha-1a2b3c4").endswith("worker-2 sha-1a2b3c4 missing")
    assert host.running_image({}, 1) is None
    assert host.describe({}, 1, "sha-1a2b3c4") == "api sha-1a2b3c4 missing, worker-1 sha-1a2b3c4 missing"
    assert host.describe({}, 1) == "no app containers"


def test_running_image_with_one_stopped() -> None:
    stopped = apps(app("api"), app("worker-1", running=False))
    assert host.running_image(stopped, 1) is None
    assert host.describe(stopped, 1) == "api sha-1a2b3c4 (running), worker-1 sha-1a2b3c4 (stopped)"


def test_running_image_with_mixed_tags() -> None:
    mixed = apps(app("api", "sha-5d6e7f8"), app("worker-1"))
    assert host.running_image(mixed, 1) is None
    assert host.describe(mixed, 1, "sha-1a2b3c4") == (
        "worker-1 sha-1a2b3c4 (running), api sha-5d6e7f8 (running), api sha-1a2b3c4 missing"
    )
    unversioned = apps(app("api", "", tag="sha-1a2b3c4"), app("worker-1", "", tag="sha-1a2b3c4"))
    assert host.running_image(unversioned, 1) is None
    # A container whose name and FETCHML_VERSION disagree runs something else than its name says.
    lying = apps(app("api", "sha-5d6e7f8", tag="sha-1a2b3c4"), app("worker-1"))
    assert host.running_image(lying, 1) is None


def test_old_and_new_releases_side_by_side_the_proxy_says_which_runs() -> None:
    """Mid-deploy (or after a failed gate) two releases are whole or half: the routed one is the running one."""
    both = apps(app("api"), app("worker-1"), app("api", "sha-5d6e7f8"), app("worker-1", "sha-5d6e7f8"))
    assert host.complete(both, 1) == ["sha-1a2b3c4", "sha-5d6e7f8"]
    assert host.running_image(both, 1) is None  # two whole releases and nothing says which is routed
    assert host.running_image(both, 1, "sha-5d6e7f8") == "sha-5d6e7f8"
    failed = apps(app("api"), app("worker-1"), app("api", "sha-9c0ffee"))  # a failed gate: no new workers
    assert host.running_image(failed, 1) == "sha-1a2b3c4"
    assert host.running_image(failed, 1, "sha-9c0ffee") is None  # routed to a half release: not running
    assert host.describe(failed, 1, "sha-1a2b3c4") == (
        "api sha-1a2b3c4 (running), worker-1 sha-1a2b3c4 (running), api sha-9c0ffee (running)"
    )


def test_describe_lists_extra_workers_in_order() -> None:
    extra = apps(app("api"), app("worker-1"), app("worker-10", running=False), app("worker-3"))
    assert host.describe(extra, 1) == (
        "api sha-1a2b3c4 (running), worker-1 sha-1a2b3c4 (running), worker-3 sha-1a2b3c4 (running, extra), "
        "worker-10 sha-1a2b3c4 (stopped, extra)"
    )


def test_engine_problem_without_a_docker_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert host.engine_problem() == (
        "the Docker engine does not answer: the docker client is not on PATH; run scripts/bootstrap"
    )


def test_images_other_than_what_the_chain_last_recorded() -> None:
    mixed = apps(app("api", "sha-5d6e7f8"), app("worker-1"), app("worker-2", "", tag="sha-1a2b3c4"))
    assert host.images_other_than(mixed, "sha-1a2b3c4") == ["sha-5d6e7f8"]
    assert host.images_other_than(mixed, None) == ["sha-1a2b3c4", "sha-5d6e7f8"]
    assert host.images_other_than(mixed, "sha-1a2b3c4", "sha-5d6e7f8") == []
    assert host.images_other_than(apps(app("api")), "sha-1a2b3c4") == []


def test_orphans_are_only_this_stacks_unrecorded_app_containers() -> None:
    cut_off = AppContainer("fx-worker-sha-5d6e7f8-1", "new", "sha-5d6e7f8", False, started=False)
    managed = AppContainer("fx-api-sha-1a2b3c4", "api-id", "sha-1a2b3c4", True)
    strangers = AppContainer("fx-worker-sha-5d6e7f8-2", "w2", "", True)  # someone's with a clashing name
    assert host.orphans(apps(cut_off, managed, strangers), {"api-id"}) == [cut_off]


def test_a_container_that_never_started_ran_no_image() -> None:
    never = AppContainer("fx-api-sha-5d6e7f8", "new", "sha-5d6e7f8", False, started=False, tag="sha-5d6e7f8")
    assert host.images_other_than(apps(never, app("worker-1")), "sha-1a2b3c4") == []


def test_a_container_that_keeps_exiting_is_named_crash_looping() -> None:
    looping = apps(app("api", image="sha-dead001", running=False, restarts=7), app("worker-1", "sha-dead001"))
    assert host.running_image(looping, 1) is None
    assert host.describe(looping, 1) == "api sha-dead001 (crash-looping, 7 restarts), worker-1 sha-dead001 (running)"
