"""The ops S3 endpoint: where shared state and the audit sink live when a team shares a stack.

``FETCHML_OPS_ENV`` names a file of ``KEY=VALUE`` lines (``scripts/ops-store.sh`` writes one for the local
stand-in): ``FETCHML_OPS_S3`` (the endpoint) and the usual ``AWS_*`` credentials. ``fetchml_infra.offline``
reads it, so the Pulumi backend becomes ``s3://fetchml-state`` on that endpoint; without it the backend stays
the checkout's file backend. ``python -m fetchml_infra.ops_store`` creates the two buckets.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from fetchml_infra import lock
from fetchml_infra.audit.target import SinkError

STATE_BUCKET = "fetchml-state"
AUDIT_BUCKET = "fetchml-audit"
OPS_PROFILE = "fetchml-ops"


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of ``path`` (comments and blank lines skipped); ValueError naming a bad line."""
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"FETCHML_OPS_ENV {path} line {n}: expected KEY=VALUE, saw {raw[:40]!r}")
        out[key.strip()] = value.strip()
    return out


def backend_url(endpoint: str) -> str:
    """Pulumi's DIY backend on an S3 endpoint (gocloud's s3blob URL, path-style for MinIO)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"FETCHML_OPS_S3: expected http(s)://host[:port], saw {endpoint!r}")
    # These four parameters are the ones both the oldest and the current supported CLI accept (gocloud with AWS
    # SDK v1 and v2); `use_path_style` or `awssdk=v2` would break the oldest.
    tls = "" if parts.scheme == "https" else "&disableSSL=true"
    return f"s3://{STATE_BUCKET}?endpoint={parts.netloc}&region=us-east-1&s3ForcePathStyle=true{tls}"


def s3_backend(url: str) -> tuple[str, str] | None:
    """(endpoint URL, bucket) of an ``s3://`` backend URL with an endpoint, as ``backend_url`` writes it (and
    as gocloud reads it); None for other backends."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        return None
    query = dict(parse_qsl(parts.query))
    endpoint = query.get("endpoint", "")
    if endpoint and "://" not in endpoint:
        secure = query.get("disableSSL", query.get("disable_https", "false")).lower() != "true"
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    return endpoint or f"https://s3.{query.get('region', 'us-east-1')}.amazonaws.com", parts.netloc


def engine_locks(url: str, stack: str) -> list[lock.EngineLock]:
    """Pulumi's lock objects for ``stack`` in an S3 backend (the same layout and content as a file backend's,
    see ``lock.engine_locks``); SinkError when the bucket cannot be listed."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    where = s3_backend(url)
    if where is None:
        return []
    endpoint, bucket = where
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    found = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=".pulumi/locks/"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                folder = key.removeprefix(".pulumi/locks/").rpartition("/")[0]
                if folder == stack or re.fullmatch(rf"organization/[^/]+/{re.escape(stack)}", folder):
                    try:
                        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                            continue  # unlocked while we listed
                        raise  # AccessDenied and the like: a lock we cannot read is no proof of none
                    found.append(lock.parse_engine_lock(Path(f"s3://{bucket}/{key}"), data))
    except (BotoCoreError, ClientError) as exc:
        raise SinkError(f"state backend {endpoint}/{bucket}: listing or reading its locks failed: {exc}") from None
    return found


def layer(env: dict[str, str]) -> None:
    """Add the ops file's settings under ``env`` (values already there win) and the S3 backend they imply."""
    name = env.get("FETCHML_OPS_ENV")
    if not name:
        return
    path = Path(name).expanduser()
    if not path.is_file():
        raise ValueError(f"FETCHML_OPS_ENV: expected a file of KEY=VALUE lines, found nothing at {path}")
    for key, value in read_env_file(path).items():
        env.setdefault(key, value)
    if env.get("FETCHML_OPS_S3"):
        env.setdefault("PULUMI_BACKEND_URL", backend_url(env["FETCHML_OPS_S3"]))
        # Without credentials the AWS SDKs ask the EC2 metadata address: never leave this host for that.
        env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        env.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")  # MinIO sends none; silences the CLI


def shell_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """What a shell needs for plain `pulumi` on the ops store, without the secret key in its printed exports:
    an AWS shared credentials file (mode 600) beside the ops file, and the profile in it."""
    name, key, secret = env.get("FETCHML_OPS_ENV"), env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not (name and key and secret):
        return {}
    path = Path(name).expanduser().with_name("aws-credentials")
    text = f"[{OPS_PROFILE}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    if not path.is_file() or path.read_text() != text:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return {"AWS_SHARED_CREDENTIALS_FILE": str(path), "AWS_PROFILE": OPS_PROFILE}


def ensure_buckets(env: Mapping[str, str]) -> list[str]:
    """Create the state bucket and the lock-enabled audit bucket when missing; what was done, one line each."""
    import boto3
    from botocore.exceptions import ClientError

    from fetchml_infra.audit.sink import Sink
    from fetchml_infra.audit.target import Target

    endpoint = env["FETCHML_OPS_S3"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=env.get("AWS_REGION", "us-east-1"))
    try:
        s3.create_bucket(Bucket=STATE_BUCKET)
        done = [f"created {endpoint}/{STATE_BUCKET} (Pulumi state)"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
        done = [f"found {endpoint}/{STATE_BUCKET} (Pulumi state)"]
    done.append(Sink(Target(endpoint, AUDIT_BUCKET), "-").create_bucket() + " (audit sink)")
    return done


def main() -> int:
    env = dict(os.environ)
    layer(env)
    os.environ.update(env)
    for line in ensure_buckets(env):
        print(f"[ops-store] {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
