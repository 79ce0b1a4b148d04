"""check-sink's comparison of the local chain, the write-once sink and the stack outputs: plain data in, named
findings out. No I/O (``sink`` reads the bucket into a ``SinkView``).

Every gap is a finding (unlike CloudTrail, which lets a gap pass): a deploy record must never lose an entry.
Index ``i`` is the 0-based line of the log; the sink holds line ``i`` at ``entries/<stack>/<i:012d>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fetchml_infra.audit import checkpoint
from fetchml_infra.audit.line import _sha
from fetchml_infra.audit.scan import verify_bytes

KINDS = (
    "LOCAL_CHAIN_BROKEN",  # the local log does not verify
    "SINK_CHAIN_BROKEN",  # the sink's entries, in order, do not verify
    "MISSING_IN_SINK",  # a hole: the sink lacks i but holds a later index
    "EXTRA_IN_SINK",  # an object the local chain cannot explain: after a hole, or a key that is no index
    "FORK",  # both hold i, with different bytes
    "SINK_BEHIND_LOCAL",  # local entries not shipped yet (`audit sync` sends them)
    "LOCAL_BEHIND_SINK",  # the sink goes on past the local end: the log was cut off, or is an old copy
    "SINK_OVERWRITE_ATTEMPT",  # a key with several versions or a delete marker: someone tried to replace it
    "SINK_NOT_LOCKED",  # no COMPLIANCE retention, or one shorter than the policy
    "SINK_MOVED",  # an object whose metadata names another index or stack than its key
    "CHECKPOINT_BAD_SIGNATURE",  # no trusted key verifies a checkpoint
    "CHECKPOINT_MISMATCH",  # a checkpoint's head is not the chain's hash at that length
    "CHECKPOINT_CONFLICT",  # several checkpoints for one length that disagree
    "OUTPUTS_MISMATCH",  # the stack outputs' chain length/head are not the chain's
)


@dataclass(frozen=True)
class Finding:
    kind: str
    index: int | None
    detail: str

    def render(self, stack: str) -> str:
        return f"{self.kind}\t{stack}\t{'-' if self.index is None else self.index}\t{self.detail}"


@dataclass(frozen=True)
class SinkEntry:
    """One key under ``entries/<stack>/``: its latest body, what its metadata claims, and its history."""

    body: bytes
    meta_index: str | None
    meta_stack: str | None
    versions: int = 1
    delete_markers: int = 0
    mode: str | None = "COMPLIANCE"
    retain_until: datetime | None = None
    written: datetime | None = None
    trusted: bool = False  # found sound by an earlier check and unchanged since: lock and metadata not re-read


@dataclass
class SinkView:
    """What the sink holds for one stack."""

    entries: dict[int, SinkEntry] = field(default_factory=dict)
    strays: list[str] = field(default_factory=list)  # keys under entries/<stack>/ that are no index
    checkpoints: dict[int, list[str]] = field(default_factory=dict)  # length -> every version's note
    checkpoint_etags: dict[int, str] = field(default_factory=dict)  # length -> its one version's ETag
    bucket_lock: tuple[str | None, int | None] = ("COMPLIANCE", None)  # default (mode, days)


@dataclass(frozen=True)
class Policy:
    stack: str
    retention_days: int
    signers: dict[str, bytes]
    origin: str


def lines_of(data: bytes) -> list[bytes]:
    """The complete lines, each with its newline (a split on b"\\n" only: never on a \\r inside a line)."""
    return [line + b"\n" for line in data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]]


def _hash_of(line: bytes) -> str:
    return line.rstrip(b"\n")[-64:].decode(errors="replace")


def compare(local: bytes, sink: SinkView, policy: Policy, outputs: tuple[int, str] | None) -> list[Finding]:
    """Every finding, in the order of ``KINDS``."""
    out: list[Finding] = []
    lines = lines_of(local)
    n_local = len(lines)
    verdict = verify_bytes(local, allow_longer=True)
    if not verdict.ok:
        out.append(
            Finding("LOCAL_CHAIN_BROKEN", (verdict.first_bad_line or 1) - 1, f"{verdict.problem}: {verdict.detail}")
        )
    contiguous = 0
    while contiguous in sink.entries:
        contiguous += 1
    sink_bytes = b"".join(sink.entries[i].body for i in range(contiguous))
    sv = verify_bytes(sink_bytes, allow_longer=True)
    if not sv.ok:
        out.append(Finding("SINK_CHAIN_BROKEN", (sv.first_bad_line or 1) - 1, f"{sv.problem}: {sv.detail}"))
    beyond = sorted(i for i in sink.entries if i > contiguous)
    holes = range(contiguous, beyond[-1]) if beyond else range(0)
    out += [Finding("MISSING_IN_SINK", i, "the sink holds later entries but not this one") for i in holes
            if i not in sink.entries]  # fmt: skip
    after = beyond[-1] + 1 if beyond else contiguous  # past the sink's last object: not shipped yet
    out += [Finding("EXTRA_IN_SINK", i, "after a hole in the sink; the chain cannot reach it") for i in beyond]
    out += [Finding("EXTRA_IN_SINK", None, f"{key}: not an entry index") for key in sink.strays]
    fork = next((i for i in range(min(n_local, contiguous)) if sink.entries[i].body != lines[i]), None)
    if fork is not None:
        out.append(
            Finding(
                "FORK",
                fork,
                f"local line sha256 {_sha(lines[fork])[:12]}, sink {_sha(sink.entries[fork].body)[:12]}: the two "
                f"chains part here",
            )
        )
    if after < n_local:
        out.append(Finding("SINK_BEHIND_LOCAL", after, f"the sink lacks lines {after + 1}-{n_local}; run audit sync"))
    if contiguous > n_local:
        out.append(
            Finding(
                "LOCAL_BEHIND_SINK",
                n_local,
                f"the local log has {n_local} lines, the sink {contiguous}: another operator's entries not taken "
                f"in yet, or a log cut off or restored from an old copy; fetchml-infra audit sync takes them in",
            )
        )
    out += _objects(sink, policy)
    out += _checkpoints(sink, policy, lines if fork is None and contiguous <= n_local else lines_of(sink_bytes))
    if outputs is not None:
        length, head = outputs
        longest = lines if n_local >= contiguous else lines_of(sink_bytes)
        at = _hash_of(longest[length - 1]) if 0 < length <= len(longest) else ("0" * 64 if length == 0 else None)
        if at != head:
            out.append(
                Finding(
                    "OUTPUTS_MISMATCH",
                    length - 1 if length else None,
                    f"the stack outputs record {length} lines with head {head[:12]}; the chain has "
                    f"{len(longest)} lines and {'no line' if at is None else 'head ' + at[:12]} at {length}",
                )
            )
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(out, key=lambda f: (order[f.kind], -1 if f.index is None else f.index))


def _objects(sink: SinkView, policy: Policy) -> list[Finding]:
    out: list[Finding] = []
    mode, days = sink.bucket_lock
    if mode != "COMPLIANCE":
        out.append(Finding("SINK_NOT_LOCKED", None, f"the bucket's default lock is {mode or 'none'}, not COMPLIANCE"))
    for i, e in sorted(sink.entries.items()):
        if e.versions > 1 or e.delete_markers:
            what = (
                "a delete marker over it: someone tried to delete a write-once entry"
                if e.delete_markers
                else f"{e.versions} versions: someone wrote a write-once entry again"
            )
            out.append(Finding("SINK_OVERWRITE_ATTEMPT", i, what))
        if e.trusted:
            continue
        short = e.retain_until is None or (
            e.written is not None and e.retain_until < e.written + timedelta(days=policy.retention_days) - timedelta(1)
        )
        if e.mode != "COMPLIANCE" or short:
            until = e.retain_until.date().isoformat() if e.retain_until else "none"
            out.append(
                Finding(
                    "SINK_NOT_LOCKED",
                    i,
                    f"retention {e.mode or 'none'} until {until}; the policy asks COMPLIANCE for "
                    f"{policy.retention_days} days",
                )
            )
        if e.meta_index != str(i) or e.meta_stack != policy.stack:
            out.append(
                Finding(
                    "SINK_MOVED",
                    i,
                    f"its metadata says index {e.meta_index}, stack {e.meta_stack}: it was copied here from "
                    f"another place",
                )
            )
    return out


def _checkpoints(sink: SinkView, policy: Policy, chain: list[bytes]) -> list[Finding]:
    out: list[Finding] = []
    for length, notes in sorted(sink.checkpoints.items()):
        heads: set[str] = set()
        for note in notes:
            try:
                cp, _ = checkpoint.verify(note, policy.signers)
            except checkpoint.CheckpointError as exc:
                out.append(Finding("CHECKPOINT_BAD_SIGNATURE", length, str(exc)))
                continue
            heads.add(cp.head)
            if cp.length != length or cp.origin != policy.origin:
                out.append(
                    Finding("SINK_MOVED", length, f"checkpoint of {cp.origin} at {cp.length}, stored at {length}")
                )
            elif not 0 < length <= len(chain):
                out.append(
                    Finding(
                        "CHECKPOINT_MISMATCH",
                        length,
                        f"signed for {length} lines; the chain has {len(chain)} (an append during this check? "
                        f"run it again)",
                    )
                )
            elif _hash_of(chain[length - 1]) != cp.head:
                out.append(
                    Finding(
                        "CHECKPOINT_MISMATCH",
                        length,
                        f"signed head {cp.head[:12]}, the chain's line {length} hashes to "
                        f"{_hash_of(chain[length - 1])[:12]}",
                    )
                )
        if len(heads) > 1:
            out.append(Finding("CHECKPOINT_CONFLICT", length, f"{len(heads)} different signed heads for one length"))
    return out
