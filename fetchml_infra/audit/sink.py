"""The write-once sink: an S3 bucket with Object Lock that holds every line of a stack's chain, and a signed
checkpoint after each append. The thin S3 edge (boto3); what to send and what the findings are is decided in
``shipping`` and ``findings``.

Layout: ``entries/<stack>/<index:012d>`` holds line ``index`` (0-based) of the local log, its exact bytes with
the newline; ``checkpoints/<stack>/<length:012d>`` a signed note of (origin, length, head). Every object is
written create-only (``If-None-Match: *``), with COMPLIANCE retention: nobody, the bucket's owner included, can
delete or overwrite it before the retention ends. A second writer at an index gets 412 and re-syncs.

Credentials come from boto3's usual places (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile): give the
deploy host a key that can put and read, never delete or bypass retention.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from fetchml_infra.audit import sink_view
from fetchml_infra.audit.findings import SinkView
from fetchml_infra.audit.target import Contested, SinkError, Taken, Target

_BUSY_RETRIES = 6  # tries of a create that meets another create of the same key in flight (409)


_MACHINE_ROLES = ("iam-role", "container-role", "assume-role-with-web-identity")


class _Busy(Exception):
    """409 ConditionalRequestConflict: another conditional write of this key is in progress."""


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class Sink:
    """One stack's entries and checkpoints in the sink bucket."""

    def __init__(self, target: Target, stack: str) -> None:
        self.target, self.stack = target, stack
        self.origin = f"{target.bucket}/{stack}"

    @cached_property
    def _s3(self) -> Any:
        """The S3 client, made on first use: a profile that does not exist is a SinkError of the first call,
        handled as any sink that cannot be used (a HIPAA stack refuses, others warn)."""
        try:
            core = botocore.session.get_session()
            if core.get_scoped_config().get("credential_source"):
                raise SinkError(
                    f"audit sink {self.target.url()}: the AWS profile takes its credentials from the machine "
                    f"(credential_source); give the sink a key of its own"
                )
            resolver = core.get_component("credential_provider")
            for name in _MACHINE_ROLES:  # never a machine's role: a sink key is given on purpose
                resolver.remove(name)
            session = boto3.session.Session(botocore_session=core)  # reads the environment and profiles once
            return session.client(
                "s3",
                endpoint_url=self.target.endpoint,
                region_name=session.region_name or "us-east-1",
                config=Config(
                    connect_timeout=3,
                    read_timeout=15,
                    retries={"max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"},
                    max_pool_connections=sink_view.PARALLEL,
                ),
            )
        except BotoCoreError as exc:  # a named profile that does not exist, a bad endpoint
            raise SinkError(f"audit sink {self.target.url()}: cannot set up its client: {exc}") from None

    def key(self, index: int) -> str:
        return f"entries/{self.stack}/{index:012d}"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call; a body is read inside it, so that a connection cut mid-body is a SinkError too."""
        try:
            got = fn(Bucket=self.target.bucket, **kwargs)
            if isinstance(got, dict) and "Body" in got:
                got = {**got, "Body": got["Body"].read()}
            return got
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if _status(exc) == 409 and code == "ConditionalRequestConflict":
                raise _Busy(kwargs.get("Key", "")) from None
            if _status(exc) == 412 or code == "PreconditionFailed":
                raise Taken(kwargs.get("Key", "")) from None
            if code == "NoSuchKey" or (_status(exc) == 404 and code != "NoSuchBucket"):
                raise KeyError(kwargs.get("Key", "")) from None
            raise SinkError(f"audit sink {self.target.url()}: {what} failed: {code or _status(exc)}: {exc}") from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise SinkError(
                f"audit sink {self.target.url()}: no credentials for it ({what}): {exc}; set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from None
        except (BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()} is unreachable ({what}): {exc}") from None

    # -- writing ---------------------------------------------------------------------------------------
    def _put(self, key: str, body: bytes, metadata: dict[str, str], *, same_bytes_ok: bool = False) -> None:
        """Create ``key``. Done as well when it is this call's own earlier try whose answer was lost (its
        ``writer`` token), or, with ``same_bytes_ok``, holds exactly ``body``; Taken when another writer's."""
        until = datetime.now(UTC) + timedelta(days=self.target.retention_days)
        token = uuid.uuid4().hex
        for attempt in range(_BUSY_RETRIES):
            try:
                self._call(f"writing {key}", self._s3.put_object, Key=key, Body=body, IfNoneMatch="*",
                           ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                           Metadata={**metadata, "writer": token})  # fmt: skip
                return
            except _Busy:  # another create of this key is in flight: its outcome decides
                time.sleep(0.1 * (attempt + 1))
            except Taken:
                pass
            try:
                got = self._call(f"reading {key}", self._s3.get_object, Key=key)
            except KeyError:  # the other create failed or is not visible yet: try ours again
                continue
            except SinkError as exc:  # someone else's create met ours, and now we cannot see whose won
                raise Contested(f"{exc} (after another writer's create of {key} met ours)") from None
            if got.get("Metadata", {}).get("writer") == token or (same_bytes_ok and got["Body"] == body):
                return
            raise Taken(key)
        raise Contested(f"audit sink {self.target.url()}: {key} stayed busy with another writer's create")

    def put_entry(self, index: int, line: bytes) -> None:
        """Create line ``index``; Taken if another writer was first."""
        meta = {"index": str(index), "stack": self.stack, "sha256": hashlib.sha256(line).hexdigest()}
        self._put(self.key(index), line, meta)

    def put_checkpoint(self, length: int, note: str) -> None:
        meta = {"length": str(length), "stack": self.stack}
        self._put(f"checkpoints/{self.stack}/{length:012d}", note.encode(), meta, same_bytes_ok=True)

    def put_incident(self, sha256: str, text: bytes) -> None:
        """An incident report, content-addressed: one already there under its hash is the same report."""
        self._put(f"incidents/{self.stack}/{sha256}", text, {"stack": self.stack, "sha256": sha256}, same_bytes_ok=True)

    # -- reading ---------------------------------------------------------------------------------------
    def sha256_at(self, index: int) -> str | None:
        """The sha256 of line ``index`` as its metadata records it, or None when the sink lacks it."""
        try:
            head = self._call(f"reading {self.key(index)}", self._s3.head_object, Key=self.key(index))
        except KeyError:
            return None
        return str(head.get("Metadata", {}).get("sha256", ""))

    def _keys(self, prefix: str, after: str = "") -> Iterator[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.target.bucket, Prefix=prefix, StartAfter=after
        )
        try:
            for page in pages:
                yield from (o["Key"] for o in page.get("Contents", []))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()}: listing {prefix} failed: {exc}") from None

    def body(self, key: str, version: str | None = None) -> bytes:
        extra = {"VersionId": version} if version else {}
        return bytes(self._call(f"reading {key}", self._s3.get_object, Key=key, **extra)["Body"])

    def lines_from(self, index: int) -> list[bytes]:
        """The sink's lines at ``index`` and after, as long as they are contiguous. Read key by key: a GET sees
        a write at once, where MinIO's listing may lag behind it (a writer that just lost a race must see the
        winner's line)."""
        out: list[bytes] = []
        while True:
            try:
                out.append(self.body(self.key(index + len(out))))
            except KeyError:
                return out

    def length(self) -> int:
        """How many contiguous lines the sink holds from index 0: a listing, then GETs past where it ends."""
        n = 0
        for key in self._keys(f"entries/{self.stack}/"):
            if key != self.key(n):
                break
            n += 1
        while self.sha256_at(n) is not None:
            n += 1
        return n

    def view(
        self, known: Mapping[int, bytes] | None = None, verified: tuple[int, Mapping[int, str]] = (0, {})
    ) -> SinkView:
        """Everything check-sink compares (``sink_view.read``)."""
        return sink_view.read(self, known or {}, verified)

    def _bucket_lock(self) -> tuple[str | None, int | None]:
        try:
            got = self._s3.get_object_lock_configuration(Bucket=self.target.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise SinkError(
                    f"audit sink {self.target.url()}: no bucket {self.target.bucket!r}; create it with "
                    f"fetchml-infra audit init-sink --stack {self.stack}"
                ) from None
            if code in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
                return None, None
            raise SinkError(f"audit sink {self.target.url()}: reading its lock failed: {code}: {exc}") from None
        except (BotoCoreError, OSError) as exc:
            raise SinkError(f"audit sink {self.target.url()} is unreachable: {exc}") from None
        rule = got.get("ObjectLockConfiguration", {}).get("Rule", {}).get("DefaultRetention", {})
        days = rule.get("Days") or (rule.get("Years", 0) * 365) or None
        return rule.get("Mode"), days

    # -- setting up ------------------------------------------------------------------------------------
    def create_bucket(self) -> str:
        """Create the bucket with Object Lock and a COMPLIANCE default, or check an existing one's lock."""
        try:
            self._call("creating the bucket", self._s3.create_bucket, ObjectLockEnabledForBucket=True)
            made = True
        except SinkError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc) and "BucketAlreadyExists" not in str(exc):
                raise
            made = False
        if made:
            self._call(
                "setting the default retention",
                self._s3.put_object_lock_configuration,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": self.target.retention_days}},
                },
            )
        mode, days = self._bucket_lock()
        if mode != "COMPLIANCE":
            raise SinkError(
                f"audit sink {self.target.url()}: the bucket exists without COMPLIANCE object lock (saw {mode}); "
                f"Object Lock can only be enabled when a bucket is created: use a new bucket"
            )
        return f"{'created' if made else 'found'} {self.target.url()}: object lock COMPLIANCE, default {days} days"
