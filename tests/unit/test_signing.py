"""Ed25519 signing of the audit log's notes: Go's sumdb/note vectors verify here and ours match Go's, tampering and
unknown keys are refused with SignatureInvalid, key rotation and witness cosignatures work, and no key leaks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kapflow.audit.note import Checkpoint, NoteSignature, SignedNote, parse_signer_key, parse_verifier_key
from kapflow.audit.signing import (
    Ed25519Signer,
    Ed25519Verifier,
    generate_key,
    load_verifiers,
    open_note,
    sign_note,
)
from kapflow.errors import CheckpointFormatError, SignatureInvalid

# golang.org/x/mod/sumdb/note: example_test.go (ExampleSign, ExampleOpen) and note_test.go (TestOpen).
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_PETER_SIG
GO_SEED_B64 = GO_SIGNER.split("+", 4)[4]  # the base64 holds a "+" too

PETER = Ed25519Verifier.from_text(GO_VERIFIER)
ENOCH = Ed25519Verifier.from_text(GO_ENOCH)
AT = datetime(2026, 12, 6, 10, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def log_key() -> tuple[Ed25519Signer, Ed25519Verifier]:
    signer_text, verifier_text = generate_key("kapflow.example/audit")
    return Ed25519Signer.from_text(signer_text), Ed25519Verifier.from_text(verifier_text)


def _checkpoint_body(size: int = 7) -> str:
    return Checkpoint("kapflow.example/audit", size, bytes(32), AT).body()


# ------------------------------------------------------------------ Go's vectors


def test_go_signer_derives_go_verifier() -> None:
    """The public key derived here from Go's private key is the one in Go's verifier key, with the same id."""
    signer = Ed25519Signer.from_text(GO_SIGNER)
    assert signer.verifier_text() == GO_VERIFIER
    assert (signer.name, signer.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert signer.public_key_bytes == parse_verifier_key(GO_VERIFIER)[2]


def test_open_note_verifies_go_example() -> None:
    """Go's ExampleOpen: the note Go signed verifies here."""
    note = open_note(GO_NOTE, [PETER])
    assert note.body == GO_TEXT
    assert [(s.name, s.key_id) for s in note.signatures] == [("PeterNeumann", 0xC74F20A3)]


def test_sign_note_reproduces_go_example() -> None:
    """Go's ExampleSign: Ed25519 is deterministic, so the note signed here is Go's byte for byte."""
    assert sign_note(GO_TEXT, Ed25519Signer.from_text(GO_SIGNER)).text() == GO_NOTE


def test_go_cosigned_note() -> None:
    """Go's TestOpen: Peter's note cosigned by Enoch verifies with Peter's key alone, and with both."""
    text = GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG
    assert len(open_note(text, [PETER]).signatures) == 2
    assert open_note(text, [ENOCH]).body == GO_TEXT
    assert open_note(text, [PETER, ENOCH]).body == GO_TEXT


def test_go_invalid_signature() -> None:
    """Go's TestOpen "Invalid signature": four characters inserted into the signature."""
    raw = GO_NOTE.encode()
    split = len((GO_TEXT + "\n").encode()) + 60
    with pytest.raises(SignatureInvalid) as caught:
        open_note(raw[:split] + b"ABCD" + raw[split:], [PETER])
    assert (caught.value.key_name, caught.value.key_id, caught.value.reason) == (
        "PeterNeumann", "c74f20a3", "bad_signature"
    )


def test_go_unverified_note() -> None:
    """Go's TestOpen "both unverified": no known key signed it; the message names the first key."""
    with pytest.raises(SignatureInvalid) as caught:
        open_note(GO_TEXT + "\n" + GO_PETER_SIG + GO_ENOCH_SIG, [])
    err = caught.value
    assert (err.key_name, err.key_id, err.reason) == ("PeterNeumann", "c74f20a3", "unknown_key")
    assert "PeterNeumann+c74f20a3" in err.message
    assert "public" in err.message


# ------------------------------------------------------------------ signing and opening


