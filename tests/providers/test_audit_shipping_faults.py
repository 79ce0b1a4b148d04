"""The bad nights of shipping, on a real MinIO: an answer lost after the sink took the line, a create that
meets another in flight (409), the sink failing mid-append or right after a lost race, a torn local line, a
broken local chain, a move decided on a stale view of the chain, and objects whose names only look right.
Each scenario asserts what the operator would see: the lines in both places, the note, check-sink's findings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from fetchml_infra import recording
from fetchml_infra.audit import AuditError, checkpoint, line, shipping, verify
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import SinkError, Taken, Target
from tests.providers.minio_server import Server
from tests.providers.scripted_server import free_port
from tests.providers.sink_chain import BUCKET, Chain, lines

A, B = "sha-1a2b3c4", "sha-5d6e7f8"


def wrap_put(sink: Sink, around: Callable[[Callable[..., Any], dict[str, Any], int], Any]) -> None:
    """Route ``sink``'s PutObject calls through ``around(real, kwargs, call_number)``."""
    real, calls = sink._s3.put_object, [0]

    def put(**kwargs: Any) -> Any:
        calls[0] += 1
        return around(real, kwargs, calls[0])

    sink._s3.put_object = put


def stale_once(sink: Sink, then: Callable[[int], list[bytes]] | None = None) -> None:
    """The first read of the sink's newer lines sees none (another writer's create lands just after it)."""
    real, seen = sink.lines_from, [0]

    def lines_from(index: int) -> list[bytes]:
        seen[0] += 1
        if seen[0] == 1:
            return []
        return then(index) if then else real(index)

    sink.lines_from = lines_from  # type: ignore[method-assign]


def second_operator(chain: Chain) -> shipping.Shipping:
    """Another operator's shipping of the same stack: its own S3 client, the same bucket."""
    return shipping.Shipping(Sink(chain.sink.target, chain.stack), chain.signer)


def test_a_lost_answer_to_our_own_create_is_not_a_lost_race(chain: Chain) -> None:
    chain.append()
    # The sink takes the line but the answer is lost; the retry of the same call meets 412 on its own line.
    wrap_put(chain.sink, lambda real, kw, n: (real(**kw), real(**kw))[1] if "entries/" in kw["Key"] else real(**kw))
    assert chain.append(to=B) == ""
    assert len(lines(chain.log())) == 2 and chain.sink.length() == 2  # one entry, not a second on top of it
    assert chain.findings() == []


def test_the_same_bytes_from_another_writer_are_still_taken(chain: Chain) -> None:
    chain.append()
    line = lines(chain.log())[0]
    with pytest.raises(Taken):  # only this call's own earlier try counts as done, never a look-alike
        Sink(chain.sink.target, chain.stack).put_entry(0, line)


def test_a_create_that_meets_another_in_flight_waits_for_its_outcome(chain: Chain) -> None:
    def busy_first(real: Callable[..., Any], kw: dict[str, Any], n: int) -> Any:
        if n == 1:
            error = {"Error": {"Code": "ConditionalRequestConflict"}, "ResponseMetadata": {"HTTPStatusCode": 409}}
            raise ClientError(error, "PutObject")
        return real(**kw)

    wrap_put(chain.sink, busy_first)
    assert chain.append() == ""  # not "written to the local log only"
    assert chain.sink.length() == 1 and chain.findings() == []


