"""The app's own MinIO credentials: a user whose policy reaches only the artifacts bucket.

The API and workers never hold MinIO's root key. ``AppAccess`` (a dynamic resource) makes sure, with the root
key and MinIO's admin API (the ``minio`` package's ``MinioAdmin``), that the artifacts bucket exists, that the
policy below exists, and that the app user has that policy and the configured secret key. Its inputs take
nothing from ``image``, so a rollback never touches it; it runs again when MinIO is replaced or a key
changes (rotation). Delete leaves the user in MinIO's data, like the data itself.
"""

from __future__ import annotations

import json
import tempfile
import time
from typing import Any

import pulumi
import urllib3
from minio import Minio
from minio.credentials.providers import StaticProvider
from minio.error import MinioAdminException, S3Error
from minio.minioadmin import MinioAdmin
from pulumi.dynamic import CreateResult, ResourceProvider, UpdateResult

from fetchml_infra.config import StackConfig
from fetchml_infra.provider_errors import reported

APP_USER = "fetchml-app"
ARTIFACTS_BUCKET = "artifacts"
_SECRET_PROPS = ["root_user", "root_password", "secret_key"]
_FAILURES = (S3Error, MinioAdminException, urllib3.exceptions.HTTPError, OSError)


def policy_document(bucket: str) -> dict[str, Any]:
    """Read and write objects in ``bucket`` and list it; nothing else (no delete, no other bucket, no admin)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def policy_name(bucket: str) -> str:
    return f"fetchml-app-{bucket}-rw"


def _wait_for(client: Minio, timeout: float = 60.0) -> None:
    """MinIO answers a moment after its container starts (or is replaced)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except (urllib3.exceptions.HTTPError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure(props: dict[str, Any]) -> None:
    """Bucket, policy, user, attachment: each step is idempotent, so a retry after a failure just finishes."""
    root = StaticProvider(props["root_user"], props["root_password"])
    client = Minio(props["endpoint"], credentials=root, secure=False)
    _wait_for(client)
    if not client.bucket_exists(props["bucket"]):
        client.make_bucket(props["bucket"])
    admin = MinioAdmin(props["endpoint"], root, secure=False)
    name = policy_name(props["bucket"])
    with tempfile.NamedTemporaryFile("w", suffix=".json") as doc:  # policy_add reads a file
        json.dump(policy_document(props["bucket"]), doc)
        doc.flush()
        admin.policy_add(name, doc.name)
    admin.user_add(props["access_key"], props["secret_key"])  # sets the secret key of an existing user too
    admin.policy_set(name, user=props["access_key"])


class AppAccessProvider(ResourceProvider):
    @reported(*_FAILURES)
    def create(self, props: dict[str, Any]) -> CreateResult:
        ensure(props)
        return CreateResult(f"minio-app-{props['access_key']}", props)

    @reported(*_FAILURES)
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        ensure(news)
        return UpdateResult(news)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the user lives in MinIO's retained data, as the artifacts do


class AppAccess(pulumi.dynamic.Resource, module="fetchml", name="AppAccess"):
    def __init__(
        self,
        name: str,
        *,
        endpoint: pulumi.Input[str],
        server: pulumi.Input[str],
        root_user: pulumi.Input[str],
        root_password: pulumi.Input[str],
        secret_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "endpoint": endpoint,
            "server": server,  # the MinIO container's id: a new container is checked again
            "bucket": ARTIFACTS_BUCKET,
            "access_key": APP_USER,
            "root_user": pulumi.Output.secret(root_user),
            "root_password": pulumi.Output.secret(root_password),
            "secret_key": pulumi.Output.secret(secret_key),
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=_SECRET_PROPS)
        super().__init__(AppAccessProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))


def for_stack(cfg: StackConfig, server: pulumi.Input[str], opts: pulumi.ResourceOptions) -> AppAccess:
    """The stack's AppAccess, through MinIO's published port; ``server`` (the MinIO container's or service's
    id) makes a new MinIO be checked again."""
    return AppAccess(
        "minio-app-access",
        endpoint=f"{cfg.published_host}:{cfg.minio_host_port}",
        server=server,
        root_user=cfg.minio_root_user.value,
        root_password=cfg.minio_root_password.value,
        secret_key=cfg.minio_app_secret_key.value,
        opts=opts,
    )
