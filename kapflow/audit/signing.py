"""Ed25519 keys, signing and verification of the audit log's signed notes (``kapflow.audit.note``).

The one module of kapflow that imports ``cryptography``: the rest sees kapflow's own types and
exceptions, so the library could be replaced here alone. Keys are Go's ``sumdb/note`` key texts,
so a checkpoint kapflow signs can be checked with Go's ``note.Open`` and its witnesses, and back.

Key material never reaches a log line, an exception message or a ``repr``: a signer's seed is a
secret that outlives any process that printed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kapflow.audit.note import (
    NoteSignature,
    SignedNote,
    check_body,
    key_hash,
    key_id_hex,
    parse_signer_key,
    parse_verifier_key,
    signer_key_text,
    verifier_key_text,
)
from kapflow.errors import CheckpointFormatError, SignatureInvalid

SIGNATURE_SIZE = 64


class Ed25519Signer:
    """A named Ed25519 private key that signs notes; its ``repr`` shows the name and key id only."""

    __slots__ = ("_key", "key_id", "name", "public_key_bytes")

    def __init__(self, name: str, seed: bytes) -> None:
        try:
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
        except (ValueError, UnsupportedAlgorithm):
            # cryptography's message might describe the input; ours never does.
            raise CheckpointFormatError("signer key", "the Ed25519 seed could not be loaded") from None
        self.name = name
        self.public_key_bytes = self._key.public_key().public_bytes_raw()
        self.key_id = key_hash(name, self.public_key_bytes)

    @classmethod
    def from_text(cls, text: str) -> Ed25519Signer:
        """A signer from its key text (``PRIVATE+KEY+...``), surrounding whitespace of a key file allowed.

        The key id in the text must be the derived public key's: otherwise the text was damaged, and
        it would sign notes no verifier of this key accepts.
        """
        name, key_id, seed = parse_signer_key(text.strip())
        signer = cls(name, seed)
        if signer.key_id != key_id:
            raise CheckpointFormatError(
                "signer key",
                f"the key id of {name!r} does not match its key: the key file is damaged; restore it from a "
                "backup, or generate a new key and publish its verifier key",
            )
        return signer

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def verifier_text(self) -> str:
        """The public verifier key text of this signer, to publish."""
        return verifier_key_text(self.name, self.public_key_bytes)

    def verifier(self) -> Ed25519Verifier:
        """The verifier of this signer's signatures."""
        return Ed25519Verifier(self.name, self.key_id, self.public_key_bytes)

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self.name!r}, key_id={key_id_hex(self.key_id)!r})"


@dataclass(frozen=True)
class Ed25519Verifier:
    """A named Ed25519 public key that checks signatures made by the signer of the same name and id."""

    name: str
    key_id: int
    public_key: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if key_hash(self.name, self.public_key) != self.key_id:
            raise CheckpointFormatError("verifier key", f"the key id of {self.name!r} does not match its key")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except (ValueError, UnsupportedAlgorithm):
            raise CheckpointFormatError("verifier key", "the Ed25519 public key could not be loaded") from None
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_text(cls, text: str) -> Ed25519Verifier:
        """A verifier from its key text (``<name>+<id>+<base64>``), surrounding whitespace allowed."""
        return cls(*parse_verifier_key(text.strip()))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``; a malformed one is just False."""
        if len(signature) != SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def text(self) -> str:
        """The verifier key text."""
        return verifier_key_text(self.name, self.public_key)


def generate_key(name: str) -> tuple[str, str]:
    """A new random key named ``name``: (signer key text, the secret; verifier key text, to publish)."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public_key = key.public_key().public_bytes_raw()
    return signer_key_text(name, seed, public_key), verifier_key_text(name, public_key)


def sign_note(body: str, signer: Ed25519Signer) -> SignedNote:
    """``body`` signed by ``signer``: the signature is over the body's UTF-8 bytes exactly."""
    check_body(body)  # before signing: a signature over text no reader can parse must never exist
    signature = NoteSignature(signer.name, signer.key_id, signer.sign(body.encode("utf-8")))
    return SignedNote(body, (signature,))


def open_note(text: str | bytes, verifiers: Sequence[Ed25519Verifier]) -> SignedNote:
    """The note in ``text``, once a signature by one of ``verifiers`` verifies.

    A verifier is matched by name and key id. Signatures by other keys are passed over (witnesses
    cosign a checkpoint with their own keys), but a signature by a known key that fails makes the
    whole note fail, as in Go's ``note.Open``: the note was changed, and no other signature can
    vouch for it.
    """
    note = SignedNote.parse(text)
    known = _index(verifiers)
    message = note.body.encode("utf-8")
    verified = False
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(message, sig.signature):
            raise SignatureInvalid(sig.name, key_id_hex(sig.key_id), "bad_signature")
        verified = True
    if not verified:
        first = note.signatures[0]
        raise SignatureInvalid(first.name, key_id_hex(first.key_id), "unknown_key")
    return note


def _index(verifiers: Sequence[Ed25519Verifier]) -> dict[tuple[str, int], Ed25519Verifier]:
    """The verifiers by (name, key id); two different keys under one name and id cannot both be trusted."""
    known: dict[tuple[str, int], Ed25519Verifier] = {}
    for verifier in verifiers:
        other = known.setdefault((verifier.name, verifier.key_id), verifier)
        if other.public_key != verifier.public_key:
            raise CheckpointFormatError(
                "verifier key",
                f"two different keys named {verifier.name!r} share the id {key_id_hex(verifier.key_id)}; "
                "keep the one that signs this log",
            )
    return known


def load_verifiers(text: str) -> list[Ed25519Verifier]:
    """The verifier keys of a public key file: one per line, blank lines and ``#`` comments skipped.

    A file lists every key the log has used, so that checkpoints signed before a key rotation still
    verify.
    """
    verifiers: list[Ed25519Verifier] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            verifiers.append(Ed25519Verifier.from_text(stripped))
        except CheckpointFormatError as exc:
            raise CheckpointFormatError(exc.part, f"line {number}: {exc.reason}") from None
    if not verifiers:
        raise CheckpointFormatError("verifier key", "the file holds no verifier key; add the log's public key")
    return verifiers
