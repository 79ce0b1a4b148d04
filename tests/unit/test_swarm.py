"""The Swarm target without a cluster: the gate's verdict over what the swarm reports, the config rules, and
what the component declares (under Pulumi mocks). tests/e2e/test_swarm.py runs it on a real three-node swarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from fetchml_infra import outcome, swarm
from fetchml_infra.config import ConfigError, parse
from fetchml_infra.stack import FetchML
from fetchml_infra.swarm_gate import ClusterFault, Guarded, Seen, poll, verdict
from tests.unit.test_config import SECRETS, good
from tests.unit.test_stack_mocks import Recorder, mentions

API = Guarded("p-api", 2, 9101, "/health")
WORKER = Guarded("p-worker", 1, 9102, "/health")
NEW = "sha-5d6e7f8"


def answer(g: Guarded, address: str, version: str = NEW, status: int = 200, compliance: str = "none") -> dict[str, Any]:
    body = {"status": "ok" if status == 200 else "starting", "version": version, "compliance_mode": compliance}
    return {"target": g.target, "address": address, "status": status, "body": json.dumps(body), "error": ""}


def seen(*answers: dict[str, Any], **kw: Any) -> Seen:
    return Seen(
        kw.get("updates", {}), kw.get("failed", {}), list(answers), kw.get("pending", {}), kw.get("unstarted", {})
    )


def judge(s: Seen, compliance: str | None = None) -> tuple[bool, str, bool]:
    v, final = verdict(s, [API, WORKER], expected_version=NEW, required_compliance=compliance)
    return v.healthy, v.reason, final


ALL_NEW = (answer(API, "10.0.1.5"), answer(API, "10.0.1.6"), answer(WORKER, "10.0.1.7"))


def test_every_task_of_every_service_must_answer_with_the_new_release() -> None:
    assert judge(seen(*ALL_NEW))[0]
    healthy, reason, final = judge(seen(*ALL_NEW[1:]))
    assert (healthy, final) == (False, False) and reason == "p-api: 1 of 2 tasks answer"
    old = answer(API, "10.0.1.4", version="sha-1a2b3c4")
    healthy, reason, _ = judge(seen(old, *ALL_NEW[1:]))
    assert not healthy and "p-api task at 10.0.1.4: service reports version 'sha-1a2b3c4'" in reason
    healthy, reason, _ = judge(seen(*ALL_NEW, pending={"p-worker": 1}))
    assert not healthy and reason == "p-worker: 1 of 1 tasks answer, 1 not running yet"


def test_compliance_is_checked_on_every_task() -> None:
    hipaa = [answer(API, "10.0.1.5", compliance="hipaa"), answer(API, "10.0.1.6", compliance="hipaa")]
    healthy, reason, _ = judge(seen(*hipaa, answer(WORKER, "10.0.1.7", compliance="none")), "hipaa")
    assert not healthy and reason.startswith("p-worker task at 10.0.1.7: compliance_mode is 'none'")
    assert judge(seen(*hipaa, answer(WORKER, "10.0.1.7", compliance="hipaa")), "hipaa")[0]


def test_a_paused_update_whose_image_ran_is_a_final_verdict_on_the_image() -> None:
    failed = {"p-api": [("failed", "task: non-zero exit (1)")]}
    healthy, reason, final = judge(seen(updates={"p-api": ("paused", "update paused due to failure")}, failed=failed))
    assert (healthy, final) == (False, True)
    assert reason == "the swarm stopped updating p-api (paused): task: non-zero exit (1)"


def test_tasks_the_swarm_could_not_start_are_the_clusters_fault() -> None:
    rejected = {"p-worker": [("rejected", "No such image: ghcr.io/jfraeysd/fetchml-worker:sha-5d6e7f8")]}
    with pytest.raises(ClusterFault, match="could not start the new tasks: No such image"):
        judge(seen(*ALL_NEW, updates={"p-worker": ("paused", "update paused")}, failed=rejected))
    clock = iter(range(0, 100, 10))
    with pytest.raises(ClusterFault, match="tasks not started by the swarm within 15s"):
        poll(
            lambda: seen(*ALL_NEW[:2], pending={"p-worker": 1}, unstarted={"p-worker": 1}),
            [API, WORKER], expected_version=NEW, required_compliance=None, timeout=15,
            clock=lambda: float(next(clock)), sleep=lambda _: None,
        )  # fmt: skip


def test_a_timeout_with_running_tasks_is_a_verdict() -> None:
    clock = iter(range(0, 100, 10))
    result = poll(
        lambda: seen(answer(API, "10.0.1.5", status=503), answer(API, "10.0.1.6"), ALL_NEW[2]),
        [API, WORKER], expected_version=NEW, required_compliance=None, timeout=15,
        clock=lambda: float(next(clock)), sleep=lambda _: None,
    )  # fmt: skip
    assert not result.verdict.healthy and result.verdict.reason == "p-api task at 10.0.1.5: HTTP 503"


def test_a_gate_that_could_not_check_is_not_a_verdict_on_the_image() -> None:
    urn = "urn:pulumi:s::fetchml::fetchml:index:FetchML$fetchml:index:HealthGate::health-gate"
    message = f"fetchml: health gate could not check stack 's' ({outcome.NOT_A_VERDICT}): manager down"
    events: list[dict[str, Any]] = [
        {"resOpFailedEvent": {"metadata": {"urn": urn}}},
        {"diagnosticEvent": {"urn": urn, "severity": "error", "message": message}},
        {"summaryEvent": {}},
    ]
    result = outcome.classify(events, returncode=255)
    assert result.kind == "app-failed" and not result.verdict_on_image


def test_the_proxy_follows_the_api_tasks_through_the_swarm_dns() -> None:
    handler = swarm.proxy_config("p-api", 9101)["apps"]["http"]["servers"]["fetchml"]["routes"][0]["handle"][0]
    assert handler["dynamic_upstreams"] == {"source": "a", "name": "tasks.p-api", "port": "9101", "refresh": "1s"}
    assert handler["load_balancing"]["try_duration"] == "5s"


def swarm_values(**extra: str) -> dict[str, str]:
    return good(target="swarm", bindAddress="10.213.0.2", allowPublicBind="true", **extra)


def test_swarm_config_is_validated_with_the_key_named() -> None:
    cfg = parse("staging", swarm_values(dockerHost="unix:///run/m.sock"), SECRETS)
    assert (cfg.target, cfg.docker_host, cfg.api_replicas) == ("swarm", "unix:///run/m.sock", 2)
    with pytest.raises(ConfigError, match="allowPublicBind: expected true with target: swarm, saw false"):
        parse("staging", good(target="swarm"), SECRETS)
    with pytest.raises(ConfigError, match="dockerHost: expected it only with target: swarm"):
        parse("staging", good(dockerHost="unix:///run/m.sock"), SECRETS)
    with pytest.raises(ConfigError, match="dockerHost: expected a Docker host URL: unix://, tcp:// or ssh://, saw 'm'"):
        parse("staging", swarm_values(dockerHost="m"), SECRETS)
    with pytest.raises(ConfigError, match="target: expected one of docker / swarm, saw 'k8s'|target: expected one of"):
        parse("staging", good(target="k8s"), SECRETS)


def build_swarm(tmp_path: Path, image: str) -> Recorder:
    values = {**swarm_values(image=image), "workerReplicas": "4", "auditLog": str(tmp_path / "audit.log")}
    cfg = parse("staging", values, SECRETS)
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="fetchml", stack="staging", preview=False)
    register = pulumi.CustomResource.__init__

    def spy(self: pulumi.CustomResource, t: str, name: str, props: Any = None, opts: Any = None, *rest: Any) -> None:
        mocks.options[name] = opts
        register(self, t, name, props, opts, *rest)

    pulumi.CustomResource.__init__ = spy  # type: ignore[method-assign,assignment]

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        stack = FetchML("fetchml", cfg)
        return pulumi.Output.all(stack.audit.id, stack.gate.id, stack.swarm.api.id)

    try:
        run()
    finally:
        pulumi.CustomResource.__init__ = register  # type: ignore[method-assign]
    return mocks


def test_on_a_swarm_the_image_reaches_only_the_app_services_and_data_stays_put(tmp_path: Path) -> None:
    mocks = build_swarm(tmp_path, "sha-1a2b3c4")
    reached = {name for name, inputs in mocks.inputs.items() if mentions(inputs, "sha-1a2b3c4")}
    assert reached == {"api", "worker", "health-gate", "audit-entry"}
    kept = {n for n, o in mocks.options.items() if o is not None and o.protect and o.retain_on_delete}
    assert kept == {"redis-data", "minio-data", "postgres-data", "audit-entry"}
    for part in ("redis", "minio", "postgres", "proxy"):
        spec = mocks.inputs[part]
        assert spec["taskSpec"]["placement"]["constraints"] == [swarm.DATA]
        assert spec["mode"]["replicated"]["replicas"] == 1
        assert spec["updateConfig"]["order"] == "stop-first"
    for part, replicas in (("api", 2), ("worker", 4)):
        spec = mocks.inputs[part]
        assert spec["taskSpec"]["placement"]["constraints"] == [swarm.WORKER]
        assert spec["mode"]["replicated"]["replicas"] == replicas
        assert (spec["updateConfig"]["order"], spec["updateConfig"]["failureAction"]) == ("start-first", "pause")
    assert mocks.inputs["proxy"]["endpointSpec"]["ports"][0]["publishMode"] == "host"
    assert not mentions(mocks.inputs["api"], "correct-horse-battery")  # secrets travel as swarm secrets only


def test_restore_refuses_a_swarm_stack_before_reading_anything() -> None:
    from fetchml_infra.restore import Ask, refusal

    cfg = parse("staging", swarm_values(), SECRETS)
    said = refusal(cfg, Ask(snapshot="x", redis=True, db=False, reason="r", incident="", confirmed=False))
    assert (
        said is not None
        and said.startswith("restore: stack 'staging' runs on a swarm")
        and "nothing was changed" in said
    )
