"""Which passphrase protects a stack's secrets, and whether that is allowed for the stack.

The development passphrase (``DEV_PASSPHRASE``, the default ``offline`` sets) is in this repository, so
whatever it encrypts is public. It is the default for local, staging-like stacks; a stack with ``environment: prod`` or
``complianceMode: hipaa`` refuses it, in the CLI and in the program (the plain ``pulumi up`` path).

Pulumi reads the passphrase from ``PULUMI_CONFIG_PASSPHRASE``, else from the file named by
``PULUMI_CONFIG_PASSPHRASE_FILE`` (trimmed), so the same order decides here. Pure, but for reading that file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEV_PASSPHRASE = "fetchml-dev-only-passphrase"
FIX = (
    "keep the passphrase in a secret store and point PULUMI_CONFIG_PASSPHRASE_FILE at it (with "
    "PULUMI_CONFIG_PASSPHRASE unset), or use a KMS secrets provider (`pulumi stack change-secrets-provider`)"
)


def effective(env: Mapping[str, str]) -> str | None:
    """The passphrase Pulumi will use, or None when none is set (or its file cannot be read)."""
    if "PULUMI_CONFIG_PASSPHRASE" in env:
        return env["PULUMI_CONFIG_PASSPHRASE"]
    name = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if not name:
        return None
    try:
        return Path(name).read_text().strip()
    except OSError:
        return None


def stack_file(project_dir: Path, stack: str) -> dict[str, Any] | None:
    """The parsed ``Pulumi.<stack>.yaml`` of the project, or None when there is none (or it is no mapping)."""
    import yaml  # only here: the pure functions above and below need no YAML

    try:
        loaded = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def uses_passphrase(stack_file: Mapping[str, Any] | None) -> bool:
    """Whether the stack's secrets provider is the passphrase one (the default: no ``secretsprovider`` set,
    or ``passphrase``), judging by its ``Pulumi.<stack>.yaml``. A KMS provider leaves the passphrase unused."""
    provider = (stack_file or {}).get("secretsprovider")
    return provider in (None, "", "passphrase")


def uses_dev(stack_file: Mapping[str, Any] | None, env: Mapping[str, str]) -> bool:
    """Whether the stack's secrets are (or would be) protected by the development passphrase."""
    return uses_passphrase(stack_file) and effective(env) == DEV_PASSPHRASE


def needs_private(environment: str, compliance_mode: str) -> bool:
    return environment == "prod" or compliance_mode == "hipaa"


def refusal(stack: str, environment: str, compliance_mode: str) -> str:
    """Why a production or HIPAA stack refuses the development passphrase, and what to set instead."""
    what = f"environment {environment}" if environment == "prod" else f"complianceMode {compliance_mode}"
    return (
        f"stack '{stack}' ({what}) must not keep its secrets under the development passphrase, which is "
        f"published in this repository; {FIX}"
    )


def note(stack: str) -> str:
    """What the CLI says when a stack uses the development passphrase (allowed: a local, staging-like stack)."""
    return (
        f"note: stack '{stack}' keeps its secrets under the development passphrase (fine for local and "
        "staging-like stacks; prod and HIPAA stacks refuse it)"
    )
