"""One timeline of a stack: its audit entries and its Pulumi updates, merged, newest first (pure).

The audit chain is the record of every change of the running image, manual, adopted and failed ones
included; an update that wrote an entry is shown by that entry, so a move appears once. Updates that wrote
none (a config change, a refused or failed update that moved nothing, a refresh) are rows of their own.
Times are UTC with a ``Z``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from fetchml_infra.history import MOVES, NO_IMAGE, ChainEntry, Update, label_actions

# An entry is written while its update runs; the engine's own clock and the entry's second-resolution
# stamp can differ by a little.
SLACK = timedelta(seconds=5)
NO_END = timedelta(minutes=30)


class Entry(ChainEntry, Protocol):
    """The fields of an audit entry (fetchml_infra.audit.Entry) that a timeline row shows."""

    @property
    def time(self) -> str: ...
    @property
    def from_image(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Row:
    time: str
    source: str  # "audit" (an entry of the chain) | "update" (a Pulumi update that wrote no entry)
    action: str
    from_image: str
    to_image: str
    outcome: str  # success | failure
    actor: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "time": self.time,
            "source": self.source,
            "action": self.action,
            "from": self.from_image,
            "to": self.to_image,
            "image": self.to_image,
            "outcome": self.outcome,
            "result": "succeeded" if self.outcome == "success" else "failed",
            "actor": self.actor,
            "reason": self.reason,
        }


def parse_time(text: str) -> datetime | None:
    """An ISO time as aware UTC (a naive one is taken as UTC); None when ``text`` is not one."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def _z(t: datetime | None, fallback: str) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else fallback


def merge(updates: Sequence[Update], entries: Iterable[Entry], stack: str) -> list[Row]:
    """The stack's timeline, newest first. ``updates`` newest first (stack history), ``entries`` oldest first."""
    mine = [e for e in entries if e.stack == stack]
    rows = [Row(e.time, "audit", e.action, e.from_image, e.to_image, e.outcome, e.actor, e.reason or "-") for e in mine]
    unmatched = [(parse_time(e.time), e) for e in mine if e.action in MOVES]
    labels = label_actions(updates)
    previous = NO_IMAGE
    for u, label in reversed(list(zip(updates, labels, strict=True))):
        start = parse_time(u.start_time)
        end = parse_time(u.end_time) or (start + NO_END if start else None)
        image = u.image or NO_IMAGE
        match = next(
            (
                pair
                for pair in unmatched
                if pair[1].to_image == image and start and end and pair[0] and start - SLACK <= pair[0] <= end + SLACK
            ),
            None,
        )
        if match is not None:
            unmatched.remove(match)
        else:
            outcome = "success" if u.result == "succeeded" else "failure"
            actor, reason = label.actor or "-", u.reason or "-"
            rows.append(Row(_z(start, u.start_time), "update", label.action, previous, image, outcome, actor, reason))
        if u.kind == "update" and u.image and u.result == "succeeded":
            previous = u.image
    # Newest first; at the same second, the later-recorded row first (audit rows are in chain order).
    ranked = sorted(enumerate(rows), key=lambda ir: (parse_time(ir[1].time) or _EPOCH, ir[0]), reverse=True)
    return [row for _, row in ranked]


_EPOCH = datetime.min.replace(tzinfo=UTC)