def test_round_trip(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, verifier = log_key
    note = sign_note(_checkpoint_body(), signer)
    assert open_note(note.text(), [verifier]) == note
    assert Checkpoint.parse_body(note.body).size == 7


def test_tampered_body_fails(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, verifier = log_key
    text = sign_note(_checkpoint_body(7), signer).text().replace("\n7\n", "\n8\n", 1)
    with pytest.raises(SignatureInvalid) as caught:
        open_note(text, [verifier])
    assert caught.value.reason == "bad_signature"
    assert "changed" in caught.value.message


def test_tampered_signature_fails(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, verifier = log_key
    note = sign_note(_checkpoint_body(), signer)
    [sig] = note.signatures
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(SignatureInvalid):
        open_note(SignedNote(note.body, (flipped,)).text(), [verifier])


def test_other_key_fails_naming_the_key(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, _ = log_key
    other = Ed25519Signer.from_text(generate_key("kapflow.example/audit")[0])
    with pytest.raises(SignatureInvalid) as caught:
        open_note(sign_note(_checkpoint_body(), other).text(), [signer.verifier()])
    err = caught.value
    assert (err.key_name, err.key_id, err.reason) == ("kapflow.example/audit", f"{other.key_id:08x}", "unknown_key")
    assert f"kapflow.example/audit+{other.key_id:08x}" in err.message
    assert err.as_dict()["key_id"] == f"{other.key_id:08x}"


def test_a_forged_signature_under_a_known_name_and_id_fails(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    """Another key's signature relabelled with the known key's id: matched, then refused."""
    signer, verifier = log_key
    other = Ed25519Signer.from_text(generate_key("kapflow.example/audit")[0])
    body = _checkpoint_body()
    forged = NoteSignature(signer.name, signer.key_id, other.sign(body.encode()))
    with pytest.raises(SignatureInvalid) as caught:
        open_note(SignedNote(body, (forged,)).text(), [verifier])
    assert caught.value.reason == "bad_signature"


def test_key_rotation(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    """A public key file with the old and the new key verifies checkpoints signed by either."""
    old, _ = log_key
    new_signer_text, new_verifier_text = generate_key("kapflow.example/audit-2027")
    new = Ed25519Signer.from_text(new_signer_text)
    verifiers = load_verifiers(f"# kapflow audit log keys\n\n{old.verifier_text()}\n  {new_verifier_text}  \n")
    assert len(verifiers) == 2
    assert open_note(sign_note(_checkpoint_body(1), old).text(), verifiers).body == _checkpoint_body(1)
    assert open_note(sign_note(_checkpoint_body(2), new).text(), verifiers).body == _checkpoint_body(2)


def test_unknown_cosignature_is_ignored(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    """A witness's cosignature, before or after the log's, does not stop the log's key verifying the note."""
    signer, verifier = log_key
    witness = Ed25519Signer.from_text(generate_key("witness.example")[0])
    body = _checkpoint_body()
    ours = sign_note(body, signer).signatures[0]
    theirs = sign_note(body, witness).signatures[0]
    junk = NoteSignature("other-algorithm", 0x12345678, b"\x00" * 10)
    for order in ((ours, theirs, junk), (junk, theirs, ours)):
        assert open_note(SignedNote(body, order).text(), [verifier]).signatures == order


def test_verify_is_false_for_a_malformed_signature(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, verifier = log_key
    good = signer.sign(b"m")
    assert verifier.verify(b"m", good)
    assert not verifier.verify(b"n", good)
    assert not verifier.verify(b"m", good[:63])
    assert not verifier.verify(b"m", good + b"\x00")
    assert not verifier.verify(b"m", b"")


def test_open_note_refuses_a_malformed_note() -> None:
    with pytest.raises(CheckpointFormatError):
        open_note(GO_TEXT + GO_PETER_SIG, [PETER])


def test_sign_note_refuses_a_malformed_body(log_key: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    for body in ("", "no newline", "a\n\nb\n", "a\r\n"):
        with pytest.raises(CheckpointFormatError):
            sign_note(body, log_key[0])


def test_two_different_keys_with_one_name_and_id_are_refused() -> None:
    """Two keys cannot share a name and id unless crafted; then neither can be trusted to be the log's."""
    impostor = Ed25519Verifier.__new__(Ed25519Verifier)
    object.__setattr__(impostor, "name", PETER.name)
    object.__setattr__(impostor, "key_id", PETER.key_id)
    object.__setattr__(impostor, "public_key", ENOCH.public_key)
    with pytest.raises(CheckpointFormatError):
        open_note(GO_NOTE, [PETER, impostor])
    assert open_note(GO_NOTE, [PETER, PETER]).body == GO_TEXT  # the same key twice is harmless


# ------------------------------------------------------------------ keys


def test_generated_keys_are_consistent() -> None:
    signer_text, verifier_text = generate_key("kapflow.example/audit")
    signer = Ed25519Signer.from_text(signer_text + "\n")  # a key file's newline
    assert signer.verifier_text() == verifier_text
    assert Ed25519Verifier.from_text(verifier_text) == signer.verifier()
    assert parse_signer_key(signer_text)[:2] == parse_verifier_key(verifier_text)[:2]
    assert generate_key("kapflow.example/audit") != (signer_text, verifier_text)


def test_damaged_signer_key_is_refused() -> None:
    """A private key whose id is not its public key's: the key file was damaged."""
    name, key_id, _ = parse_signer_key(GO_SIGNER)
    damaged = GO_SIGNER.replace("c74f20a3", f"{key_id ^ 1:08x}")
    with pytest.raises(CheckpointFormatError) as caught:
        Ed25519Signer.from_text(damaged)
    assert "damaged" in caught.value.message
    assert GO_SEED_B64 not in caught.value.message
    assert name in caught.value.message


def test_a_verifier_key_is_not_a_signer_key() -> None:
    with pytest.raises(CheckpointFormatError):
        Ed25519Signer.from_text(GO_VERIFIER)
    with pytest.raises(CheckpointFormatError):
        Ed25519Verifier.from_text(GO_SIGNER)


def test_signer_repr_has_no_key_material() -> None:
    signer = Ed25519Signer.from_text(GO_SIGNER)
    seed = base64.b64decode(GO_SEED_B64)[1:]
    shown = repr(signer) + str(signer)
    assert shown == "Ed25519Signer(name='PeterNeumann', key_id='c74f20a3')" * 2
    for secret in (GO_SEED_B64, seed.hex(), repr(seed), base64.b64encode(seed).decode()):
        assert secret not in shown


def test_verifier_repr_shows_no_key_object() -> None:
    assert "cryptography" not in repr(PETER)
    assert repr(PETER).startswith("Ed25519Verifier(name='PeterNeumann', key_id=3343851683, public_key=b")


def test_load_verifiers_names_the_bad_line() -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        load_verifiers(f"# keys\n{GO_VERIFIER}\n{GO_VERIFIER[:-2]}\n")
    assert "line 3" in caught.value.message


def test_load_verifiers_refuses_a_file_without_keys() -> None:
    with pytest.raises(CheckpointFormatError):
        load_verifiers("# no keys yet\n\n")


def test_load_verifiers_refuses_a_private_key() -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        load_verifiers(GO_SIGNER + "\n")
    assert GO_SEED_B64 not in caught.value.message


# ------------------------------------------------------------------ the whole path, as a property


SIGNER = Ed25519Signer.from_text(generate_key("kapflow.example/audit")[0])


@settings(max_examples=50, deadline=None)
@given(
    origin=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    at=st.datetimes(timezones=st.just(UTC)),
)
def test_checkpoint_sign_open_parse_round_trip(origin: str, size: int, root: bytes, at: datetime) -> None:
    checkpoint = Checkpoint(origin, size, root, at)
    text = sign_note(checkpoint.body(), SIGNER).text()
    assert Checkpoint.parse_body(open_note(text, [SIGNER.verifier()]).body) == checkpoint
