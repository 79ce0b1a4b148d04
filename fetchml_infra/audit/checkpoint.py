"""Signed checkpoints of a chain: (origin, length, head) in a C2SP signed note, Ed25519, one key per deploy host.

A checkpoint is the note text ``<origin>\\n<length>\\n<base64 of the head hash's 32 bytes>\\n``, a blank line,
and one signature line per signer: ``— <key name> <base64(4-byte key ID || signature)>``. The key ID is the
first four bytes of sha256(name || "\\n" || 0x01 || public key), as in C2SP signed-note.md, so any tool that
reads signed notes can check ours. Signatures from keys a verifier does not know are ignored (rotation, a
second host); a note that no trusted key verifies is rejected.

What a signature buys: anyone with the public key can check a checkpoint offline. What it does not: a host's
root can read that host's key. History is protected by the write-once sink, and by verifiers that remember
the longest chain they have seen.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_DASH = "\u2014"  # the em dash that starts a signature line
_ED25519 = b"\x01"


class CheckpointError(ValueError):
    """A note that is malformed or that no trusted key verifies; the message says which."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    length: int
    head: str  # 64 hex digits

    def text(self) -> str:
        return f"{self.origin}\n{self.length}\n{base64.b64encode(bytes.fromhex(self.head)).decode()}\n"


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """This host's signing key and the name its signatures carry."""

    name: str
    key: Ed25519PrivateKey

    def public(self) -> str:
        """The public key as config lists it: base64 of its 32 bytes."""
        return base64.b64encode(public_bytes(self.key)).decode()

    def sign(self, checkpoint: Checkpoint) -> str:
        text = checkpoint.text()
        sig = key_id(self.name, public_bytes(self.key)) + self.key.sign(text.encode())
        return f"{text}\n{_DASH} {self.name} {base64.b64encode(sig).decode()}\n"


def parse_signers(value: str) -> dict[str, bytes]:
    """``name:base64-public-key`` pairs separated by commas (config ``auditSigners``); ValueError naming the
    pair that is wrong."""
    out: dict[str, bytes] = {}
    for pair in filter(None, (p.strip() for p in value.split(","))):
        name, sep, key = pair.partition(":")
        try:
            raw = base64.b64decode(key, validate=True) if sep else b""
        except ValueError:
            raw = b""
        if not NAME.fullmatch(name) or len(raw) != 32:
            raise ValueError(
                f"expected name:key pairs separated by commas, the name of letters, digits and ._@- and the key "
                f"the base64 of 32 bytes (fetchml-infra audit keygen prints one); saw {pair!r}"
            )
        if name in out:
            raise ValueError(f"expected each signer once; {name!r} is listed twice")
        out[name] = raw
    return out


def verify(note: str, trusted: dict[str, bytes]) -> tuple[Checkpoint, str]:
    """The checkpoint a note holds and the trusted signer that verified it; CheckpointError otherwise."""
    text, sep, sigs = note.partition("\n\n")
    lines = text.split("\n")
    if not sep or len(lines) != 3:
        raise CheckpointError("expected origin, length and head lines, a blank line, then signature lines")
    origin, length, head64 = lines
    try:
        head = base64.b64decode(head64, validate=True)
    except ValueError:
        head = b""
    if not length.isdigit() or len(head) != 32 or not origin:
        raise CheckpointError(f"expected a decimal length and a base64 32-byte head; saw {length!r}, {head64!r}")
    body = (text + "\n").encode()
    for line in sigs.splitlines():
        _, name, sig64 = [*line.split(" "), "", ""][:3] if line.startswith(_DASH + " ") else ("", "", "")
        public = trusted.get(name)
        try:
            sig = base64.b64decode(sig64, validate=True)
        except ValueError:
            continue
        if public is None or sig[:4] != key_id(name, public):
            continue  # an unknown key: ignored, as signed notes require
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], body)
        except InvalidSignature:
            raise CheckpointError(f"the signature of {name} does not verify") from None
        return Checkpoint(origin, int(length), head.hex()), name
    raise CheckpointError(f"no signature by a trusted key (trusted: {', '.join(sorted(trusted)) or 'none'})")


def default_key_path() -> Path:
    """This host's key: $FETCHML_AUDIT_KEY, else ~/.config/fetchml-infra/audit-signing.key."""
    explicit = os.environ.get("FETCHML_AUDIT_KEY")
    return Path(explicit) if explicit else Path.home() / ".config" / "fetchml-infra" / "audit-signing.key"


def default_name() -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "-", f"{getpass.getuser()}@{socket.gethostname()}")[:64]


def load(path: Path) -> Signer:
    """The key in ``path`` (``<name>\\n<base64 private key>\\n``); CheckpointError naming the file."""
    try:
        name, raw = path.read_text().split("\n")[:2]
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw, validate=True))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no audit signing key on this host; create one with: fetchml-infra audit keygen"
        ) from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: expected a name line and a base64 Ed25519 key line: {exc}") from None
    return Signer(name, key)


def create(path: Path, name: str) -> Signer:
    """A new key written to ``path`` (mode 600, never over an existing one)."""
    if not NAME.fullmatch(name):
        raise CheckpointError(f"--name: expected letters, digits and ._@- (at most 64), saw {name!r}")
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CheckpointError(f"{path}: a key is already there; it is kept (remove it by hand to replace it)") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{name}\n{base64.b64encode(raw).decode()}\n")
    return Signer(name, key)
