"""What was deployed when, and where a rollback goes: pure functions over parsed JSON and audit entries.

Two records answer these questions. Stack history (``pulumi stack history --json``) names the image of every
update, because the image is stack config. The audit chain says which changes of image passed their health
gate. Neither is edited here; both are only read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fetchml_infra.audit.manual import corrected
from fetchml_infra.config import PROJECT

NO_IMAGE = "none"
MOVES = ("deploy", "rollback", "destroy")  # destroy moves the stack to no image
_MESSAGE_FIELD = re.compile(r"\b(action|actor|reason)=([^\s|]+)")


@dataclass(frozen=True)
class Update:
    """One row of stack history."""

    kind: str
    result: str
    start_time: str
    image: str | None
    message: str
    action: str | None
    actor: str | None
    end_time: str = ""
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.kind == "update" and self.result == "succeeded"


def parse_history(raw: Sequence[Mapping[str, Any]], project: str = PROJECT) -> list[Update]:
    """Parse ``pulumi stack history --json`` (newest first) into Updates, keeping that order."""
    updates = []
    for item in raw:
        config = item.get("config") or {}
        image = config.get(f"{project}:image")
        if isinstance(image, Mapping):  # the Automation API returns {"value": ..., "secret": ...}
            image = image.get("value")
        message = str(item.get("message") or "")
        fields = dict(_MESSAGE_FIELD.findall(message))
        updates.append(
            Update(
                kind=str(item.get("kind", "")),
                result=str(item.get("result", "")),
                start_time=str(item.get("startTime", "")),
                image=str(image) if image else None,
                message=message,
                action=fields.get("action"),
                actor=fields.get("actor"),
                end_time=str(item.get("endTime", "")),
                reason=message.split(" reason=", 1)[1] if " reason=" in message else None,
            )
        )
    return updates


def update_message(action: str, image: str, actor: str, reason: str) -> str:
    """The update message the CLI records, so `history` can show action and actor for each row."""
    text = f"{action} {image} action={action} actor={actor}"
    return f"{text} reason={reason}" if reason else text


def rollback_target(updates: Iterable[Update], current_image: str | None) -> str | None:
    """The newest image that deployed successfully and is not ``current_image``; None if there is none.

    ``updates`` is newest first, as stack history lists them. A failed update never names a target.
    """
    for update in updates:
        if update.succeeded and update.image and update.image != current_image:
            return update.image
    return None


class ChainEntry(Protocol):
    """The fields of an audit entry that decide what a change of image is."""

    @property
    def action(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def to_image(self) -> str: ...
    @property
    def stack(self) -> str: ...


E = TypeVar("E", bound=ChainEntry)


class MoveEntry(ChainEntry, Protocol):
    @property
    def from_image(self) -> str: ...
    @property
    def reason(self) -> str: ...


M = TypeVar("M", bound=MoveEntry)


def classify(entries: Sequence[ChainEntry], stack: str, to_image: str) -> tuple[str, str]:
    """(action, from_image) for moving ``stack`` to ``to_image``, judged from the audit chain.

    ``from_image`` is the image the stack's newest entry moved to (whether it passed or not: after a failed
    deploy, the failed image is what is running). The move is a ``rollback`` when ``to_image`` passed its
    health gate on this stack before, and a ``deploy`` otherwise.
    """
    mine = _moves(entries, stack)
    from_image = mine[-1].to_image if mine else NO_IMAGE
    passed_before = any(e.outcome == "success" and e.to_image == to_image for e in mine)
    action = "rollback" if passed_before and to_image != from_image else "deploy"
    return action, from_image


def _moves(entries: Iterable[E], stack: str) -> list[E]:
    """The stack's entries that moved (or tried to move) its image; adoption, seals, corrections and the
    entries a correction names are not moves."""
    listed = list(entries)
    wrong = corrected(listed)
    return [e for e in listed if e.stack == stack and e.action in MOVES and getattr(e, "hash", None) not in wrong]


def last_entry(entries: Iterable[E], stack: str) -> E | None:
    """The stack's newest move in the chain, passed or failed."""
    mine = _moves(entries, stack)
    return mine[-1] if mine else None


def last_passed_to(entries: Iterable[E], stack: str, image: str) -> E | None:
    """The stack's newest move onto ``image`` that passed its health gate, if any."""
    passed = [e for e in _moves(entries, stack) if e.outcome == "success" and e.to_image == image != NO_IMAGE]
    return passed[-1] if passed else None


def denied(entries: Iterable[M], stack: str, reason: str) -> list[str]:
    """Images a rollback with ``reason`` (the automatic one) left because they failed their health gate, and
    that no later move passed on: the chain's own deniedImages, the same for every operator of a shared stack."""
    out: dict[str, None] = {}
    for e in _moves(entries, stack):
        if e.action == "rollback" and e.outcome == "success" and e.reason == reason:
            out[e.from_image] = None
        elif e.outcome == "success":
            out.pop(e.to_image, None)
    return list(out)


def last_passed(entries: Iterable[E], stack: str) -> E | None:
    """The stack's newest move that passed its health gate: where recovery goes back to (never a destroy)."""
    passed = [e for e in _moves(entries, stack) if e.outcome == "success" and e.action != "destroy"]
    return passed[-1] if passed else None


def accounted_for(entries: Sequence[ChainEntry], stack: str) -> tuple[str | None, str | None]:
    """The images the chain accounts for on the host: its last move's, and its last passed one's, which keeps
    serving beside a release that failed its gate (a failed gate never routes its release)."""
    last, passed = last_entry(entries, stack), last_passed(entries, stack)
    return (last.to_image if last else None, passed.to_image if passed else None)


@dataclass(frozen=True)
class HistoryRow:
    time: str
    kind: str
    result: str
    image: str | None
    action: str
    actor: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {k: getattr(self, k) for k in ("time", "kind", "result", "image", "action", "actor")}


def label_actions(updates: Sequence[Update]) -> list[HistoryRow]:
    """Rows newest first, each labelled deploy, rollback or config (no change of image).

    The CLI writes the action into the update message; for updates made with plain `pulumi up` it is worked
    out the same way the audit entry does: back to an image that succeeded before is a rollback.
    """
    rows: list[HistoryRow] = []
    passed: set[str] = set()
    previous: str | None = None
    for u in reversed(updates):
        if u.action:
            action = u.action
        elif u.kind != "update":
            action = u.kind
        elif u.image == previous:
            action = "config"
        else:
            action = "rollback" if u.image in passed else "deploy"
        rows.append(HistoryRow(u.start_time, u.kind, u.result, u.image, action, u.actor))
        if u.succeeded and u.image:
            passed.add(u.image)
        if u.kind == "update" and u.image:
            previous = u.image
    return rows[::-1]
