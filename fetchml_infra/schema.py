"""Which database schema an image runs on, and whether the stack may move to it.

Each FetchML image declares in OCI labels the schema versions it runs on (``org.fetchml.schema.min`` and
``.max``) and the version its migrations bring the database to (``.target``); the API applies its migrations on
start. Migrations only go forward: a rollback never reverts one. So an image whose ``max`` is below the live
schema would start against tables newer than it knows, the classic rollback accident. That move is refused
before any container is replaced (the CLI's preflight, and the program itself for a plain `pulumi up`);
``--force-schema`` (config ``forceSchema``) overrides it, and the override is written into the audit entry.

``fit`` is pure; ``live_version`` and ``declared`` are thin edges over `docker exec` and `docker image inspect`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from fetchml_infra.host import HostError, data_container, run_docker

LABEL = "org.fetchml.schema"
DATABASE = "fetchml"
_HAS_TABLE = "select to_regclass('public.schema_migrations') is not null"
_VERSION = "select coalesce(max(version), 0) from schema_migrations"


class SchemaError(RuntimeError):
    """The live schema or an image's labels could not be read (not a verdict on the image)."""


@dataclass(frozen=True)
class Declared:
    """What an image's labels say: the schema versions it runs on, and where its migrations take the database."""

    min: int
    max: int
    target: int | None


@dataclass(frozen=True)
class Fit:
    ok: bool
    line: str  # one readable line: what was compared, and the verdict


def parse_labels(image: str, labels: Mapping[str, str] | None) -> Declared | None:
    """The image's declared schema range; None when it declares none. SchemaError for a malformed label."""
    labels = labels or {}
    if f"{LABEL}.min" not in labels and f"{LABEL}.max" not in labels:
        return None
    values: dict[str, int | None] = {}
    for key in ("min", "max", "target"):
        raw = labels.get(f"{LABEL}.{key}")
        if raw is None and key == "target":
            values[key] = None
            continue
        if raw is None or not raw.strip().isdigit():
            raise SchemaError(f"image {image}: label {LABEL}.{key}: expected a schema version number, saw {raw!r}")
        values[key] = int(raw)
    low, high = values["min"] or 0, values["max"] or 0
    if low > high:
        raise SchemaError(f"image {image}: labels {LABEL}.min {low} > {LABEL}.max {high}")
    return Declared(low, high, values["target"])


def fit(live: int | None, image: str, declared: Declared | None) -> Fit:
    """May the stack's app run ``image`` on the live schema? ``live`` None: there is no database yet."""
    if live is None:
        return Fit(True, f"no database yet; {image} creates its schema")
    if declared is None:
        return Fit(True, f"live schema {live}; {image} declares no schema range (no {LABEL}.* labels), not checked")
    if live > declared.max:
        return Fit(
            False,
            f"the live database schema is {live}, but {image} runs on schema {declared.min} to {declared.max}: a "
            f"rollback never reverts a migration, so this needs a forward fix or data recovery, not a rollback "
            f"(data recovery: fetchml-infra restore); --force-schema overrides",
        )
    if live < declared.min and (declared.target is None or declared.target < declared.min):
        return Fit(
            False,
            f"the live database schema is {live}, but {image} needs at least schema {declared.min}; deploy the "
            f"release that migrates to {declared.min} first; --force-schema overrides",
        )
    return Fit(True, f"live schema {live}; {image} runs on {declared.min} to {declared.max}")


def pending(live: int | None, declared: Declared | None) -> int:
    """Migrations the image has that the live database does not (it applies them on start)."""
    if live is None or declared is None or declared.target is None:
        return 0
    return max(declared.target - live, 0)


def override_note(checked: Fit) -> str:
    """What the audit entry says when a refused schema check was overridden."""
    return f"schema check overridden (--force-schema): {checked.line.split(': a rollback', 1)[0]}"


def container(prefix: str) -> str:
    return f"{prefix}-postgres"


def psql(name: str, sql: str, timeout: float = 15.0) -> str:
    """One query's single value, run in the database container (local trust: no password crosses here)."""
    return run_docker("exec", name, "psql", "-U", "postgres", "-d", DATABASE, "-tAc", sql, timeout=timeout).strip()


def live_version(prefix: str) -> int | None:
    """The live schema version (0 before the first migration); None when the stack has no database container."""
    name = data_container(container(prefix))
    try:
        state = run_docker("container", "inspect", "-f", "{{.State.Running}}", name, ignore="No such container")
    except HostError as exc:
        raise SchemaError(f"cannot read the live schema: {exc}") from exc
    if not state.strip():
        return None
    if state.strip() != "true":
        raise SchemaError(
            f"cannot read the live schema: the database container {name} is not running; start it "
            f"(`docker start {name}`)"
        )
    try:
        if psql(name, _HAS_TABLE) != "t":
            return 0
        return int(psql(name, _VERSION))
    except (HostError, ValueError) as exc:
        raise SchemaError(f"cannot read the live schema from {name}: {exc}") from exc


def declared(image: str, pull: bool = False) -> Declared | None:
    """The schema labels of the image (the API image decides: it is the one that migrates); ``pull``: pull it
    first when it is not here (the plain `pulumi up` path checks before the engine would pull it)."""
    try:
        if pull and not run_docker("image", "ls", "-q", image).strip():
            run_docker("pull", image, timeout=600)
        out = run_docker("image", "inspect", "-f", "{{json .Config.Labels}}", image)
    except HostError as exc:
        raise SchemaError(
            f"cannot read the schema labels of {image} (is it pulled? `docker pull {image}`): {exc}"
        ) from exc
    return parse_labels(image, json.loads(out or "null"))


def check(prefix: str, api_image: str, tag: str, pull: bool = False) -> tuple[Fit, int]:
    """The schema check of moving the app to ``tag``: (the fit, migrations pending). SchemaError when the live
    schema or the labels cannot be read."""
    live = live_version(prefix)
    found = declared(api_image, pull)
    return fit(live, tag, found), pending(live, found)
