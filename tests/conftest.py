"""Shared test setup: the offline Pulumi environment for every test, and a loud check before e2e tests.

An e2e test never skips. When the engine, a plugin, the Docker engine or an image is missing it fails and
names the missing piece and the command that installs it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from fetchml_infra import offline
from fetchml_infra.offline import read_versions

offline.apply()

IMAGES_ENV = offline.REPO_ROOT / "scripts" / "images.env"


def images() -> dict[str, str]:
    return read_versions(IMAGES_ENV)


def _missing_pieces() -> list[str]:
    versions = read_versions()
    missing = []
    for program in ("pulumi", "pulumi-language-python", "pulumi-resource-pulumi-python", "pulumi-resource-docker"):
        if shutil.which(program) is None:
            missing.append(f"{program} is not on PATH")
    if shutil.which("pulumi"):
        seen = subprocess.run(["pulumi", "version"], capture_output=True, text=True).stdout.strip()
        if seen != f"v{versions['PULUMI_PKG_VERSION']}":
            missing.append(f"pulumi version: expected v{versions['PULUMI_PKG_VERSION']}, saw {seen!r}")
    if shutil.which("docker") is None:
        missing.append("the docker client is not on PATH")
    elif subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing.append("no Docker engine answers (`docker info` fails)")
    else:
        img = images()
        wanted = [img["REDIS_IMAGE"], img["MINIO_IMAGE"]] + [
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
