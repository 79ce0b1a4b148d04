"""A stack's chain on a real MinIO sink (Object Lock, 127.0.0.1) for the sink tests: the server, operators'
local logs, a signer, and what check-sink would find."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchml_infra.audit import checkpoint, findings, shipping
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import Target
from tests.providers.minio_server import Server, minio

BUCKET = "audit"


def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as mp, minio(tmp_path_factory.mktemp("minio")) as s:
        for key, value in s.env.items():
            mp.setenv(key, value)
        Sink(Target(s.endpoint, BUCKET, 30), "-").create_bucket()
        yield s


class Chain:
    """One stack's sink and a signer, and local logs (operators' mirrors) in a temp directory."""

    def __init__(self, server: Server, tmp: Path, retention_days: int = 30, bucket: str = BUCKET) -> None:
        self.stack = f"s{uuid.uuid4().hex[:8]}"
        self.sink = Sink(Target(server.endpoint, bucket, retention_days), self.stack)
        self.signer = checkpoint.create(tmp / f"{self.stack}.key", "ci-runner")
        self.tmp = tmp
        self.shipping = shipping.Shipping(self.sink, self.signer)

    def log(self, name: str = "a") -> Path:
        return self.tmp / f"{name}.audit.log"

    def append(self, name: str = "a", to: str = "sha-1a2b3c4", ship: bool = True) -> str:
        _, note = shipping.append(
            self.log(name),
            self.shipping if ship else None,
            action="deploy",
            outcome="success",
            from_image="-",
            to_image=to,
            actor="tester",
            reason="test",
            stack=self.stack,
        )
        return note

    def policy(self, retention_days: int = 30) -> findings.Policy:
        signers = {self.signer.name: checkpoint.public_bytes(self.signer.key)}
        return findings.Policy(self.stack, retention_days, signers, self.sink.origin)

    def findings(self, name: str = "a", outputs: tuple[int, str] | None = None, days: int = 30) -> list[str]:
        local = self.log(name).read_bytes() if self.log(name).exists() else b""
        found = findings.compare(local, self.sink.view(), self.policy(days), outputs)
        return [f"{f.kind} {'-' if f.index is None else f.index}" for f in found]

    def s3(self) -> object:
        return self.sink._s3


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(True)
