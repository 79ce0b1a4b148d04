"""What a HIPAA rollback carries on the real engine: an incident report (required; pinned in the entry by its
sha256, kept beside the log and write-once in the sink) and the notify hook (a local HTTP receiver gets the
entry, the checklist and the incident hash; a dead hook is reported, never fatal). Plain `pulumi up` rollbacks
notify too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fetchml_infra import incident, notify
from fetchml_infra.audit import checkpoint
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import Target
from tests.e2e.project import Project, throwaway
from tests.e2e.test_rollback_story import ok
from tests.providers.minio_server import minio
from tests.providers.scripted_server import free_port

pytestmark = pytest.mark.e2e
A, B = "sha-1a2b3c4", "sha-5d6e7f8"
REPORT = "why-rolled-back: B slowed the job API\nimpact-on-phi-handling: none\nexposure-risk: none\n"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rollback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Project, Receiver, Sink]]:
    receiver = Receiver()
    with minio(tmp_path / "sink-data") as server:
        for k, v in server.env.items():
            monkeypatch.setenv(k, v)
        key = checkpoint.create(tmp_path / "host.key", "deploy-host")
        monkeypatch.setenv("FETCHML_AUDIT_KEY", str(tmp_path / "host.key"))
        Sink(Target(server.endpoint, "audit", 30), "-").create_bucket()
        with throwaway(
            tmp_path,
            image=A,
            environment="prod",
            complianceMode="hipaa",
            autoRollback="false",
            auditSink=f"{server.endpoint}/audit",
            auditRetentionDays="30",
            auditSigners=f"{key.name}:{key.public()}",
        ) as p:
            ok(p.pulumi("config", "set", "--secret", "fetchml:notifyWebhook", receiver.url))  # it carries a token
            yield p, receiver, Sink(Target(server.endpoint, "audit", 30), p.stack_name)
    receiver.server.shutdown()


def test_a_hipaa_rollback_needs_an_incident_report_and_notifies(
    setup: tuple[Project, Receiver, Sink], tmp_path: Path
) -> None:
    p, receiver, sink = setup
    ok(p.cli("deploy", "--image", A, "--reason", "first"))
    ok(p.cli("deploy", "--image", B, "--reason", "second"))
    serving = p.outputs()["routed"]

    refused = p.cli("rollback", "--reason", "b-regressed")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "needs an incident report; nothing was changed" in refused.stderr
    assert "impact-on-phi-handling: " in refused.stderr  # the template, ready to fill in
    half = tmp_path / "half.txt"
    half.write_text("why-rolled-back: slow\nimpact-on-phi-handling:\n")
    refused = p.cli("rollback", "--reason", "b-regressed", "--incident", str(half))
    assert refused.returncode == 2
    assert "leaves impact-on-phi-handling, exposure-risk empty or missing" in refused.stderr
    assert p.outputs()["routed"] == serving and [e.to_image for e in p.chain()] == [A, B]
    assert receiver.bodies == []

    report = tmp_path / "incident.txt"
    report.write_text(REPORT)
    sha = incident.read(report, hipaa=True).sha256
    out = ok(p.cli("rollback", "--reason", "b-regressed", "--incident", str(report)))
    last = p.chain()[-1]
    assert (last.action, last.to_image) == ("rollback", A)
    assert last.reason == f"b-regressed incident={sha}"
    assert (p.audit_log.parent / "incidents" / p.stack_name / sha).read_text() == REPORT
    assert sink.body(f"incidents/{p.stack_name}/{sha}") == REPORT.encode()
    assert f"notified {notify.shown(receiver.url)}: HTTP 204" in out and "/hooks/" not in out  # no token printed
    [body] = receiver.bodies
    assert body["entry"]["line"] == last.render() and body["incident"] == sha
    names = [c["name"] for c in body["checklist"]]
    assert names == [
        *("health", "compliance_mode", "queue state", "audit chain", "audit sink"),
        *("database", "schema version", "migrations pending"),
    ]
    assert all(c["ok"] for c in body["checklist"]), body["checklist"]

    # The 3 a.m. path notifies too (the program's AuditEntry sends it, with what it knows).
    ok(p.cli("deploy", "--image", B, "--reason", "again"))
    ok(p.pulumi("config", "set", "fetchml:image", A))
    ok(p.pulumi("up", "--yes", "--skip-preview"))
    assert len(receiver.bodies) == 2
    assert receiver.bodies[1]["entry"]["to_image"] == A
    assert [c["name"] for c in receiver.bodies[1]["checklist"]] == ["health gate", "audit chain"]
    outputs = json.loads(ok(p.pulumi("stack", "output", "--json")))
    assert outputs.get("audit_shipping", "") == ""  # the hook's answer is not an unshipped audit entry
    state = ok(p.pulumi("stack", "export"))
    assert "/hooks/rollback" not in state  # the hook URL is a secret in the state

    # A dead hook is reported and changes nothing else.
    ok(p.cli("deploy", "--image", B, "--reason", "third"))
    ok(p.pulumi("config", "set", "--secret", "fetchml:notifyWebhook", f"http://127.0.0.1:{free_port()}/gone"))
    out = ok(p.cli("rollback", "--reason", "b-regressed-again", "--incident", str(report)))
    assert "notify hook http://127.0.0.1:" in out and "failed: ConnectError" in out and "/gone" not in out
    assert p.chain()[-1].to_image == A
    assert "ok: " in ok(p.cli("audit", "check-sink"))

    # A hook set in plain text would sit in the state and the config file as it is: refused, not echoed.
    ok(p.pulumi("config", "set", "fetchml:notifyWebhook", "http://127.0.0.1:9/T0/plain-token"))
    plain = p.cli("deploy", "--image", B, "--reason", "fourth")
    assert plain.returncode == 2 and "notifyWebhook: expected a secret" in plain.stderr
    assert "plain-token" not in plain.stdout + plain.stderr and p.chain()[-1].to_image == A
