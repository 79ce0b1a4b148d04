"""The component under Pulumi mocks: what is protected, and what the image tag may reach."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fetchml_infra.config import parse
from fetchml_infra.stack import FetchML

PERSISTENT = {
    *("network", "redis-data", "minio-data", "redis-image", "minio-image", "redis", "minio", "minio-app-access"),
    *("proxy-image", "proxy", "postgres-data", "postgres-image", "postgres"),
}


def app(image: str) -> set[str]:
    """The app's resources for ``image``: its API and workers are named for it, so a new image is new ones."""
    return {
        *("api-image", "worker-image", "health-gate", "proxy-route", "audit-entry"),
        *(f"api-{image}", f"worker-{image}-1", f"worker-{image}-2"),
    }


APP = app("sha-1a2b3c4")


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, dict[str, Any]] = {}
        self.types: dict[str, str] = {}
        self.options: dict[str, pulumi.ResourceOptions | None] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs[args.name] = dict(args.inputs)
        self.types[args.name] = args.typ
        outputs = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = f"sha256:{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def build(tmp_path: Path, image: str, **extra: str) -> tuple[Recorder, FetchML]:
    values = {
        "image": image,
        "workerReplicas": "2",
        "auditLog": str(tmp_path / "audit.log"),
        "minioRootUser": "fetchml-admin",
        "minioRootPassword": "correct-horse-battery",
        "minioAppSecretKey": "app-secret-key-for-mocks",
        "postgresPassword": "postgres-password-for-mocks",
        **extra,
    }
    cfg = parse(
        "staging", values, frozenset({"minioRootUser", "minioRootPassword", "minioAppSecretKey", "postgresPassword"})
    )
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="fetchml", stack="staging", preview=False)
    register = pulumi.CustomResource.__init__

    def spy(self: pulumi.CustomResource, t: str, name: str, props: Any = None, opts: Any = None, *rest: Any) -> None:
        mocks.options[name] = opts  # the options as the program gave them, which mocks do not pass on
        register(self, t, name, props, opts, *rest)

    pulumi.CustomResource.__init__ = spy  # type: ignore[method-assign,assignment]
    holder: dict[str, FetchML] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        holder["stack"] = stack = FetchML("fetchml", cfg)
        return pulumi.Output.all(stack.audit.id, stack.gate.id, stack.persistent.minio.id)

    try:
        run()
    finally:
        pulumi.CustomResource.__init__ = register  # type: ignore[method-assign]
    return mocks, holder["stack"]


def mentions(value: Any, needle: str) -> bool:
    return needle in json.dumps(value, default=str)


def test_every_persistent_volume_and_the_audit_record_are_protected_and_retained(tmp_path: Path) -> None:
    mocks, _ = build(tmp_path, "sha-1a2b3c4")
    kept = {name for name, opts in mocks.options.items() if opts is not None and opts.protect and opts.retain_on_delete}
    assert kept == {"redis-data", "minio-data", "postgres-data", "audit-entry"}
    # Containers are replaceable (their data is not): nothing else is protected.
    assert {name for name, opts in mocks.options.items() if opts is not None and opts.protect} == kept


def test_the_image_tag_reaches_exactly_the_app(tmp_path: Path) -> None:
    mocks, _ = build(tmp_path, "sha-1a2b3c4")
    assert set(mocks.inputs) == PERSISTENT | APP | {"fetchml"}  # "fetchml": the component itself
    reached = {name for name, inputs in mocks.inputs.items() if mentions(inputs, "sha-1a2b3c4")}
    assert reached == APP
    assert mocks.inputs["api-image"]["name"] == "ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4"
    assert mocks.inputs["worker-image"]["name"] == "ghcr.io/jfraeysd/fetchml-worker:sha-1a2b3c4"


