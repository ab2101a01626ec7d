"""Signed checkpoints of the audit log as text: C2SP signed notes and tlog checkpoints.

A checkpoint (https://c2sp.org/tlog-checkpoint) states a log's origin, its size and the Merkle root
over its entries (``kapflow.audit.merkle``); a signed note (https://c2sp.org/signed-note, Go's
``golang.org/x/mod/sumdb/note``) carries it with one or more Ed25519 signatures. These are the formats
of Certificate Transparency's successors (Go's checksum database, Sigstore, the witness network), so a
kapflow checkpoint can be checked, and cosigned, by tools that were not written for kapflow.

This module is the text only, standard library only: the parsers are strict, because every byte a
parser lets through unchecked is a byte an attacker may choose. The cryptography is in
``kapflow.audit.signing``, the one module that imports ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from kapflow.errors import CheckpointFormatError

ALGORITHM_ED25519 = 0x01
"""The signature algorithm byte of an Ed25519 key (C2SP signed-note)."""

HASH_SIZE = 32
KEY_SIZE = 32
SIGNATURE_PREFIX = "— "
"""A signature line starts with an EM DASH (U+2014) and a space."""

MAX_SIGNATURES = 100
"""Go's limit too: a note with more signatures is refused before any is checked, so a crafted note
cannot make a verifier spend unbounded time."""

_SIZE = re.compile(r"0|[1-9][0-9]*")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_KEY_HASH = re.compile(r"[0-9a-f]{8}")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MAX_SIZE = 2**64 - 1  # C2SP: the tree size is a uint64
_PRIVATE_PREFIX = "PRIVATE+KEY+"


# --- small strict pieces -----------------------------------------------------------------------------


def _b64decode(text: str, part: str, what: str) -> bytes:
    """Standard base64 with padding, canonical only, so that one value has exactly one text."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise CheckpointFormatError(part, f"{what} is not standard base64") from None
    # Python accepts non-zero padding bits; re-encoding finds them (a second spelling of the same bytes).
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointFormatError(part, f"{what} is not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text(text: str, part: str) -> None:
    """UTF-8 with no control character but the newline, as Go's ``note.Open`` demands.

    CR, tab and NUL are refused: a note whose bytes differ from what a reader sees on screen (CRLF
    rewritten by an editor or a mail gateway, a hidden character) must not verify by accident.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointFormatError(part, "the text is not valid UTF-8") from None
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise CheckpointFormatError(part, "the text holds a control character (a CR, tab or the like)")


def _decode_utf8(data: str | bytes, part: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointFormatError(part, "the text is not valid UTF-8") from None


def is_valid_key_name(name: str) -> bool:
    """A key name is non-empty with no ``+`` (the key text's separator) and no whitespace (the signature
    line's separator); a newline is whitespace."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _check_key_name(name: str, part: str) -> None:
    if not is_valid_key_name(name):
        raise CheckpointFormatError(
            part, "a key name must be non-empty, with no '+', space or newline; choose another name"
        )


# --- keys --------------------------------------------------------------------------------------------


def key_hash(name: str, public_key: bytes) -> int:
    """The key id: the first 4 bytes, big-endian, of ``SHA-256(name || "\\n" || 0x01 || public key)``.

    Binding the name into the hash means a signature line's name and id pick one key, and a key
    renamed in a file no longer matches the signatures it made.
    """
    _check_key_name(name, "verifier key")
    if len(public_key) != KEY_SIZE:
        raise CheckpointFormatError("verifier key", f"an Ed25519 public key is {KEY_SIZE} bytes")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALGORITHM_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def key_id_hex(key_id: int) -> str:
    """A key id as it is written in key texts and messages: 8 lowercase hex digits."""
    return f"{key_id:08x}"


def verifier_key_text(name: str, public_key: bytes) -> str:
    """``<name>+<key id>+<base64(0x01 || public key)>``: the public key, safe to publish."""
    key_id = key_hash(name, public_key)
    return f"{name}+{key_id_hex(key_id)}+{_b64encode(bytes([ALGORITHM_ED25519]) + public_key)}"


def signer_key_text(name: str, seed: bytes, public_key: bytes) -> str:
    """``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>``: the secret key, Go's format.

    The key id is the public key's, which only ``signing`` can derive from the seed (this module
    has no Ed25519), so the caller passes it. The prefix makes a private key unmistakable in a
    file, a diff or a paste.
    """
    key_id = key_hash(name, public_key)
    if len(seed) != KEY_SIZE:
        raise CheckpointFormatError("signer key", f"an Ed25519 seed is {KEY_SIZE} bytes")
    return f"{_PRIVATE_PREFIX}{name}+{key_id_hex(key_id)}+{_b64encode(bytes([ALGORITHM_ED25519]) + seed)}"


def _split_key(text: str, part: str) -> tuple[str, int, bytes]:
    """``name+hash+base64`` into the name, the key id and the 32-byte key after the algorithm byte.

    The base64 may itself hold ``+``, so only the first two separators split; the name cannot hold one.
    Reasons never quote ``text``: for a signer key it is the secret.
    """
    pieces = text.split("+", 2)
    if len(pieces) != 3:
        raise CheckpointFormatError(part, "expected <name>+<8 hex digits>+<base64 key>")
    name, hash_hex, key_b64 = pieces
    _check_key_name(name, part)
    if not _KEY_HASH.fullmatch(hash_hex):
        raise CheckpointFormatError(part, "the key id must be 8 lowercase hex digits")
    raw = _b64decode(key_b64, part, "the key")
    if len(raw) != 1 + KEY_SIZE:
        raise CheckpointFormatError(part, f"the key must be 1 algorithm byte and {KEY_SIZE} key bytes")
    if raw[0] != ALGORITHM_ED25519:
        raise CheckpointFormatError(part, f"unknown algorithm {raw[0]}; only Ed25519 (1) is supported")
    return name, int(hash_hex, 16), raw[1:]


def parse_verifier_key(text: str) -> tuple[str, int, bytes]:
    """A verifier key text into (name, key id, 32-byte public key), checking the id matches the key."""
    name, key_id, public_key = _split_key(text, "verifier key")
    if key_hash(name, public_key) != key_id:
        raise CheckpointFormatError(
            "verifier key", f"the key id of {name!r} does not match its key; the key text was damaged, copy it again"
        )
    return name, key_id, public_key


def parse_signer_key(text: str) -> tuple[str, int, bytes]:
    """A signer key text into (name, key id, 32-byte seed).

    The key id is checked by ``signing``, which derives the public key from the seed.
    """
    if not text.startswith(_PRIVATE_PREFIX):
        raise CheckpointFormatError("signer key", "a signer key starts with PRIVATE+KEY+; is this a verifier key?")
    return _split_key(text[len(_PRIVATE_PREFIX) :], "signer key")


# --- checkpoints -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: its origin, size, Merkle root and when kapflow made it.

    ``at`` is kept in UTC to the second, the precision the ``time`` line carries, so that a checkpoint
    equals the one parsed back from its body.
    """

    origin: str
    size: int
    root: bytes
    at: datetime

    def __post_init__(self) -> None:
        _check_origin(self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 0 <= self.size <= _MAX_SIZE:
            raise CheckpointFormatError("checkpoint", "the tree size must be an integer from 0 to 2**64-1")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointFormatError("checkpoint", f"the root hash must be {HASH_SIZE} bytes")
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise CheckpointFormatError("checkpoint", "the time must be timezone-aware: a naive time is ambiguous")
        try:
            at = self.at.astimezone(UTC).replace(microsecond=0)
        except OverflowError:
            raise CheckpointFormatError("checkpoint", "the time is outside the years 1 to 9999 in UTC") from None
        object.__setattr__(self, "at", at)

    def body(self) -> str:
        """The checkpoint's text: origin, size, base64 root and kapflow's ``time`` extension line."""
        return f"{self.origin}\n{self.size}\n{_b64encode(self.root)}\ntime {_format_time(self.at)}\n"

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        """A checkpoint from its text, refusing anything kapflow would not have written."""
        _check_text(text, "checkpoint")
        if not text.endswith("\n"):
            raise CheckpointFormatError("checkpoint", "the last line must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 4:
            raise CheckpointFormatError(
                "checkpoint", f"expected 4 lines (origin, size, root hash, time), found {len(lines)}"
            )
        origin, size, root_b64, time_line = lines
        return cls(origin=origin, size=_parse_size(size), root=_parse_root(root_b64), at=_parse_time(time_line))


def _check_origin(origin: str) -> None:
    if not origin or origin != origin.strip() or "\n" in origin:
        raise CheckpointFormatError(
            "checkpoint", "the origin must be a non-empty line with no leading or trailing space"
        )
    _check_text(origin, "checkpoint")


def _parse_size(text: str) -> int:
    if not _SIZE.fullmatch(text) or int(text) > _MAX_SIZE:
        raise CheckpointFormatError(
            "checkpoint", "the tree size must be a decimal from 0 to 2**64-1, with no sign or leading zero"
        )
    return int(text)


def _parse_root(text: str) -> bytes:
    root = _b64decode(text, "checkpoint", "the root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointFormatError("checkpoint", f"the root hash must be {HASH_SIZE} bytes")
    return root


def _format_time(at: datetime) -> str:
    # Not strftime: its %Y leaves a year before 1000 unpadded on glibc, which the parser would refuse.
    return f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at.hour:02d}:{at.minute:02d}:{at.second:02d}Z"


def _parse_time(line: str) -> datetime:
    keyword, _, stamp = line.partition(" ")
    if keyword != "time" or not _TIME.fullmatch(stamp):
        raise CheckpointFormatError("checkpoint", "the 4th line must be 'time YYYY-MM-DDTHH:MM:SSZ' (UTC)")
    try:
        return datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise CheckpointFormatError("checkpoint", "the time line names no real date and time") from None


# --- signed notes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key's name, its key id and the 64-byte Ed25519 signature.

    ``signature`` is whatever followed the key id (at least one byte): a key of another algorithm
    may sign a note too, and such a line must parse so that it can be ignored.
    """

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name, "signed note")
        if not 0 <= self.key_id < 2**32:
            raise CheckpointFormatError("signed note", "a key id is a 32-bit unsigned integer")
        if not self.signature:
            raise CheckpointFormatError("signed note", "a signature must hold at least one byte after the key id")

    def line(self) -> str:
        """The signature line, with its newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIGNATURE_PREFIX}{self.name} {_b64encode(blob)}\n"


@dataclass(frozen=True)
class SignedNote:
    """A note's body (the signed text) and its signatures, in the order they appear."""

    body: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_body(self.body)
        if not self.signatures:
            raise CheckpointFormatError("signed note", "a signed note needs at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise CheckpointFormatError("signed note", f"more than {MAX_SIGNATURES} signatures")

    def text(self) -> str:
        """The whole note: the body, a blank line, the signature lines."""
        return self.body + "\n" + "".join(sig.line() for sig in self.signatures)

    @classmethod
    def parse(cls, text: str | bytes) -> SignedNote:
        """A note from its text (or UTF-8 bytes), refusing any form Go's ``note.Open`` would refuse,
        and a blank line inside the body, which kapflow never writes."""
        decoded = _decode_utf8(text, "signed note")
        _check_text(decoded, "signed note")
        # The body has no blank line, so the first one is the separator.
        body, sep, block = decoded.partition("\n\n")
        if not sep:
            raise CheckpointFormatError("signed note", "no blank line between the text and the signatures")
        body += "\n"
        check_body(body)
        if not block.endswith("\n"):
            raise CheckpointFormatError(
                "signed note", "signature lines must follow the blank line, each ending in a newline"
            )
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise CheckpointFormatError("signed note", f"more than {MAX_SIGNATURES} signatures")
        return cls(body=body, signatures=tuple(_parse_signature_line(line) for line in lines))


def check_body(body: str) -> None:
    """A note's body: non-empty lines, each ending in a newline, no control character but those.

    A blank line would end the body early for a reader of the note, so it is refused when signing
    as well as when parsing.
    """
    _check_text(body, "signed note")
    if not body or not body.endswith("\n"):
        raise CheckpointFormatError("signed note", "the signed text must be non-empty and end with a newline")
    if body.startswith("\n") or "\n\n" in body:
        raise CheckpointFormatError("signed note", "the signed text must not hold a blank line")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise CheckpointFormatError(
            "signed note", "after the blank line every line must be a signature ('— <key name> <base64>')"
        )
    name, _, blob_b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    _check_key_name(name, "signed note")
    blob = _b64decode(blob_b64, "signed note", "a signature")
    if len(blob) < 5:
        raise CheckpointFormatError("signed note", "a signature must hold a 4-byte key id and the signature bytes")
    return NoteSignature(name=name, key_id=int.from_bytes(blob[:4], "big"), signature=blob[4:])
