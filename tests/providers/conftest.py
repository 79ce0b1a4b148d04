"""Fixtures shared by the sink tests: one MinIO with a lock-enabled bucket for the session, a chain per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.providers.minio_server import Server
from tests.providers.sink_chain import Chain, serve


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory)


@pytest.fixture
def chain(server: Server, tmp_path: Path) -> Chain:
    return Chain(server, tmp_path)
