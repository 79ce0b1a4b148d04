"""The FetchML stack on the real engine and Docker: a change of image replaces only the app containers;
Redis, MinIO, their volumes and their data never move, and destroy is refused on the protected volumes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto

from fetchml_infra import engine, review
from tests import dockerhost
from tests.e2e.project import Project, make_project, throwaway

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    with throwaway(tmp_path, image=A) as p:
        yield p


def replaced_in_preview(project: Project) -> dict[str, str]:
    """Resource name -> operation, for every step `pulumi preview` plans that is not 'same', read from the
    engine's event log the way the CLI reads it (provider bookkeeping left out)."""
    run = engine.run(
        ["preview", "--diff"], stack=project.stack_name, cwd=project.root, env=project.env, on_output=lambda _: None
    )
    assert run.ok, run.stderr
    steps, errors = review.plan(run.events)
    assert errors == []
    return {step.name: step.op for step in steps}


def test_image_change_replaces_only_the_app(project: Project) -> None:
    up = project.stack.up(color="never")
    assert up.summary.result == "succeeded"
    r = project.redis()
    assert r.ping() is True
    r.set("fetchml:e2e:key", "kept")
    mc = project.minio()
    assert mc.bucket_exists("artifacts")  # the stack made it, for the app's own key (app_access)
    mc.put_object("artifacts", "run-1/model.bin", io.BytesIO(b"weights" * 100), 700)
    identities, volumes = project.data_identities(), project.volumes()
    proxy = dockerhost.identity(f"{project.prefix}-proxy")

    project.stack.set_config("fetchml:image", auto.ConfigValue(B))
    planned = replaced_in_preview(project)
    replaced = {name for name, op in planned.items() if op in ("replace", "create-replacement", "delete-replaced")}
    assert replaced == {"api-image", "worker-image"}  # the image references; no container is replaced
    assert {n for n, op in planned.items() if op == "create"} == {f"api-{B}", f"worker-{B}-1"}
    assert {n for n, op in planned.items() if op == "delete"} == {f"api-{A}", f"worker-{A}-1"}
    assert {n for n, op in planned.items() if op == "update"} == {"health-gate", "proxy-route", "audit-entry"}

    second = project.stack.up(color="never")
    assert second.summary.result == "succeeded"
    assert second.outputs["image"].value == B
    assert second.outputs["routed"].value == f"{project.api(B)}:9101"
    assert dockerhost.inspect("container", project.api(A)) is None
    assert dockerhost.container(project.api(B))["Config"]["Image"].startswith("sha256:")
    assert dockerhost.identity(f"{project.prefix}-proxy") == proxy  # the proxy was only reconfigured
    assert project.data_identities() == identities  # Redis and MinIO neither replaced nor restarted
    assert project.volumes() == volumes
    assert project.redis().get("fetchml:e2e:key") == b"kept"
    assert project.minio().get_object("artifacts", "run-1/model.bin").read() == b"weights" * 100
    assert [(e.action, e.to_image) for e in project.chain()] == [("deploy", A), ("deploy", B)]

    # Destroy is refused on the protected volumes; the data is still there afterwards.
    with pytest.raises(auto.errors.CommandError) as refused:
        project.stack.destroy(color="never")
    assert "protect" in str(refused.value)
    for name in ("redis", "minio"):
        assert dockerhost.inspect("volume", f"{project.prefix}-{name}-data") is not None
    assert project.audit_log.exists()


def test_bad_config_fails_before_any_resource_is_registered(project: Project) -> None:
    project.stack.set_config("fetchml:image", auto.ConfigValue("latest"))
    project.stack.set_config("fetchml:minioRootPassword", auto.ConfigValue("plain-text-password"))
    with pytest.raises(auto.errors.CommandError) as err:
        project.stack.up(color="never")
    text = str(err.value)
    assert "image: expected sha- followed by 7 to 40 lowercase hex digits, saw 'latest'" in text
    assert "minioRootPassword: expected a secret, saw a plain value" in text
    assert "plain-text-password" not in text
    assert dockerhost.inspect("network", f"{project.prefix}-net") is None
    registered = {r["type"] for r in (project.stack.export_stack().deployment or {}).get("resources", [])}
    assert registered <= {"pulumi:pulumi:Stack"}


def test_status_of_a_never_deployed_stack_says_so(tmp_path: Path) -> None:
    p = make_project(tmp_path, image=A)
    try:
        done = p.cli("status")
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith(f"stack {p.stack_name} has never been deployed: nothing runs yet")
        assert "Redis did not answer" not in done.stdout
    finally:
        p.stack.workspace.remove_stack(p.stack_name)


def test_first_deploy_of_a_new_stack_needs_nothing_set_by_hand(tmp_path: Path) -> None:
    with throwaway(tmp_path) as p:  # no image in its config: `pulumi stack init` and the secrets only
        assert "fetchml:image" not in p.stack.get_all_config()
        done = p.cli("deploy", "--image", A, "--reason", "first")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"deploy {A} to stack '{p.stack_name}' (was nothing: this is its first deploy)" in done.stdout
        assert p.config("image") == A and p.outputs()["image"] == A
        assert [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()] == [
            ("deploy", "success", "none", A)
        ]


def test_the_plain_path_reads_a_gate_failure_in_words_not_a_traceback(tmp_path: Path) -> None:
    """`pulumi config set image <broken> && pulumi up` on prod: the operator reads what the gate saw and what
    to do, from Pulumi's own output, with no Python traceback or gRPC wrapping; then the plain rollback works."""
    broken = "sha-9c0ffee"  # a stand-in release whose API answers 503
    with throwaway(tmp_path, image=A, environment="prod", complianceMode="hipaa", autoRollback="false") as p:
        assert p.stack.up(color="never").summary.result == "succeeded"
        assert p.pulumi("config", "set", "image", broken).returncode == 0
        up = p.pulumi("up", "--yes", "--skip-preview")
        shown = up.stdout + up.stderr
        assert up.returncode != 0
        assert f"error: fetchml: health gate failed for stack '{p.stack_name}'" in shown, shown
        assert "HTTP 503" in shown and f"fetchml-infra rollback --stack {p.stack_name}" in shown
        for noise in ("Traceback", 'File "', "Exception calling application", "Exception:"):
            assert noise not in shown, noise
        assert [(e.action, e.outcome, e.to_image) for e in p.chain()][-1] == ("deploy", "failure", broken)
        # The 3 a.m. rollback on the same path.
        assert p.pulumi("config", "set", "image", A).returncode == 0
        back = p.pulumi("up", "--yes", "--skip-preview")
        assert back.returncode == 0, back.stdout + back.stderr
        assert [(e.action, e.outcome, e.from_image, e.to_image) for e in p.chain()][-1] == (
            "rollback", "success", broken, A,
        )  # fmt: skip
