"""The thin edge to the outside world for the CLI: the Pulumi Automation API, the Docker CLI and Redis.

Nothing here decides anything; fetchml_infra.procedure does, over what these functions return.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pulumi import automation as auto

from fetchml_infra import engine, history, host, offline, passphrase, review, state_layout, toolchain
from fetchml_infra.config import PROJECT, StackConfig, parse, split_project_keys
from fetchml_infra.offline import REPO_ROOT


def project_home() -> Path:
    """The Pulumi project the CLI drives: $FETCHML_PROJECT_DIR, else this checkout."""
    return Path(os.environ.get("FETCHML_PROJECT_DIR") or REPO_ROOT)


def unknown_stack(name: str, names: Sequence[str], project_dir: Path) -> str:
    """A mistyped --stack: the stacks there are, the likely one first; creating one is the last resort."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    there = f"its stacks: {', '.join(sorted(names))}" if names else "it has no stacks yet"
    return (
        f"--stack: no stack named '{name}' in {project_dir} ({there}){guess} "
        f"A new stack is created with `pulumi stack init {name}`."
    )


class OperatorError(Exception):
    """A refusal with a message for the operator; ``code`` is the CLI's exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Policy:
    """The fetchml-safety policy pack (policy/) and its config, run on every CLI preview and up."""

    allow_public_bind: bool

    def args(self) -> list[str]:
        """Only used by a Stack, whose construction checked the CLI (cli_version is cached per process)."""
        pack = toolchain.policy_pack(toolchain.cli_version())
        return ["--policy-pack", pack, "--policy-pack-config", self.write_config()]

    def write_config(self) -> str:
        """The pack's config as the engine takes it: a JSON file (written under .state/)."""
        config = REPO_ROOT / ".state" / "policy-config" / f"allow-public-bind-{self.allow_public_bind}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"loopback-ports": {"allowPublicBind": self.allow_public_bind}}))
        return str(config)


T = TypeVar("T")
_STATE_READS = 5  # tries of a stack's state while another engine may be writing it


