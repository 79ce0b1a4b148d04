"""What the Docker host has, asked of the real Docker engine: foreign objects under a needed name, a needed port
held by a process or by a container, and the app containers that really exist."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fetchml_infra import host, ports
from fetchml_infra.config import parse
from fetchml_infra.host import AppContainer, Needs
from tests import dockerhost
from tests.conftest import images
from tests.unit.test_config import SECRETS, good

pytestmark = pytest.mark.e2e
TAG = "sha-1a2b3c4"


class Made:
    """Docker objects a test made, removed afterwards whatever happened."""

    def __init__(self) -> None:
        self.prefix = f"hosttest-{uuid.uuid4().hex[:8]}"
        self.objects: list[tuple[str, str]] = []

    def docker(self, kind: str, *args: str) -> str:
        name = args[args.index("--name") + 1] if "--name" in args else args[-1]
        self.objects.append((kind, name))
        cmd = ["docker", "run", "-d", *args] if kind == "container" else ["docker", kind, "create", *args]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def container(self, name: str, *options: str, image: str | None = None) -> str:
        return self.docker("container", "--name", name, *options, image or images()["REDIS_IMAGE"])

    def cleanup(self) -> None:
        for kind, name in reversed(self.objects):
            dockerhost.remove(kind, name)


@pytest.fixture
def made() -> Iterator[Made]:
    m = Made()
    try:
        yield m
    finally:
        m.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def only_port(needs: Needs, port: int, which: str = "api") -> Needs:
    return replace(needs, ports=(("127.0.0.1", port, which),))


def test_foreign_names_are_conflicts_and_managed_ones_are_not(made: Made) -> None:
    p = made.prefix
    needs = host.needs(parse("hosttest", good(namePrefix=p, workerReplicas="2"), SECRETS))
    assert host.existing(needs) == {"container": {}, "network": {}, "volume": {}}
    assert host.name_conflicts(needs, {}, host.existing(needs)) == []

    w2 = f"{p}-worker-{TAG}-2"
    worker = made.container(w2)
    made.container(f"{w2}x")  # a similar name is not a needed one
    net = made.docker("network", f"{p}-net")
    made.docker("volume", f"{p}-redis-data")
    found = host.existing(needs)
    assert found == {
        "container": {w2: worker},
        "network": {f"{p}-net": net},
        "volume": {f"{p}-redis-data": f"{p}-redis-data"},
    }

    problems = host.name_conflicts(needs, {}, found)
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"container '{w2}' ({worker[:12]}) exists but stack 'hosttest' does not")
    assert f"`docker rm -f {w2}`" in problems[0]
    assert problems[1].startswith(f"network '{p}-net' ({net[:12]}) exists")
    assert problems[2].startswith(f"volume '{p}-redis-data' exists")

    mine = {"container": {worker}, "network": {net}, "volume": {f"{p}-redis-data"}}
    assert host.name_conflicts(needs, mine, found) == []


def test_a_port_held_by_a_process_names_it(made: Made) -> None:
    needs = host.needs(parse("hosttest", good(namePrefix=made.prefix), SECRETS))
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = int(listener.getsockname()[1])
        [problem] = ports.port_conflicts(only_port(needs, port, "redis"), set())
        assert problem.startswith(f"127.0.0.1:{port} (redisHostPort) is in use by pid {os.getpid()} (")
        assert "pulumi config set redisHostPort <free port> --stack hosttest" in problem
    assert ports.port_conflicts(only_port(needs, port, "redis"), set()) == []


def test_a_port_published_by_a_container_is_fine_only_when_managed(made: Made) -> None:
    needs = host.needs(parse("hosttest", good(namePrefix=made.prefix), SECRETS))
    port = free_port()
    cid = made.container(f"{made.prefix}-proxy", "-p", f"127.0.0.1:{port}:6379")
    assert ports.port_conflicts(only_port(needs, port), {cid}) == []
    [problem] = ports.port_conflicts(only_port(needs, port), set())
    assert problem.startswith(
        f"127.0.0.1:{port} (apiHostPort) is in use by container '{made.prefix}-proxy' ({cid[:12]}), "
        "which stack 'hosttest' does not manage"
    )


def test_app_containers_are_found_by_exact_name(made: Made) -> None:
    p, version, old = made.prefix, f"FETCHML_VERSION={TAG}", "sha-5d6e7f8"
    api = made.container(f"{p}-api-{TAG}", "-e", version)
    worker = made.container(f"{p}-worker-{TAG}-1", "-e", version)
    stopped = made.container(f"{p}-worker-{TAG}-2", "-e", version)
    subprocess.run(["docker", "stop", "-t", "1", f"{p}-worker-{TAG}-2"], check=True, capture_output=True)
    before = made.container(f"{p}-api-{old}", "-e", f"FETCHML_VERSION={old}")  # the release it replaces
    made.container(f"{p}-redis", "-e", version)  # not an app container
    made.container(f"{p}-x-api-{TAG}", "-e", version)  # another prefix's
    made.container(f"{p}-api", "-e", version)  # not named for an image
    made.container(f"{p}-worker-{TAG}-3")  # no FETCHML_VERSION

    apps = host.app_containers(p)
    assert apps == {
        f"api-{TAG}": AppContainer(f"{p}-api-{TAG}", api, TAG, True, role="api", tag=TAG),
        f"api-{old}": AppContainer(f"{p}-api-{old}", before, old, True, role="api", tag=old),
        f"worker-{TAG}-1": AppContainer(f"{p}-worker-{TAG}-1", worker, TAG, True, role="worker-1", tag=TAG),
        f"worker-{TAG}-2": AppContainer(f"{p}-worker-{TAG}-2", stopped, TAG, False, role="worker-2", tag=TAG),
        f"worker-{TAG}-3": AppContainer(
            f"{p}-worker-{TAG}-3", apps[f"worker-{TAG}-3"].id, "", True, role="worker-3", tag=TAG
        ),
    }
    assert host.running_image(apps, 1) == TAG
    assert host.running_image(apps, 2) is None
    assert host.describe(apps, 2, TAG) == (
        f"api {TAG} (running), worker-1 {TAG} (running), worker-2 {TAG} (stopped), "
        f"worker-3 without FETCHML_VERSION (running, extra), api {old} (running)"
    )
    assert host.app_containers(f"{p}-none") == {}


def test_engine_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert host.engine_problem() is None
    needs = host.needs(parse("hosttest", good(), SECRETS))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    problem = host.engine_problem(timeout=5)
    assert problem is not None
    assert problem.startswith("the Docker engine does not answer: `docker version` failed: Cannot connect")
    assert "\n" not in problem
    with pytest.raises(host.HostError, match="`docker ps` failed: Cannot connect"):
        host.existing(needs)
    with pytest.raises(host.HostError, match="`docker ps` failed: Cannot connect"):
        host.app_containers("hosttest")


def test_engine_problem_when_the_engine_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX) as silent:  # accepts connections (backlog), never answers
        silent.bind(str(tmp_path / "silent.sock"))
        silent.listen()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/silent.sock")
        assert host.engine_problem(timeout=1) == (
            "the Docker engine does not answer: `docker version` did not answer within 1s"
        )
