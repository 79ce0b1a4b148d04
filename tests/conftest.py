"""Shared test setup: the offline Pulumi environment for every test, and a loud check before e2e tests.

An e2e test never skips. When the engine, a plugin, the Docker engine or an image is missing it fails and
names the missing piece and the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fetchml_infra import offline, toolchain
from fetchml_infra.offline import read_versions

offline.apply()

IMAGES_ENV = offline.REPO_ROOT / "scripts" / "images.env"


def images() -> dict[str, str]:
    return read_versions(IMAGES_ENV)


def _missing_pieces() -> list[str]:
    missing = []
    where = shutil.which("pulumi")
    if where is None:
        missing.append("pulumi is not on PATH")
    else:
        beside = Path(where).resolve().parent
        for program in ("pulumi-language-python", "pulumi-resource-pulumi-python"):
            if not (beside / program).is_file() and shutil.which(program) is None:
                missing.append(f"{program} is neither beside {where} nor on PATH")
    docker = offline.plugin_cache(os.environ) / f"resource-docker-v{read_versions()['DOCKER_PROVIDER_VERSION']}"
    if not (docker / "pulumi-resource-docker").is_file():
        missing.append(f"the docker provider is not in Pulumi's plugin cache ({docker})")
    if where:
        seen = subprocess.run([where, "version"], capture_output=True, text=True).stdout.strip()
        problem = toolchain.unsupported(seen, where)
        if problem:
            missing.append(problem)
    if shutil.which("docker") is None:
        missing.append("the docker client is not on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing.append("no Docker engine answers (`docker info` fails)")
    else:
        img = images()
        wanted = [img["REDIS_IMAGE"], img["MINIO_IMAGE"], img["PROXY_IMAGE"], img["POSTGRES_IMAGE"]] + [
            f"{img[repo]}:{tag.split(':')[0]}"
            for repo in ("API_IMAGE_REPO", "WORKER_IMAGE_REPO")
            for tag in img["STANDIN_TAGS"].split(",")
        ]
        for image in wanted:
            if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
                missing.append(f"image {image} is not in the local Docker engine")
    return missing


@pytest.fixture(scope="session")
def e2e_ready() -> None:
    missing = _missing_pieces()
    if missing:
        pytest.fail(
            "e2e tests need the real toolchain, which is missing here:\n  - "
            + "\n  - ".join(missing)
            + "\nRun scripts/bootstrap (it builds and starts everything), then run the tests again.",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _e2e_guard(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("e2e") is not None:
        request.getfixturevalue("e2e_ready")