def _state_read(name: str, read: Callable[[], T]) -> T:
    """``read`` of a stack's state, again after a moment when a running engine was rewriting the state file (a
    read in that instant sees it empty: "failed to load checkpoint: EOF"); OperatorError when it stays so."""
    for attempt in range(_STATE_READS):
        try:
            return read()
        except auto.errors.StackNotFoundError:
            raise
        except auto.errors.CommandError as exc:
            if "failed to load checkpoint" not in str(exc):
                raise
            if attempt == _STATE_READS - 1:
                said = [line.strip().removeprefix("stderr: ") for line in str(exc).splitlines() if line.strip()]
                raise OperatorError(f"could not read stack '{name}''s state: {said[-1]}; run again") from exc
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class Stack:
    """One stack of the FetchML project, driven through the Automation API."""

    def __init__(self, name: str, project_dir: Path | None = None) -> None:
        self.name = name
        self.project_dir = project_dir or project_home()
        self._config: tuple[dict[str, str], frozenset[str]] | None = None
        try:
            cli = toolchain.cli_version()
        except RuntimeError as exc:
            raise OperatorError(str(exc)) from exc
        backend = offline.backend_dir(os.environ)
        legacy = state_layout.refusal(backend, name, cli)
        if legacy:
            raise OperatorError(legacy)
        if backend is not None and state_layout.layout(backend).kind == "legacy":  # this CLI still reads it
            print(f"note: {state_layout.advice(backend, name)}", file=sys.stderr)
        try:
            self._stack = _state_read(name, lambda: auto.select_stack(stack_name=name, work_dir=str(self.project_dir)))
        except auto.errors.StackNotFoundError as exc:
            names = [s.name for s in auto.LocalWorkspace(work_dir=str(self.project_dir)).list_stacks()]
            raise OperatorError(unknown_stack(name, names, self.project_dir)) from exc

    def raw_config(self) -> tuple[dict[str, str], frozenset[str]]:
        """This project's keys and which of them are secret; read once, then kept in step with set/unset
        (each read is a `pulumi` run, and the rollback path is timed)."""
        if self._config is None:
            config = self._stack.get_all_config()
            values = split_project_keys({k: v.value for k, v in config.items()})
            secrets = frozenset(split_project_keys({k: "" for k, v in config.items() if v.secret}))
            self._config = (values, secrets)
        return dict(self._config[0]), self._config[1]

    def config(self, **overrides: str) -> StackConfig:
        values, secrets = self.raw_config()
        values.update(overrides)
        cfg = parse(self.name, values, secrets, dev_passphrase=self.dev_passphrase())
        host.use_engine(cfg)
        return cfg

    def dev_passphrase(self) -> bool:
        """Whether this stack's secrets are under the development passphrase (prod and HIPAA refuse it)."""
        return passphrase.uses_dev(passphrase.stack_file(self.project_dir, self.name), os.environ)

    def audit_log(self, cfg: StackConfig) -> str:
        return cfg.audit_log_path(self.project_dir)

    def set(self, **values: str) -> None:
        """Set plain (non-secret) keys in one `pulumi config set-all`."""
        self._stack.set_all_config({f"{PROJECT}:{k}": auto.ConfigValue(value=v) for k, v in values.items()})
        if self._config is not None:
            self._config[0].update(values)

    def unset(self, key: str) -> None:
        values, _ = self.raw_config()
        if key in values:
            self._stack.remove_config(f"{PROJECT}:{key}")
            if self._config is not None:
                self._config[0].pop(key, None)

    def pulumi(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A plain `pulumi` command on this stack (state and stack housekeeping, no engine events)."""
        cmd = ["pulumi", *args, "--stack", self.name, "--non-interactive", "--color", "never"]
        return subprocess.run(cmd, cwd=self.project_dir, capture_output=True, text=True, timeout=300)

    def run(self, args: list[str], on_output: Callable[[str], None] = print) -> engine.Run:
        """One engine run of this stack (up, preview, refresh), with its structured events. With
        $FETCHML_ENGINE_LOG set, Pulumi's own progress goes to that file instead of the terminal."""
        log = os.environ.get("FETCHML_ENGINE_LOG")
        if not log:
            return engine.run(args, stack=self.name, cwd=self.project_dir, on_output=on_output)
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n$ pulumi {' '.join(args)} --stack {self.name}\n")
            return engine.run(args, stack=self.name, cwd=self.project_dir, on_output=lambda line: print(line, file=out))

    def up(
        self, message: str, policy: Policy, on_output: Callable[[str], None] = print, replace: Sequence[str] = ()
    ) -> engine.Run:
        """`pulumi up` with the policy pack, streaming Pulumi's own progress; a failed update is a result.
        ``replace``: URNs to replace even if unchanged (recover: containers the state names but Docker lost)."""
        forced = [arg for urn in replace for arg in ("--replace", urn)]
        args = ["up", "--yes", "--skip-preview", "--message", message, *self._refresh(), *policy.args(), *forced]
        return self.run(args, on_output)

    def _refresh(self) -> list[str]:
        """A swarm changes specs and moves tasks by itself (a hand-run `docker service rollback`, a dead node):
        its stacks read the cluster first, so a preview shows the drift and an up converges it."""
        return ["--refresh"] if self.config().target == "swarm" else []

    def refresh(self, on_output: Callable[[str], None] = print) -> engine.Run:
        return self.run(["refresh", "--yes", "--skip-preview"], on_output)

    def deployment(self) -> dict[str, Any]:
        """The `deployment` of `pulumi stack export`: resources (with ids) and any pending operations."""
        return dict(_state_read(self.name, self._stack.export_stack).deployment or {})

    def import_deployment(self, deployment: dict[str, Any]) -> None:
        state = self._stack.export_stack()
        state.deployment = deployment
        self._stack.import_stack(state)

    def preview_steps(self, policy: Policy) -> tuple[list[review.Step], list[str]]:
        """The steps `pulumi preview` plans (other than 'same'), and the errors it reported, if it failed."""
        run = self.run(["preview", *self._refresh(), *policy.args()], on_output=lambda _line: None)
        steps, errors = review.plan(run.events)
        if not run.ok and not errors:
            errors.append((run.stderr.strip().splitlines() or [f"pulumi preview: exit {run.returncode}"])[-1])
        return steps, errors

    def protected(self) -> list[str]:
        """Names of the resources protected in the current state."""
        resources = (_state_read(self.name, self._stack.export_stack).deployment or {}).get("resources", [])
        return sorted(r["urn"].rsplit("::", 1)[1] for r in resources if r.get("protect"))

    def history(self) -> list[history.Update]:
        rows = [
            {
                "kind": u.kind,
                "result": u.result,
                "startTime": u.start_time.isoformat() if u.start_time else "",
                "endTime": u.end_time.isoformat() if u.end_time else "",
                "message": u.message,
                "config": {k: v.value for k, v in (u.config or {}).items()},
            }
            for u in _state_read(self.name, self._stack.history)
        ]
        return history.parse_history(rows)

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in _state_read(self.name, self._stack.outputs).items()}


def image_present(image: str) -> bool:
    """Is ``image`` in the local Docker engine? (Rollback targets are kept locally by the program.)"""
    docker = shutil.which("docker")
    if docker is None:
        raise OperatorError("the docker client is not on PATH; run scripts/bootstrap", code=2)
    return subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode == 0


def pull(image: str) -> tuple[bool, str]:
    docker = shutil.which("docker") or "docker"
    done = subprocess.run([docker, "pull", image], capture_output=True, text=True)
    return done.returncode == 0, (done.stderr or done.stdout).strip()[-300:]
