"""The write-once sink against a real MinIO with Object Lock on 127.0.0.1: the server refuses to delete or
overwrite a locked entry; two writers never fork the chain; a failed upload heals; and every finding of
check-sink is produced here by doing what causes it."""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from botocore.exceptions import ClientError

from fetchml_infra.audit import checkpoint, findings, shipping, verify
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import SinkError, Taken, Target
from tests.providers.minio_server import Server
from tests.providers.sink_chain import BUCKET, Chain, lines


def test_locked_entries_cannot_be_deleted_or_overwritten_and_a_clean_chain_has_no_findings(chain: Chain) -> None:
    for tag in ("sha-1a2b3c4", "sha-5d6e7f8", "sha-1a2b3c4"):
        assert chain.append(to=tag) == ""
    assert chain.findings() == []
    s3, key = chain.sink._s3, chain.sink.key(1)
    version = s3.head_object(Bucket=BUCKET, Key=key)["VersionId"]
    with pytest.raises(ClientError) as refused:  # the server, not our code, refuses
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
    with pytest.raises(Taken):  # create-only: the second writer at an index is told so
        chain.sink.put_entry(1, b"anything\n")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == chain.log().read_bytes().splitlines(True)[1]


def test_two_writers_at_once_never_fork_the_chain(chain: Chain) -> None:
    chain.append("a")
    shutil.copy(chain.log("a"), chain.log("b"))  # a second operator's checkout, in step

    def operator(name: str) -> None:
        for i in range(10):
            chain.append(name, to=f"sha-{i:07d}")

    threads = [threading.Thread(target=operator, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shipping.sync(chain.log("a"), chain.sink)
    shipping.sync(chain.log("b"), chain.sink)
    assert chain.log("a").read_bytes() == chain.log("b").read_bytes()
    assert verify(str(chain.log("a"))).length == 21
    assert chain.findings("a") == []


def test_a_fresh_checkout_fills_its_mirror_from_the_sink(chain: Chain) -> None:
    for _ in range(3):
        chain.append("a")
    step = shipping.sync(chain.log("fresh"), chain.sink)
    assert (step.pulled, step.pushed) == (3, 0)
    assert chain.log("fresh").read_bytes() == chain.log("a").read_bytes()


def test_an_upload_that_failed_heals_on_the_next_append(chain: Chain, server: Server) -> None:
    chain.append()
    down = Chain(server, chain.tmp)
    down.stack, down.sink = chain.stack, Sink(Target("http://127.0.0.1:9", BUCKET, 30), chain.stack)
    down.shipping = shipping.Shipping(down.sink, chain.signer)
    note = down.append()
    assert note.startswith("written to the local log only: audit sink http://127.0.0.1:9/audit is unreachable")
    assert chain.findings() == ["SINK_BEHIND_LOCAL 1"]
    assert chain.append() == ""
    assert chain.findings() == []


def test_a_sink_that_cannot_be_reached_is_an_error_never_an_empty_sink(chain: Chain) -> None:
    with pytest.raises(SinkError, match="unreachable"):
        Sink(Target("http://127.0.0.1:9", BUCKET, 30), chain.stack).view()


# -- every finding, caused ---------------------------------------------------------------------------------


def test_local_chain_broken_and_local_behind_sink(chain: Chain) -> None:
    for _ in range(3):
        chain.append()
    data = lines(chain.log())
    chain.log().write_bytes(b"".join([data[0], data[1].replace(b"reason=test", b"reason=TEST"), data[2]]))
    assert chain.findings() == ["LOCAL_CHAIN_BROKEN 1", "FORK 1"]
    chain.log().write_bytes(b"".join(data[:2]))  # cut off the last line
    assert chain.findings() == ["LOCAL_BEHIND_SINK 2"]


def test_a_hole_and_a_stray(chain: Chain) -> None:
    for _ in range(4):
        chain.append("a")
    chain.append("b", ship=False)  # b: another log, never shipped; its line 0 goes to index 5 by hand
    chain.sink.put_entry(5, lines(chain.log("b"))[0])
    chain.sink._s3.put_object(Bucket=BUCKET, Key=f"entries/{chain.stack}/notes.txt", Body=b"hi")
    assert chain.findings() == ["MISSING_IN_SINK 4", "EXTRA_IN_SINK -", "EXTRA_IN_SINK 5"]  # 4: a hole in both


def test_sink_chain_broken(chain: Chain) -> None:
    for _ in range(2):
        chain.append()
    chain.sink.put_entry(2, b"not an entry\n")  # a writer with the sink's key but not our format
    assert chain.findings() == ["SINK_CHAIN_BROKEN 2", "LOCAL_BEHIND_SINK 2"]


def test_missing_in_sink(chain: Chain) -> None:
    for _ in range(2):
        chain.append()
    chain.append(ship=False)
    chain.append(ship=False)
    chain.sink.put_entry(3, lines(chain.log())[3])  # shipped out of order: index 2 never arrived
    assert chain.findings() == ["MISSING_IN_SINK 2", "EXTRA_IN_SINK 3"]


def test_fork(chain: Chain) -> None:
    chain.append("a")
    shutil.copy(chain.log("a"), chain.log("b"))
    chain.append("b", to="sha-0dd0c0d", ship=False)  # b writes locally while a ships its own line 1
    chain.append("a", to="sha-5d6e7f8")
    assert chain.findings("b") == ["FORK 1"]
    with pytest.raises(shipping.Diverged, match="sink's line 2 is not this log's line 2"):
        shipping.sync(chain.log("b"), chain.sink)


def test_overwrite_attempts_a_second_version_and_a_delete_marker(chain: Chain) -> None:
    for _ in range(3):
        chain.append()
    s3 = chain.sink._s3
    s3.put_object(Bucket=BUCKET, Key=chain.sink.key(0), Body=lines(chain.log())[0])  # same bytes, new version
    s3.delete_object(Bucket=BUCKET, Key=chain.sink.key(2))  # no version: a delete marker over a locked entry
    # The new version carries none of the metadata the sink writes, so it also claims no index: moved.
    assert chain.findings() == ["SINK_OVERWRITE_ATTEMPT 0", "SINK_OVERWRITE_ATTEMPT 2", "SINK_MOVED 0"]


def test_not_locked_and_retained_too_briefly(chain: Chain, server: Server) -> None:
    chain.append()
    assert chain.findings(days=365) == ["SINK_NOT_LOCKED 0"]  # locked for 30 days; the policy asks 365
    plain = Chain(server, chain.tmp, bucket="plain")
    plain.sink._s3.create_bucket(Bucket="plain")
    with pytest.raises(SinkError, match="plain"):  # the sink refuses to ship into a bucket with no lock
        plain.sink.put_entry(0, b"x\n")
    plain.append("p", ship=False)
    plain.sink._s3.put_object(Bucket="plain", Key=plain.sink.key(0), Body=lines(plain.log("p"))[0])
    assert plain.findings("p") == ["SINK_NOT_LOCKED -", "SINK_NOT_LOCKED 0", "SINK_MOVED 0"]


def test_moved_object(chain: Chain, server: Server) -> None:
    other = Chain(server, chain.tmp)
    other.append("o")
    chain.append()
    src = {"Bucket": BUCKET, "Key": other.sink.key(0)}
    chain.sink._s3.copy_object(Bucket=BUCKET, Key=chain.sink.key(1), CopySource=src)
    assert "SINK_MOVED 1" in chain.findings()


def test_checkpoint_bad_signature_mismatch_and_conflict(chain: Chain) -> None:
    chain.append()
    chain.append()
    stranger = checkpoint.create(chain.tmp / "stranger.key", "stranger")
    forged = checkpoint.Checkpoint(chain.sink.origin, 2, "ab" * 32)
    chain.sink.put_checkpoint(7, stranger.sign(checkpoint.Checkpoint(chain.sink.origin, 7, "ab" * 32)))
    key = f"checkpoints/{chain.stack}/{2:012d}"
    chain.sink._s3.put_object(Bucket=BUCKET, Key=key, Body=chain.signer.sign(forged).encode())
    assert chain.findings() == ["CHECKPOINT_BAD_SIGNATURE 7", "CHECKPOINT_MISMATCH 2", "CHECKPOINT_CONFLICT 2"]


def test_outputs_mismatch(chain: Chain) -> None:
    chain.append()
    head = lines(chain.log())[0].rstrip(b"\n")[-64:].decode()
    assert chain.findings(outputs=(1, head)) == []
    assert chain.findings(outputs=(1, "cd" * 32)) == ["OUTPUTS_MISMATCH 0"]
    assert chain.findings(outputs=(3, head)) == ["OUTPUTS_MISMATCH 2"]


APPENDER = """
import sys
from pathlib import Path
from fetchml_infra.audit import checkpoint, shipping
from fetchml_infra.audit.sink import Sink
from fetchml_infra.audit.target import Target
log, endpoint, stack, key = sys.argv[1:]
ship = shipping.Shipping(Sink(Target(endpoint, "audit", 30), stack), checkpoint.load(Path(key)))
for i in range(100000):
    shipping.append(log, ship, action="deploy", outcome="success", from_image="-", to_image="sha-1a2b3c4",
                    actor="looper", reason=f"n{i}", stack=stack)
    print(i, flush=True)
"""


def test_kill_9_mid_append_leaves_nothing_a_sync_cannot_mend(chain: Chain, server: Server) -> None:
    """SIGKILL an appender at whatever step it is in (sync, the sink's create, the local write, the checkpoint),
    several times: the next sync brings the log and the sink into step and check-sink finds nothing."""
    key = chain.tmp / "looper.key"
    key.write_text(f"{chain.signer.name}\n{base64.b64encode(chain.signer.key.private_bytes_raw()).decode()}\n")
    for delay in (0.4, 0.7, 1.1):
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(chain.log()), server.endpoint, chain.stack, str(key)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # it has appended at least once
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shipping.sync(chain.log(), chain.sink)
        assert chain.findings() == []
    assert verify(str(chain.log())).ok


def test_a_repeat_check_reads_only_what_is_new_and_still_finds_a_fork_or_a_new_version(chain: Chain) -> None:
    for _ in range(4):
        chain.append()
    data = lines(chain.log())
    known = dict(enumerate(data))
    first = chain.sink.view(known)
    assert sorted(first.checkpoints) == sorted(first.checkpoint_etags) == [1, 2, 3, 4]
    etags = first.checkpoint_etags
    view = chain.sink.view(known, (4, etags))
    assert all(e.trusted for e in view.entries.values()) and view.checkpoints == {}
    assert findings.compare(b"".join(data), view, chain.policy(), None) == []
    # A remembered checkpoint is trusted by its ETag, not its number: another ETag is read again.
    assert sorted(chain.sink.view(known, (4, {**etags, 2: '"0"'})).checkpoints) == [2]
    forged = data[1].replace(b"reason=test", b"reason=TEST")
    view = chain.sink.view({**known, 1: forged}, (4, etags))  # the local line no longer matches the sink's ETag
    assert not view.entries[1].trusted and view.entries[1].body == data[1]
    chain.sink._s3.put_object(Bucket=BUCKET, Key=chain.sink.key(2), Body=data[2])
    found = findings.compare(b"".join(data), chain.sink.view(known, (4, etags)), chain.policy(), None)
    assert [f"{f.kind} {f.index}" for f in found] == ["SINK_OVERWRITE_ATTEMPT 2", "SINK_MOVED 2"]
