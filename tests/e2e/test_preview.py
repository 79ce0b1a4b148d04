"""`fetchml-infra preview` on real preview output from the engine: a deploy, a rollback, a no-op, and a
change that would replace the protected volumes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e.project import Project, throwaway

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A) as p:
        yield p


def preview(p: Project, code: int = 0) -> str:
    done = p.cli("preview", "--markdown")
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def test_preview_tells_deploy_rollback_noop_and_protected_changes(project: Project) -> None:
    p = project
    p.stack.up(color="never")

    text = preview(p)
    assert text.startswith("<!-- fetchml-infra-preview -->")
    assert f"**No change of image**: stays on {A}." in text
    assert "- containers to start: none" in text and "proxy switch" not in text
    kept = "audit-entry, minio-data, postgres-data, redis-data"
    assert f"- no protected resource is replaced, deleted or unprotected ({kept})" in text
    typo = p.stack_name[:-1] + ("x" if p.stack_name[-1] != "x" else "y")
    refused = p.cli("preview", "--stack", typo, on_stack=False)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and f"no stack named '{typo}'" in said, said
    assert f"did you mean '{p.stack_name}'?" in said

    p.stack.set_config("fetchml:image", auto.ConfigValue(B))
    text = preview(p)
    assert f"**Deploy**: {A} -> {B}" in text
    pre = p.prefix
    assert f"- proxy switch: {pre}-api-{A} -> {pre}-api-{B}, only once {pre}-api-{B} passes its health gate" in text
    assert f"- containers to start: api-{B}, worker-{B}-1" in text
    assert f"- containers to remove after the switch: api-{A}, worker-{A}-1" in text
    assert "- resources to update: audit-entry, health-gate, proxy-route" in text
    assert f"- image ghcr.io/jfraeysd/fetchml-api:{B}: present locally" in text
    assert "- no protected resource is replaced, deleted or unprotected" in text
    assert f"- {B} has never passed its health gate here" in text
    assert "- stack: environment staging, compliance mode none, autoRollback true" in text

    p.stack.up(color="never")
    p.stack.set_config("fetchml:image", auto.ConfigValue(A))
    text = preview(p)
    assert f"**Rollback**: {B} -> {A}" in text
    assert "- audit chain intact: 2 entries" in text
    first = p.chain()[0]
    assert f"- {A} last passed its health gate here at {first.time}" in text

    # A denied image cannot even be previewed; the pull request still gets a comment saying so.
    p.stack.set_config("fetchml:deniedImages", auto.ConfigValue(f'["{A}"]'))
    blocked = preview(p, code=2)
    assert blocked.startswith("<!-- fetchml-infra-preview -->") and "**Blocked**" in blocked
    assert "--allow-denied" in blocked
    p.stack.remove_config("fetchml:deniedImages")

    p.stack.set_config("fetchml:image", auto.ConfigValue(B))
    p.stack.set_config("fetchml:namePrefix", auto.ConfigValue(f"{p.prefix}-renamed"))
    text = preview(p, code=1)
    # The engine names the protected volumes it would replace (older CLIs stop at the first, in no fixed order).
    warning = re.search(r"\*\*WARNING: protected resources would be replaced, deleted or unprotected: (.*)\*\*", text)
    assert warning and set(warning[1].split(", ")) <= {"minio-data", "postgres-data", "redis-data"} and warning[1], text
    assert "marked for protection" in text
