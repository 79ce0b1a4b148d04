"""The one place that says how this project runs Pulumi without the internet.

Every script (through ``scripts/env.sh``), every test (through ``tests/conftest.py``) and the CLI take their
environment from :func:`environment`: the toolchain directories on PATH, a state backend (the checkout's files,
or S3 on the ops endpoint that ``FETCHML_OPS_ENV`` names), a passphrase for the secrets provider, and no update
checks or plugin downloads. A value the caller already set wins, so a
user can point at their own backend or passphrase.

Run ``python -m fetchml_infra.offline`` to print the same settings as shell ``export`` lines.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from fetchml_infra import ops_store
from fetchml_infra.passphrase import DEV_PASSPHRASE

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = REPO_ROOT / "scripts" / "toolchain.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse the KEY=VALUE lines of scripts/toolchain.env (comments and blank lines ignored)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: expected KEY=VALUE, saw {raw!r}")
        versions[key.strip()] = value.strip()
    return versions


def cache_home(env: Mapping[str, str]) -> Path:
    """Where built toolchains live: $FETCHML_CACHE, else ~/.cache/fetchml-infra."""
    explicit = env.get("FETCHML_CACHE")
    if explicit:
        return Path(explicit)
    return Path(env.get("HOME", str(Path.home()))) / ".cache" / "fetchml-infra"


def plugin_cache(env: Mapping[str, str]) -> Path:
    """Pulumi's plugin cache, where bootstrap installs the docker provider: $PULUMI_HOME/plugins."""
    return Path(env.get("PULUMI_HOME") or Path(env.get("HOME", str(Path.home()))) / ".pulumi") / "plugins"


def toolchain_dirs(env: Mapping[str, str], versions: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The versioned directories bootstrap builds into; a new version is a new directory."""
    v = dict(versions) if versions is not None else read_versions()
    root = cache_home(env) / "toolchain"
    return {
        # A CLI's directory holds a copy of the language host too, so both versions name it.
        "pulumi": root / f"pulumi-v{v['PULUMI_VERSION']}-python-host-v{v['PULUMI_PYTHON_HOST_VERSION']}",
        "pulumi-oldest": root / f"pulumi-v{v['PULUMI_OLDEST_VERSION']}-python-host-v{v['PULUMI_PYTHON_HOST_VERSION']}",
        "python-host": root / f"pulumi-language-python-v{v['PULUMI_PYTHON_HOST_VERSION']}",
        "docker": root / f"pulumi-resource-docker-v{v['DOCKER_PROVIDER_VERSION']}",
        "actionlint": root / f"actionlint-v{v['ACTIONLINT_VERSION']}",
    }


def path_front(dirs: Mapping[str, Path], cli: str = "current") -> list[Path]:
    """The directories put before the caller's PATH. The built CLI (with the language host beside it) comes
    first only when bootstrap built it: a user's own Pulumi of a supported version is used as it is, with
    the host it ships. ``cli="oldest"`` selects the oldest supported CLI instead (the version smoke tests).
    The docker provider is not on PATH: bootstrap installs it in Pulumi's plugin cache, where the engine
    takes it without a warning."""
    chosen = dirs["pulumi-oldest" if cli == "oldest" else "pulumi"]
    built = [chosen] if (chosen / ".complete").is_file() else []
    return [*built, dirs["actionlint"], REPO_ROOT / ".venv" / "bin"]


def environment(base: Mapping[str, str] | None = None, cli: str | None = None) -> dict[str, str]:
    """The offline settings layered under ``base`` (default: os.environ); values in ``base`` win.
    ``cli`` (else $FETCHML_PULUMI_CLI, else "current"): "oldest" runs everything on the oldest supported CLI;
    it is kept in the environment so every process below makes the same choice."""
    env = dict(os.environ if base is None else base)
    cli = cli or env.get("FETCHML_PULUMI_CLI") or "current"
    if cli not in ("current", "oldest"):
        raise ValueError(f"FETCHML_PULUMI_CLI: expected 'current' or 'oldest', saw {cli!r}")
    env["FETCHML_PULUMI_CLI"] = cli
    dirs = toolchain_dirs(env)
    front = [str(d) for d in path_front(dirs, cli)]
    ours = {str(d) for d in dirs.values()}
    rest = [p for p in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep) if p not in ours | set(front)]
    env["PATH"] = os.pathsep.join(front + rest)
    ops_store.layer(env)  # a team's shared S3 endpoint, when FETCHML_OPS_ENV names one
    env.setdefault("PULUMI_BACKEND_URL", f"file://{REPO_ROOT / '.state' / 'backend'}")
    if "PULUMI_CONFIG_PASSPHRASE_FILE" not in env:
        env.setdefault("PULUMI_CONFIG_PASSPHRASE", DEV_PASSPHRASE)
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    env.setdefault("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    # The CLI checks the engine's version itself (fetchml_infra.toolchain.cli_version), against the
    # supported range rather than the Automation API's idea of a minimum.
    env.setdefault("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", "true")
    return env


def apply() -> dict[str, str]:
    """Set the offline settings in this process's environment (for the CLI and tests)."""
    env = environment()
    os.environ.update(env)
    return env


def backend_dir(env: Mapping[str, str]) -> Path | None:
    """The local directory of a file:// backend, so scripts can create it; None for other backends."""
    url = env.get("PULUMI_BACKEND_URL", "")
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


_EXPORTED = (
    "PATH",
    "PULUMI_BACKEND_URL",
    "PULUMI_CONFIG_PASSPHRASE",
    "FETCHML_OPS_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "PULUMI_SKIP_UPDATE_CHECK",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION",
    "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK",
)


def main(argv: list[str]) -> int:
    env = environment()
    if argv[1:2] == ["--dirs"]:
        for name, path in toolchain_dirs(env).items():
            print(f"{name}={path}")
        return 0
    shown = {key: env[key] for key in _EXPORTED if key in env}
    if "AWS_SECRET_ACCESS_KEY" in shown and env.get("FETCHML_OPS_ENV"):  # never print the key: name its file
        shown.pop("AWS_ACCESS_KEY_ID", None), shown.pop("AWS_SECRET_ACCESS_KEY")
        shown.update(ops_store.shell_credentials(env))
    for key, value in shown.items():
        print(f"export {key}={shlex.quote(value)}")
    if "--interactive" in argv and env.get("PULUMI_CONFIG_PASSPHRASE") == DEV_PASSPHRASE:  # scripts/env.sh
        print(
            "scripts/env.sh: secrets use the development passphrase (local and staging-like stacks only); "
            "for prod, set PULUMI_CONFIG_PASSPHRASE_FILE before sourcing this file",
            file=sys.stderr,
        )
    backend = backend_dir(env)
    if backend is not None:
        backend.mkdir(parents=True, exist_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
