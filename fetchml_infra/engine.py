"""Run one `pulumi up | preview | refresh` and keep what the engine said in its structured event log.

The CLI runs the engine itself (the Automation API does the same: `pulumi <cmd> --event-log FILE`) for three
reasons:

- the events are read once the engine has exited, so a reader can never die on a half-written line;
- the engine runs in its own session, so a Ctrl-C at the terminal reaches only the CLI, which passes it on
  exactly once: the engine then cancels gracefully (finishes the steps in flight, saves its state, releases
  its lock) instead of dying between the delete and the create of a container. A second Ctrl-C is passed on
  too, and the engine stops at once, as Pulumi documents;
- if the CLI itself is killed, the engine goes on to the end of the update (its output goes to a file the
  CLI tails, not to a pipe that would break), so the health gate and the audit entry still run.

Nothing here decides anything: fetchml_infra.outcome classifies the events.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

Event = dict[str, Any]


@dataclass
class Run:
    """What one engine run left behind: its exit status, its events and its error output."""

    command: str
    pid: int
    returncode: int
    events: list[Event]
    stderr: str
    interrupted_by: list[str] = field(default_factory=list)  # signals the CLI received and passed on

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def killed_by(self) -> int | None:
        """The signal that ended the engine, if one did (a negative return code)."""
        return -self.returncode if self.returncode < 0 else None


def read_events(path: Path) -> list[Event]:
    """The JSON events of an event log; a torn last line (the engine was killed mid-write) is left out."""
    events: list[Event] = []
    if not path.exists():
        return events
    for line in path.read_bytes().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


@contextmanager
def _passing_signals_to(process: subprocess.Popen[bytes], seen: list[str]) -> Iterator[None]:
    """While the engine runs, SIGINT and SIGTERM to the CLI become a SIGINT to the engine."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        seen.append(signal.Signals(signum).name)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(
    args: Sequence[str],
    *,
    stack: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] = print,
) -> Run:
    """Run `pulumi ARGS --stack STACK --non-interactive --event-log ...`, streaming its output line by line."""
    with tempfile.TemporaryDirectory(prefix="fetchml-events-") as tmp:
        log = Path(tmp) / "events.jsonl"
        cmd = ["pulumi", *args, "--stack", stack, "--non-interactive", "--color", "never", "--event-log", str(log)]
        # PULUMI_DEBUG_COMMANDS unlocks --event-log on the older CLIs, where the flag is still hidden.
        full_env = {**(os.environ if env is None else env), "PULUMI_DEBUG_COMMANDS": "true"}
        seen: list[str] = []
        # The engine writes to a file the CLI tails, not to a pipe: a killed CLI must not take the engine
        # with it (a write to a pipe nobody reads kills the writer).
        with open(Path(tmp) / "out", "w+b") as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=err, start_new_session=True)
            with open(out.name, "rb") as tail, _passing_signals_to(process, seen):
                while True:
                    done = process.poll() is not None
                    for raw in tail.readlines():
                        on_output(raw.decode(errors="replace").rstrip("\n"))
                    if done:
                        break
                    time.sleep(0.05)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        return Run(args[0], process.pid, process.returncode, read_events(log), stderr, seen)
