"""The thin edge to the outside world for the CLI: the Pulumi Automation API, the Docker CLI and Redis.

Nothing here decides anything; fetchml_infra.procedure does, over what these functions return.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from fetchml_infra import engine, history, review
from fetchml_infra.config import PROJECT, StackConfig, parse, split_project_keys
from fetchml_infra.offline import REPO_ROOT

QUEUE_KEYS = {
    "pending": ("llen", "fetchml:queue:pending"),
    "running": ("llen", "fetchml:queue:running"),
    "failed": ("llen", "fetchml:queue:failed"),
    "done": ("scard", "fetchml:jobs:done"),
}


PROTECTED_REFUSAL = re.compile(
    r'unable to (replace|delete) resource "([^"]+)"\s+as it is currently marked for protection'
)


def project_home() -> Path:
    """The Pulumi project the CLI drives: $FETCHML_PROJECT_DIR, else this checkout."""
    return Path(os.environ.get("FETCHML_PROJECT_DIR") or REPO_ROOT)


class OperatorError(Exception):
    """A refusal with a message for the operator; ``code`` is the CLI's exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Policy:
    """The fetchml-safety policy pack (policy/) and its config, run on every CLI preview and up."""

    allow_public_bind: bool
    pack: Path = REPO_ROOT / "policy"

    def args(self) -> list[str]:
        return ["--policy-pack", str(self.pack), "--policy-pack-config", self.write_config()]

    def write_config(self) -> str:
        """The pack's config as the engine takes it: a JSON file (written under .state/)."""
        config = self.pack.parent / ".state" / "policy-config" / f"allow-public-bind-{self.allow_public_bind}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"loopback-ports": {"allowPublicBind": self.allow_public_bind}}))
        return str(config)


class Stack:
    """One stack of the FetchML project, driven through the Automation API."""

    def __init__(self, name: str, project_dir: Path | None = None) -> None:
        self.name = name
        self.project_dir = project_dir or project_home()
        self._config: tuple[dict[str, str], frozenset[str]] | None = None
        try:
            self._stack = auto.select_stack(stack_name=name, work_dir=str(self.project_dir))
        except auto.errors.StackNotFoundError as exc:
            raise OperatorError(
                f"--stack: no stack named '{name}' in {self.project_dir} (create it with `pulumi stack init {name}`)"
            ) from exc

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
        return parse(self.name, values, secrets)

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

    def run(self, args: list[str], on_output: Callable[[str], None] = print) -> engine.Run:
        """One engine run of this stack (up, preview, refresh), with its structured events."""
        return engine.run(args, stack=self.name, cwd=self.project_dir, on_output=on_output)

    def up(
        self, message: str, policy: Policy, on_output: Callable[[str], None] = print, replace: Sequence[str] = ()
    ) -> engine.Run:
        """`pulumi up` with the policy pack, streaming Pulumi's own progress; a failed update is a result.
        ``replace``: URNs to replace even if unchanged (recover: containers the state names but Docker lost)."""
        forced = [arg for urn in replace for arg in ("--replace", urn)]
        return self.run(["up", "--yes", "--skip-preview", "--message", message, *policy.args(), *forced], on_output)

    def refresh(self, on_output: Callable[[str], None] = print) -> engine.Run:
        return self.run(["refresh", "--yes", "--skip-preview"], on_output)

    def deployment(self) -> dict[str, Any]:
        """The `deployment` of `pulumi stack export`: resources (with ids) and any pending operations."""
        return dict(self._stack.export_stack().deployment or {})

    def import_deployment(self, deployment: dict[str, Any]) -> None:
        state = self._stack.export_stack()
        state.deployment = deployment
        self._stack.import_stack(state)

    def preview_events(self, policy: Policy) -> tuple[list[auto.EngineEvent], str | None]:
        """The engine events of one `pulumi preview`, and its error text if it failed."""
        run = self.run(["preview", *policy.args()], on_output=lambda _line: None)
        events = [auto.EngineEvent.from_json(e) for e in run.events]
        if run.ok:
            return events, None
        return events, (run.stderr.strip().splitlines() or [f"pulumi preview: exit {run.returncode}"])[-1]

    def preview_steps(self, policy: Policy) -> tuple[list[review.Step], list[str]]:
        """The steps `pulumi preview` plans (other than 'same'), and the errors it reported, if it failed."""
        events, failure = self.preview_events(policy)
        steps: list[review.Step] = []
        errors: list[str] = []
        for event in events:
            pre = event.resource_pre_event
            if pre is not None and pre.metadata.op.value not in ("same", "read"):
                m = pre.metadata
                was = bool(m.old and m.old.protect)
                steps.append(
                    review.Step(
                        op=m.op.value,
                        name=m.urn.rsplit("::", 1)[1],
                        type=m.type,
                        protected=was or bool(m.new and m.new.protect),
                        unprotects=was and m.new is not None and not m.new.protect,
                    )
                )
            diag = event.diagnostic_event
            if diag is not None and diag.severity == "error":
                errors.append(diag.message.strip())
                # The engine refuses to plan a step on a protected resource, so it has no pre-event: take
                # the step from the refusal itself.
                for op, urn in PROTECTED_REFUSAL.findall(diag.message):
                    kind = urn.rsplit("::", 2)[-2].rsplit("$", 1)[-1]
                    steps.append(review.Step(op=op, name=urn.rsplit("::", 1)[1], type=kind, protected=True))
        if failure and not errors:
            errors.append(failure)
        return steps, errors

    def protected(self) -> list[str]:
        """Names of the resources protected in the current state."""
        resources = (self._stack.export_stack().deployment or {}).get("resources", [])
        return sorted(r["urn"].rsplit("::", 1)[1] for r in resources if r.get("protect"))

    def history(self) -> list[history.Update]:
        rows = [
            {
                "kind": u.kind,
                "result": u.result,
                "startTime": u.start_time.isoformat() if u.start_time else "",
                "message": u.message,
                "config": {k: v.value for k, v in (u.config or {}).items()},
            }
            for u in self._stack.history()
        ]
        return history.parse_history(rows)

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self._stack.outputs().items()}


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


def queue_state(address: str) -> Mapping[str, int]:
    """Pending, running, failed and done job counts from the stack's Redis."""
    import redis

    host, _, port = address.rpartition(":")
    client = redis.Redis(host=host.strip("[]"), port=int(port), socket_timeout=3)
    try:
        return {name: int(getattr(client, op)(key)) for name, (op, key) in QUEUE_KEYS.items()}
    finally:
        client.close()  # type: ignore[no-untyped-call]
