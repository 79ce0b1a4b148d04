"""A real MinIO server (the binary scripts/images.sh builds) on a loopback port of its own, with a throwaway data
directory: the write-once sink's tests run against the real Object Lock, not a model of it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from fetchml_infra import offline
from tests.conftest import images
from tests.providers.scripted_server import free_port

USER, PASSWORD = "sink-tests", "sink-tests-password"


def minio_binary() -> Path:
    path = offline.cache_home(os.environ) / "toolchain" / f"minio-{images()['MINIO_VERSION']}" / "minio"
    assert path.is_file(), f"{path} is built by scripts/bootstrap (scripts/images.sh)"
    return path


@dataclass(frozen=True)
class Server:
    endpoint: str
    env: dict[str, str]  # the AWS_* credentials that reach it


@contextmanager
def minio(data: Path) -> Iterator[Server]:
    """MinIO on 127.0.0.1 for the block; its data directory is ``data`` (compliance-locked objects cannot be
    deleted through S3, so a test's leftovers go with the directory)."""
    port, console = free_port(), free_port()
    env = {**os.environ, "MINIO_ROOT_USER": USER, "MINIO_ROOT_PASSWORD": PASSWORD, "MINIO_UPDATE": "off"}
    argv = [str(minio_binary()), "server", "--quiet", "--address", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*argv, "--console-address", f"127.0.0.1:{console}", str(data)], env=env, stdout=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{endpoint}/minio/health/live", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, f"MinIO exited with {proc.returncode} before answering"
                assert time.monotonic() < deadline, f"MinIO did not answer on {endpoint} within 30 s"
                time.sleep(0.1)
        creds = {"AWS_ACCESS_KEY_ID": USER, "AWS_SECRET_ACCESS_KEY": PASSWORD, "AWS_REGION": "us-east-1"}
        yield Server(endpoint, creds)
    finally:
        proc.terminate()
        proc.wait(10)