def test_changing_the_image_changes_nothing_persistent(tmp_path: Path) -> None:
    before, _ = build(tmp_path, "sha-1a2b3c4")
    after, _ = build(tmp_path, "sha-5d6e7f8")
    for name in PERSISTENT:
        assert before.inputs[name] == after.inputs[name], name
    assert set(after.inputs) == PERSISTENT | app("sha-5d6e7f8") | {"fetchml"}
    kept = APP & app("sha-5d6e7f8")  # the images, gate, route and record: updated in place
    assert {name for name in kept if before.inputs[name] != after.inputs[name]} == kept
    route = after.inputs["proxy-route"]
    assert route["upstream"] == "fetchml-staging-api-sha-5d6e7f8:9101"
    assert after.inputs["api-sha-5d6e7f8"]["name"] == "fetchml-staging-api-sha-5d6e7f8"


def test_credentials_reach_containers_only_as_secret_files(tmp_path: Path) -> None:
    mocks, stack = build(tmp_path, "sha-1a2b3c4")
    seen: dict[str, bool] = {}

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        async def record(name: str, output: pulumi.Output[Any]) -> None:
            seen[name] = await output.is_secret()

        return pulumi.Output.from_input(
            asyncio.gather(
                record("minio", stack.persistent.minio.uploads),
                record("postgres", stack.persistent.postgres.uploads),
                record("api", stack.app.api.uploads),
                record("access", stack.persistent.app_access.secret_key),  # type: ignore[attr-defined]
            )
        )

    check()
    assert seen == {"minio": True, "postgres": True, "api": True, "access": True}
    app_containers = ("api-sha-1a2b3c4", "worker-sha-1a2b3c4-1", "worker-sha-1a2b3c4-2")
    for name in ("minio", "postgres", *app_containers):  # `docker inspect` shows envs to anyone on Docker
        for value in (
            "fetchml-admin",
            "correct-horse-battery",
            "app-secret-key-for-mocks",
            "postgres-password-for-mocks",
        ):
            assert not mentions(mocks.inputs[name].get("envs"), value), (name, value)
    uploads = mocks.inputs["api-sha-1a2b3c4"]["uploads"]
    uploads = uploads["value"] if isinstance(uploads, dict) else uploads  # a secret, as the mocks see it
    app_files = {u["file"]: u["content"] for u in uploads}
    assert app_files == {  # the app's own MinIO key, not root's; the database password, as a file
        "/run/secrets/fetchml-minio": "fetchml-app\napp-secret-key-for-mocks\n",
        "/run/secrets/fetchml-postgres": "postgres-password-for-mocks\n",
    }


@pytest.mark.parametrize("replicas", ["1", "3"])
def test_worker_replicas(tmp_path: Path, replicas: str) -> None:
    mocks, stack = build(tmp_path, "sha-1a2b3c4", workerReplicas=replicas)
    assert len(stack.app.workers) == int(replicas)
    names = sorted(v["name"] for k, v in mocks.inputs.items() if re.fullmatch(r"worker-sha-1a2b3c4-\d+", k))
    assert names == [f"fetchml-staging-worker-sha-1a2b3c4-{i}" for i in range(1, int(replicas) + 1)]


def test_ports_are_published_on_the_bind_address_only(tmp_path: Path) -> None:
    mocks, _ = build(tmp_path, "sha-1a2b3c4")
    for name in ("redis", "minio"):
        [port] = mocks.inputs[name]["ports"]
        assert port["ip"] == "127.0.0.1", name
    public, admin = mocks.inputs["proxy"]["ports"]
    assert (public["ip"], public["internal"], public["external"]) == ("127.0.0.1", 8080, 9101)  # the API's port
    assert (admin["ip"], admin["internal"], admin["external"]) == ("127.0.0.1", 2019, 2019)
    # The API itself publishes nothing: only the proxy reaches it, and the gate checks it on the network.
    assert not mocks.inputs["api-sha-1a2b3c4"].get("ports")


def test_the_admin_api_stays_on_loopback_when_the_api_is_published(tmp_path: Path) -> None:
    mocks, _ = build(tmp_path, "sha-1a2b3c4", bindAddress="0.0.0.0", allowPublicBind="true")
    public, admin = mocks.inputs["proxy"]["ports"]
    assert (public["ip"], admin["ip"]) == ("0.0.0.0", "127.0.0.1")
