"""Where a stack's write-once audit sink is (config ``auditSink``) and how reaching it fails: kept apart from the
S3 client, so that reading config or starting the CLI does not load boto3."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_RETENTION_DAYS = 2190  # six years: HIPAA's documentation retention (45 CFR 164.316(b)(2)(i))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SinkError(Exception):
    """The sink cannot be reached or is not set up as a sink; the message says which and what to do."""


class Contested(SinkError):
    """Another writer's create of the same object met ours and the outcome could not be read: the index may be
    theirs, so the entry must not be written locally alone."""


class Taken(Exception):
    """Another writer already created the object at this index."""


@dataclass(frozen=True)
class Target:
    """Where a stack's sink is: config ``auditSink`` is ``http(s)://host[:port]/bucket``."""

    endpoint: str
    bucket: str
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def parse(cls, url: str, retention_days: int = DEFAULT_RETENTION_DAYS) -> Target:
        parts = urlsplit(url)
        bucket = parts.path.strip("/")
        if parts.scheme not in ("http", "https") or not parts.netloc or not bucket or "/" in bucket:
            raise ValueError(f"expected http(s)://host[:port]/bucket (an S3 endpoint and a bucket), saw {url!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname or ""):
            raise ValueError(
                f"expected https:// (entries and the sink's key cross the network; plain http is for a loopback "
                f"endpoint only), saw {url!r}"
            )
        return cls(f"{parts.scheme}://{parts.netloc}", bucket, retention_days)

    def url(self) -> str:
        return f"{self.endpoint}/{self.bucket}"
