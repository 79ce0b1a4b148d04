"""`fetchml-infra init`: create a stack and set its secrets from a file or a prompt, never a command line.

A value on a command line lands in shell history and in every process listing; Pulumi's own
`pulumi config set --secret KEY VALUE` invites exactly that. Here the values come from a file only its
owner can read (`KEY=VALUE` lines) or from a hidden prompt, and reach Pulumi on its standard input.
"""

from __future__ import annotations

import secrets
import stat
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from fetchml_infra import passphrase
from fetchml_infra.config import PROJECT, SECRET_KEYS
from fetchml_infra.outcome import one_line

GENERATED = ("minioAppSecretKey",)  # made here when not given: nobody needs to know it but the app
# Made once when missing, never rotated: PostgreSQL keeps the password its data directory was initialised with.
GENERATED_ONCE = ("postgresPassword",)
MIN_LENGTH = 8


def parse_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines); ValueError naming the file, the line and the
    problem, never a value."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--secrets-file: cannot read {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"--secrets-file: {path} can be read by others (mode {stat.S_IMODE(mode):o}); "
            f"expected a file only its owner can read: chmod 600 {path}"
        )
    values: dict[str, str] = {}
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            problems.append(f"line {n}: expected KEY=VALUE, saw a line without '='")
        elif key not in SECRET_KEYS:
            problems.append(f"line {n}: {key!r} is not a secret of this program (known: {', '.join(SECRET_KEYS)})")
        elif key in values:
            problems.append(f"line {n}: {key} is given twice")
        elif len(value) < MIN_LENGTH:
            problems.append(f"line {n}: {key}: expected at least {MIN_LENGTH} characters, saw {len(value)}")
        else:
            values[key] = value
    if problems:
        raise ValueError(f"--secrets-file {path}: " + "; ".join(problems) + "; nothing was set")
    return values


def plan(given: Mapping[str, str], already: set[str], rotate: bool) -> tuple[dict[str, str], list[str]]:
    """What to set (given values, plus a generated app key if it is missing) and the problems that stop it."""
    problems = []
    kept = sorted(k for k in given if k in already and not rotate)
    if kept:
        problems.append(f"{', '.join(kept)}: already set on the stack; to replace them, pass --rotate")
    fixed = sorted(k for k in given if k in already and k in GENERATED_ONCE and rotate)
    if fixed:
        problems.append(f"{', '.join(fixed)}: cannot be rotated here; the database keeps the password it was made with")
    to_set = dict(given)
    for key in GENERATED:  # rotation makes a new one too, unless one is given
        if key not in given and (key not in already or rotate):
            to_set[key] = secrets.token_urlsafe(30)
    for key in GENERATED_ONCE:
        if key not in given and key not in already:
            to_set[key] = secrets.token_urlsafe(30)
    missing = [k for k in SECRET_KEYS if k not in to_set and k not in already]
    if missing:
        problems.append(f"{', '.join(missing)}: required, but neither set on the stack nor given")
    return to_set, problems


def refusal(stack: str, stack_file: Mapping[str, object] | None, env: Mapping[str, str]) -> str | None:
    """Why init must not run: a prod or HIPAA stack under the development passphrase, or no passphrase."""
    config = _config(stack_file)
    environment = str(config.get(f"{PROJECT}:environment", "staging"))
    compliance = str(config.get(f"{PROJECT}:complianceMode", "none"))
    if passphrase.needs_private(environment, compliance) and passphrase.uses_dev(stack_file, env):
        return passphrase.refusal(stack, environment, compliance) + "; nothing was created or set"
    if passphrase.uses_passphrase(stack_file) and passphrase.effective(env) is None:
        name = env.get("PULUMI_CONFIG_PASSPHRASE_FILE", "")
        return f"PULUMI_CONFIG_PASSPHRASE_FILE: cannot read {name!r}; nothing was created or set"
    return None


def _config(stack_file: Mapping[str, object] | None) -> Mapping[str, object]:
    config = (stack_file or {}).get("config")
    return config if isinstance(config, Mapping) else {}


def secrets_set(stack_file: Mapping[str, object] | None) -> set[str]:
    """The secrets the stack's config file holds (as ciphertext: ``{secure: ...}``)."""
    config = _config(stack_file)
    return {k for k in SECRET_KEYS if isinstance(config.get(f"{PROJECT}:{k}"), Mapping)}


def set_secrets(
    run: Callable[..., subprocess.CompletedProcess[str]], stack: str, values: Mapping[str, str]
) -> list[str]:
    """`pulumi config set --secret` for each value, the value on standard input; ``key: error`` for each
    that failed."""
    failed = []
    for key, value in values.items():
        done = run(["config", "set", "--secret", f"{PROJECT}:{key}", "--stack", stack], value)
        if done.returncode != 0:
            failed.append(f"{key}: {done.stderr.strip() or done.stdout.strip()}")
    return failed


def init_stack(
    stack: str,
    project_dir: Path,
    env: Mapping[str, str],
    given: Mapping[str, str] | None,
    ask: Callable[[str], str] | None,
    rotate: bool,
    secrets_provider: str,
) -> list[str]:
    """Create the stack if needed and set its secrets; what was done, one line each. ValueError (nothing
    created or set) for every refusal; RuntimeError when Pulumi fails part-way (naming what was set)."""

    def pulumi(args: list[str], value: str = "") -> subprocess.CompletedProcess[str]:
        cmd = ["pulumi", *args, "--non-interactive"]
        return subprocess.run(cmd, cwd=project_dir, env=dict(env), input=value, capture_output=True, text=True)

    stack_file = passphrase.stack_file(project_dir, stack)
    why = refusal(stack, stack_file, env) if not secrets_provider or secrets_provider == "passphrase" else None
    if why:
        raise ValueError(why)
    already = secrets_set(stack_file)
    if given is None:
        if ask is None:
            raise ValueError("--secrets-file: not given, and there is no terminal to ask on; nothing was set")
        wanted = [k for k in SECRET_KEYS if k not in (*GENERATED, *GENERATED_ONCE) and (rotate or k not in already)]
        given = {k: ask(k) for k in wanted}
    to_set, problems = plan(given, already, rotate)
    if problems:
        raise ValueError("; ".join(problems) + "; nothing was created or set")
    done = []
    listed = pulumi(["stack", "ls", "--json"])
    if f'"name": "{stack}"' not in listed.stdout:
        provider = ["--secrets-provider", secrets_provider] if secrets_provider else []
        made = pulumi(["stack", "init", stack, *provider])
        if made.returncode != 0:
            why = one_line(made.stderr or made.stdout)
            created = f'"name": "{stack}"' in pulumi(["stack", "ls", "--json"]).stdout
            state = "the stack was created but its config was not saved" if created else "no stack was created"
            raise ValueError(f"pulumi stack init {stack}: {why}; {state} and no secret was set; run init again")
        done.append(f"created stack '{stack}'")
    failed = set_secrets(pulumi, stack, to_set)
    bad = {f.split(":", 1)[0] for f in failed}
    done += [f"set {k}" + (" (generated)" if k not in given else "") for k in to_set if k not in bad]
    if failed:
        raise RuntimeError("; ".join(done + [f"FAILED {f}" for f in failed]))
    return done
