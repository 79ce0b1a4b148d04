"""The notify hook (config ``notifyWebhook``): after every rollback, POST what happened as JSON. Its failure is
reported, never fatal: the rollback and its record stand whether or not anyone was told.

The body: ``{"event": "rollback", "stack", "entry": <the audit line and its fields>, "checklist": [{"name",
"ok", "detail"}], "incident": <sha256 or null>}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import httpx

from fetchml_infra import incident
from fetchml_infra.audit import Entry

TIMEOUT = 5.0


def payload(stack: str, entry: Entry | None, checklist: Sequence[tuple[str, bool, str]]) -> dict[str, Any]:
    fields = asdict(entry) if entry else None
    return {
        "event": "rollback",
        "stack": stack,
        "entry": {"line": entry.render(), **(fields or {})} if entry else None,
        "checklist": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checklist],
        "incident": incident.pinned(entry.reason) if entry else None,
    }


def shown(url: str) -> str:
    """The hook as printed: scheme and host only, since webhook paths and queries often carry a token."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number: shown as unknown, never raised (the hook must not fail)
        port = ":?"
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def send(url: str, body: dict[str, Any]) -> tuple[bool, str]:
    """(delivered, a line saying what happened); never raises."""
    try:
        r = httpx.post(url, json=body, timeout=TIMEOUT)
    except httpx.HTTPError as exc:  # its text names the cause, never the URL
        return False, f"notify hook {shown(url)} failed: {type(exc).__name__}: {exc}"
    except (httpx.InvalidURL, ValueError) as exc:
        return False, f"notify hook {shown(url)} failed: {type(exc).__name__}"
    if r.is_success:
        return True, f"notified {shown(url)}: HTTP {r.status_code}"
    return False, f"notify hook {shown(url)} failed: HTTP {r.status_code}"