def test_a_sink_that_fails_on_the_create_gets_the_same_entry_later(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain.append()
    made: list[int] = []
    real_make = line.make_entry

    def make(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return real_make(*args, **kwargs)

    monkeypatch.setattr("fetchml_infra.audit.shipping.make_entry", make)

    def down(real: Callable[..., Any], kw: dict[str, Any], n: int) -> Any:
        raise EndpointConnectionError(endpoint_url=chain.sink.target.endpoint)

    wrap_put(chain.sink, down)
    entry, note = shipping.append(chain.log(), chain.shipping, action="deploy", outcome="success", from_image=A,
                                  to_image=B, actor="tester", reason="sink-down", stack=chain.stack)  # fmt: skip
    assert note.startswith("written to the local log only: audit sink") and "unreachable" in note
    assert len(made) == 1  # the entry made once, its time kept: not a second one after the failure
    assert lines(chain.log())[-1] == (entry.render() + "\n").encode()
    chain.sink._s3 = Sink(chain.sink.target, chain.stack)._s3  # the sink is back
    assert chain.append(to=A) == ""
    assert chain.sink.length() == 3 and chain.findings() == []


def test_a_broken_local_chain_is_never_shipped(chain: Chain) -> None:
    chain.append(ship=False)
    chain.append(ship=False, to=B)
    data = lines(chain.log())
    chain.log().write_bytes(data[0].replace(b"reason=test", b"reason=TEST") + data[1])
    with pytest.raises(shipping.Diverged, match="line 1: .*nothing was sent to the audit sink"):
        shipping.sync(chain.log(), chain.sink)
    assert chain.sink.length() == 0


def test_losing_a_race_then_the_sink_writes_nothing_locally(chain: Chain) -> None:
    chain.append("a")
    chain.log("b").write_bytes(chain.log("a").read_bytes())
    mine = second_operator(chain)

    def gone(_index: int) -> list[bytes]:
        raise SinkError("audit sink: unreachable (test)")

    stale_once(mine.sink, then=gone)
    chain.append("b", to=B)  # the other operator takes line 2
    before = chain.log("a").read_bytes()
    with pytest.raises(AuditError, match="lost a race for a line of the audit sink, then: audit sink: unreachable"):
        shipping.append(chain.log("a"), mine, action="deploy", outcome="success", from_image=A, to_image=B,
                        actor="tester", reason="race", stack=chain.stack)  # fmt: skip
    assert chain.log("a").read_bytes() == before  # no line 2 of our own beside the sink's: no fork
    shipping.sync(chain.log("a"), chain.sink)
    assert chain.log("a").read_bytes() == chain.log("b").read_bytes()


def test_a_move_is_decided_on_the_chain_the_sink_holds(chain: Chain) -> None:
    """Two operators roll the stack to the same image at once: the second sees the first's entry only when its
    create loses the race, and then records nothing, since the chain already says the stack is there."""
    a, b = second_operator(chain), second_operator(chain)
    kw: dict[str, Any] = dict(actor="tester", outcome="success", reason="same-move", stack=chain.stack)
    assert recording.record_move(str(chain.log("a")), image=A, shipping=a, **kw) is not None
    chain.log("b").write_bytes(chain.log("a").read_bytes())
    assert recording.record_move(str(chain.log("b")), image=B, shipping=b, **kw) is not None
    stale_once(a.sink)
    assert recording.record_move(str(chain.log("a")), image=B, shipping=a, **kw) is None
    assert chain.log("a").read_bytes() == chain.log("b").read_bytes()
    assert [(e.from_image, e.to_image) for e in verify_entries(chain.log("a"))] == [("none", A), (A, B)]


def verify_entries(log: Path) -> list[Any]:
    from fetchml_infra.audit import entries

    assert verify(str(log)).ok
    return entries(str(log))


def test_a_torn_local_line_is_completed_from_the_sink(chain: Chain) -> None:
    chain.append()
    chain.append(to=B)
    whole = chain.log().read_bytes()
    chain.log().write_bytes(whole[:-30])  # the host died in the local write, after the sink took the line
    assert chain.append(to=A) == ""
    assert chain.log().read_bytes().startswith(whole) and verify(str(chain.log())).length == 3
    assert chain.findings() == []


def test_a_torn_local_line_is_not_sealed_while_the_sink_is_away(chain: Chain, tmp_path: Path) -> None:
    chain.append()
    chain.append(to=B)
    whole = chain.log().read_bytes()
    chain.log().write_bytes(whole[:-30])
    away = Sink(Target(f"http://127.0.0.1:{free_port()}", BUCKET, 30), chain.stack)
    with pytest.raises(AuditError, match="Do not seal it: bring the sink back, then run fetchml-infra audit sync"):
        shipping.sync(chain.log(), away)
    assert chain.log().read_bytes() == whole[:-30]
    shipping.sync(chain.log(), chain.sink)  # back: the line is whole again
    assert chain.log().read_bytes() == whole


def test_a_torn_line_that_never_reached_the_sink_is_sealed_as_before(chain: Chain) -> None:
    chain.append()
    chain.append(to=B, ship=False)
    chain.log().write_bytes(chain.log().read_bytes()[:-30])
    with pytest.raises(AuditError, match="fetchml-infra audit seal"):
        shipping.sync(chain.log(), chain.sink)


def test_a_checkpoint_past_the_chain_or_of_nothing_is_a_finding(chain: Chain) -> None:
    chain.append()
    head = verify(str(chain.log())).head
    for length in (0, 9):
        note = chain.signer.sign(checkpoint.Checkpoint(chain.sink.origin, length, head))
        chain.sink._s3.put_object(Bucket=BUCKET, Key=f"checkpoints/{chain.stack}/{length:012d}", Body=note.encode())
    assert chain.findings() == ["CHECKPOINT_MISMATCH 0", "CHECKPOINT_MISMATCH 9"]


def test_keys_that_only_look_like_indices_are_strays(chain: Chain) -> None:
    chain.append()
    note = chain.sink.body(f"checkpoints/{chain.stack}/{1:012d}")
    s3 = chain.sink._s3
    s3.put_object(Bucket=BUCKET, Key=f"checkpoints/{chain.stack}/0000000001", Body=note)  # ten digits
    s3.put_object(
        Bucket=BUCKET, Key=f"entries/{chain.stack}/{chr(0x660) * 11}1", Body=lines(chain.log())[0]
    )  # Arabic-Indic
    assert chain.findings() == ["EXTRA_IN_SINK -", "EXTRA_IN_SINK -"]


@pytest.fixture
def metadata_service() -> Iterator[tuple[str, list[str]]]:
    """An EC2 instance metadata stand-in on 127.0.0.1 that records every request."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_PUT = do_GET

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", asked
    finally:
        server.shutdown()


def test_the_sink_never_takes_a_machines_role(
    server: Server, metadata_service: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, asked = metadata_service
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(SinkError, match="Unable to locate credentials"):
        Sink(Target(server.endpoint, BUCKET, 30), "s").sha256_at(0)
    assert asked == []


def test_a_profile_that_does_not_exist_is_a_sink_error(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    sink = Sink(Target(server.endpoint, BUCKET, 30), "s")  # made before the profile is read: no traceback
    with pytest.raises(SinkError, match="cannot set up its client: .*no-such-profile"):
        sink.sha256_at(0)


def test_a_profile_that_takes_the_machines_credentials_is_refused(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile borrowed]\nrole_arn = arn:aws:iam::1:role/x\ncredential_source = Ec2InstanceMetadata\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "borrowed")
    with pytest.raises(SinkError, match="takes its credentials from the machine"):
        Sink(Target(server.endpoint, BUCKET, 30), "s").sha256_at(0)


def test_a_create_contested_and_then_unreadable_writes_nothing_locally(chain: Chain) -> None:
    chain.append()
    mine = second_operator(chain)
    real_call, put = mine.sink._call, []

    def call(what: str, fn: Any, **kwargs: Any) -> Any:
        if what.startswith("writing entries/"):  # another create of this key is in flight (409) ...
            put.append(1)
            error = {"Error": {"Code": "ConditionalRequestConflict"}, "ResponseMetadata": {"HTTPStatusCode": 409}}
            return real_call(what, lambda **_: (_ for _ in ()).throw(ClientError(error, "PutObject")), **kwargs)
        if put and what.startswith("reading entries/"):  # ... and then the sink goes away
            raise SinkError("audit sink: unreachable (test)")
        return real_call(what, fn, **kwargs)

    mine.sink._call = call  # type: ignore[method-assign]
    before = chain.log().read_bytes()
    with pytest.raises(AuditError, match="line 2 of the audit sink is contested"):
        shipping.append(chain.log(), mine, action="deploy", outcome="success", from_image=A, to_image=B,
                        actor="tester", reason="contested", stack=chain.stack)  # fmt: skip
    assert chain.log().read_bytes() == before


def test_a_two_operator_race_of_many_appends_leaves_one_chain(chain: Chain) -> None:
    """Both operators' own S3 clients, 8 appends each at once: the sink and both logs hold one chain."""
    chain.append("a")
    chain.log("b").write_bytes(chain.log("a").read_bytes())
    ships = {"a": second_operator(chain), "b": second_operator(chain)}

    def operator(name: str) -> None:
        for i in range(8):
            shipping.append(chain.log(name), ships[name], action="deploy", outcome="success", from_image=A,
                            to_image=B, actor=name, reason=f"r{i}", stack=chain.stack)  # fmt: skip

    threads = [threading.Thread(target=operator, args=(n,)) for n in ships]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ships:
        shipping.sync(chain.log(name), chain.sink)
    assert chain.log("a").read_bytes() == chain.log("b").read_bytes()
    assert verify(str(chain.log("a"))).length == 17 and chain.findings() == []
