"""The audit log's checkpoint and signed-note texts (C2SP tlog-checkpoint, signed-note): round trips,
strict rejection of every malformed form, and the key hash checked against hashlib and Go's vectors."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.audit.note import (
    Checkpoint,
    NoteSignature,
    SignedNote,
    key_hash,
    key_id_hex,
    parse_signer_key,
    parse_verifier_key,
    signer_key_text,
    verifier_key_text,
)
from kapflow.errors import CheckpointFormatError, KapflowError

ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()
AT = datetime(2026, 12, 6, 10, 15, tzinfo=UTC)
BODY = f"kapflow.example/audit\n42\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n"

# golang.org/x/mod/sumdb/note's example_test.go and note_test.go.
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_ENOCH = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_NOTE = GO_TEXT + "\n" + GO_PETER_SIG


# ------------------------------------------------------------------ checkpoints


def test_checkpoint_body_is_the_c2sp_form() -> None:
    assert Checkpoint("kapflow.example/audit", 42, ROOT, AT).body() == BODY


def test_checkpoint_round_trip() -> None:
    checkpoint = Checkpoint("kapflow.example/audit", 42, ROOT, AT)
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint


def test_checkpoint_time_is_kept_in_utc_to_the_second() -> None:
    """An aware time in another zone, with microseconds, is the same instant in UTC to the second."""
    plus_two = timezone(timedelta(hours=2))
    checkpoint = Checkpoint("o", 0, ROOT, datetime(2026, 12, 6, 12, 15, 0, 999_999, tzinfo=plus_two))
    assert checkpoint.at == AT
    assert checkpoint.body().endswith("time 2026-12-06T10:15:00Z\n")
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint


@pytest.mark.parametrize(
    ("origin", "size", "root", "at"),
    [
        pytest.param("", 1, ROOT, AT, id="empty-origin"),
        pytest.param("a\nb", 1, ROOT, AT, id="newline-in-origin"),
        pytest.param(" a", 1, ROOT, AT, id="origin-leading-space"),
        pytest.param("a\r", 1, ROOT, AT, id="cr-in-origin"),
        pytest.param("a", -1, ROOT, AT, id="negative-size"),
        pytest.param("a", 2**64, ROOT, AT, id="size-over-uint64"),
        pytest.param("a", True, ROOT, AT, id="bool-size"),
        pytest.param("a", 1, ROOT[:31], AT, id="short-root"),
        pytest.param("a", 1, ROOT, datetime(2026, 12, 6), id="naive-time"),
    ],
)
def test_checkpoint_refuses_bad_fields(origin: str, size: int, root: bytes, at: datetime) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint(origin, size, root, at)


ROOT_31 = base64.b64encode(ROOT[:31]).decode()
ROOT_NONCANONICAL = ROOT_B64[:-2] + "9="  # ROOT_B64 ends in "8=": the same bytes with a padding bit set


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(BODY[:-1], id="no-final-newline"),
        pytest.param(f"o\n1\n{ROOT_B64}\n", id="no-time-line"),
        pytest.param(BODY + "extra line\n", id="second-extension"),
        pytest.param(BODY + "\n", id="trailing-blank-line"),
        pytest.param(f"\n1\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="empty-origin"),
        pytest.param(f"o\n01\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="leading-zero"),
        pytest.param(f"o\n+1\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="plus-sign"),
        pytest.param(f"o\n-1\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="minus-sign"),
        pytest.param(f"o\n1 \n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="space-after-size"),
        pytest.param(f"o\n١\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="arabic-digit"),
        pytest.param(f"o\n{2**64}\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n", id="size-over-uint64"),
        pytest.param(f"o\n1\n{ROOT_31}\ntime 2026-12-06T10:15:00Z\n", id="root-31-bytes"),
        pytest.param(f"o\n1\n{ROOT_B64.rstrip('=')}\ntime 2026-12-06T10:15:00Z\n", id="root-unpadded"),
        pytest.param(f"o\n1\n{ROOT_NONCANONICAL}\ntime 2026-12-06T10:15:00Z\n", id="root-noncanonical"),
        pytest.param(f"o\n1\n{ROOT.hex()}\ntime 2026-12-06T10:15:00Z\n", id="root-hex"),
        pytest.param(f"o\n1\n{ROOT_B64}\ntime 2026-12-06T10:15:00+00:00\n", id="time-offset"),
        pytest.param(f"o\n1\n{ROOT_B64}\ntime 2026-12-06T10:15:00.5Z\n", id="time-fraction"),
        pytest.param(f"o\n1\n{ROOT_B64}\ntime 2026-12-06T10:15Z\n", id="time-no-seconds"),
        pytest.param(f"o\n1\n{ROOT_B64}\ntime 2026-02-30T10:15:00Z\n", id="time-no-such-day"),
        pytest.param(f"o\n1\n{ROOT_B64}\ntime  2026-12-06T10:15:00Z\n", id="time-two-spaces"),
        pytest.param(f"o\n1\n{ROOT_B64}\nTime 2026-12-06T10:15:00Z\n", id="time-keyword-case"),
        pytest.param(BODY.replace("\n", "\r\n"), id="crlf"),
        pytest.param(BODY.replace("42", "4\x002"), id="nul"),
        pytest.param("o\ud800\n1\n" + ROOT_B64 + "\ntime 2026-12-06T10:15:00Z\n", id="lone-surrogate"),
    ],
)
def test_checkpoint_parse_refuses_malformed_bodies(text: str) -> None:
    with pytest.raises(CheckpointFormatError):
        Checkpoint.parse_body(text)


def test_checkpoint_noncanonical_root_is_the_same_bytes() -> None:
    """The refused non-canonical form above would otherwise decode to the same root: a second spelling."""
    assert base64.b64decode(ROOT_NONCANONICAL) == ROOT


def test_a_year_before_1000_is_padded() -> None:
    """strftime's %Y would write "999" on glibc, which the strict parser refuses."""
    checkpoint = Checkpoint("o", 1, ROOT, datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert checkpoint.body().endswith("time 0999-01-02T03:04:05Z\n")
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint


def test_zero_size_parses() -> None:
    assert Checkpoint.parse_body(f"o\n0\n{ROOT_B64}\ntime 2026-12-06T10:15:00Z\n").size == 0


@given(
    origin=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    at=st.datetimes(timezones=st.just(UTC)),
)
def test_checkpoint_round_trip_property(origin: str, size: int, root: bytes, at: datetime) -> None:
    checkpoint = Checkpoint(origin, size, root, at)
    assert Checkpoint.parse_body(checkpoint.body()) == checkpoint


# ------------------------------------------------------------------ signed notes


def test_go_example_note_parses() -> None:
    note = SignedNote.parse(GO_NOTE)
    assert note.body == GO_TEXT
    [sig] = note.signatures
    assert (sig.name, key_id_hex(sig.key_id), len(sig.signature)) == ("PeterNeumann", "c74f20a3", 64)
    assert note.text() == GO_NOTE


def test_note_parses_utf8_bytes() -> None:
    assert SignedNote.parse(GO_NOTE.encode()) == SignedNote.parse(GO_NOTE)


def test_note_round_trip_with_several_signatures() -> None:
    note = SignedNote(BODY, (NoteSignature("a", 1, b"\x00" * 64), NoteSignature("witness.example", 2**32 - 1, b"x")))
    assert SignedNote.parse(note.text()) == note
    assert note.text() == BODY + "\n" + "".join(sig.line() for sig in note.signatures)


def test_a_signature_line_is_em_dash_name_base64() -> None:
    line = NoteSignature("k", 0x01020304, b"\xff").line()
    assert line == "— k " + base64.b64encode(b"\x01\x02\x03\x04\xff").decode() + "\n"
    assert line.startswith("\u2014 ")


SIG = GO_PETER_SIG


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GO_TEXT, id="go-no-signatures"),
        pytest.param(GO_TEXT + "\n", id="go-blank-line-no-signatures"),
        pytest.param(GO_TEXT + "\n" + SIG[:-1], id="go-no-final-newline"),
        pytest.param("\x01" + GO_NOTE, id="go-control-character"),
        pytest.param(b"\xff" + GO_NOTE.encode(), id="go-not-utf8"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("PeterNeumann", "Bad Name")[:-1], id="go-space-in-name"),
        pytest.param(GO_NOTE + "Unexpected line.\n", id="go-unexpected-line"),
        pytest.param(GO_TEXT + SIG, id="missing-blank-line"),
        pytest.param("\n" + SIG, id="empty-body"),
        pytest.param("\n\n" + SIG, id="blank-body"),
        pytest.param("a\n\nb\n\n" + SIG, id="blank-line-inside-body"),
        pytest.param(GO_NOTE.replace("\n", "\r\n"), id="crlf"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("\n", "\r\n"), id="cr-in-signature-line"),
        pytest.param(GO_NOTE + "\n", id="trailing-blank-line"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("— ", "- "), id="hyphen-not-em-dash"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("— ", "—"), id="no-space-after-dash"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("=\n", "\n"), id="unpadded-base64"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("AM=", "AN="), id="noncanonical-base64"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("x08go", "x08g!"), id="bad-base64-character"),
        pytest.param(GO_TEXT + "\n— PeterNeumann \n", id="empty-signature"),
        pytest.param(GO_TEXT + "\n— PeterNeumann\n", id="no-signature-field"),
        pytest.param(GO_TEXT + "\n— PeterNeumann " + base64.b64encode(b"\x01\x02\x03\x04").decode() + "\n",
                     id="blob-4-bytes"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("PeterNeumann", "Peter+Neumann"), id="plus-in-name"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("PeterNeumann", "Peter\u00a0Neumann"), id="nbsp-in-name"),
        pytest.param(GO_TEXT + "\n" + SIG.replace("PeterNeumann ", " "), id="empty-name"),
        pytest.param(GO_TEXT + "\n" + SIG * 101, id="over-100-signatures"),
        pytest.param(GO_NOTE.replace("If", "I\ud800f"), id="lone-surrogate"),
    ],
)
def test_note_parse_refuses_malformed_notes(text: str | bytes) -> None:
    with pytest.raises(CheckpointFormatError):
        SignedNote.parse(text)


def test_a_hundred_signatures_are_allowed() -> None:
    assert len(SignedNote.parse(GO_TEXT + "\n" + SIG * 100).signatures) == 100


@pytest.mark.parametrize("body", ["", "a", "a\n\nb\n", "\na\n", "a\r\n", "a\tb\n"])
def test_a_note_cannot_be_built_with_a_malformed_body(body: str) -> None:
    with pytest.raises(CheckpointFormatError):
        SignedNote(body, (NoteSignature("k", 1, b"s"),))


@pytest.mark.parametrize(
    ("name", "key_id", "signature"),
    [("", 1, b"s"), ("a b", 1, b"s"), ("a+b", 1, b"s"), ("k", -1, b"s"), ("k", 2**32, b"s"), ("k", 1, b"")],
)
def test_a_signature_cannot_be_built_malformed(name: str, key_id: int, signature: bytes) -> None:
    with pytest.raises(CheckpointFormatError):
        NoteSignature(name, key_id, signature)


def test_a_note_needs_a_signature() -> None:
    with pytest.raises(CheckpointFormatError):
        SignedNote(BODY, ())


# ------------------------------------------------------------------ keys


def test_key_hash_known_answer() -> None:
    """The key id computed here from hashlib, by the C2SP definition, and its 8-hex-digit form."""
    name, public_key = "kapflow.example/audit", bytes(range(100, 132))
    digest = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()
    expected = int.from_bytes(digest[:4], "big")
    assert key_hash(name, public_key) == expected
    text = verifier_key_text(name, public_key)
    assert text == f"{name}+{digest[:4].hex()}+" + base64.b64encode(b"\x01" + public_key).decode()
    assert key_id_hex(0xABC) == "00000abc"


@pytest.mark.parametrize(("text", "key_id"), [(GO_VERIFIER, 0xC74F20A3), (GO_ENOCH, 0xAF0CFE78)])
def test_go_verifier_keys_parse_and_hash(text: str, key_id: int) -> None:
    """Go's published verifier keys: the key hash computed here is the one Go wrote."""
    name, parsed_id, public_key = parse_verifier_key(text)
    assert parsed_id == key_id == key_hash(name, public_key)
    assert verifier_key_text(name, public_key) == text


def test_go_signer_key_parses() -> None:
    name, key_id, seed = parse_signer_key(GO_SIGNER)
    assert (name, key_id, len(seed)) == ("PeterNeumann", 0xC74F20A3, 32)
    _, _, public_key = parse_verifier_key(GO_VERIFIER)
    assert signer_key_text(name, seed, public_key) == GO_SIGNER


def test_signer_key_text_round_trip() -> None:
    seed, public_key = bytes(range(32)), bytes(range(32, 64))
    text = signer_key_text("k", seed, public_key)
    assert text.startswith("PRIVATE+KEY+k+")
    assert parse_signer_key(text) == ("k", key_hash("k", public_key), seed)


def _mangle_hash(text: str) -> str:
    name, hash_hex, key = text.split("+", 2)
    return f"{name}+{int(hash_hex, 16) ^ 1:08x}+{key}"


def _with_algorithm(text: str, algorithm: int) -> str:
    """Go's "unknown algorithm, with adjusted key hash" case: a consistent key of another algorithm."""
    name, _, key = text.split("+", 2)
    raw = bytes([algorithm]) + base64.b64decode(key)[1:]
    digest = hashlib.sha256(name.encode() + b"\n" + raw).digest()
    return f"{name}+{digest[:4].hex()}+{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(GO_VERIFIER.replace("+", " ", 1), id="no-first-separator"),
        pytest.param("PeterNeumann+c74f20a3", id="no-key"),
        pytest.param("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="empty-name"),
        pytest.param("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="space-in-name"),
        pytest.param(GO_VERIFIER.replace("c74f20a3", "C74F20A3"), id="uppercase-hash"),
        pytest.param(GO_VERIFIER.replace("c74f20a3", "c74f20a"), id="short-hash"),
        pytest.param(GO_VERIFIER.replace("c74f20a3", "c74f20ag"), id="non-hex-hash"),
        pytest.param(_mangle_hash(GO_VERIFIER), id="hash-mismatch"),
        pytest.param(GO_VERIFIER.replace("PeterNeumann", "PeterNeuman"), id="renamed"),
        pytest.param(GO_VERIFIER + "=", id="bad-padding"),
        pytest.param(GO_VERIFIER[:-1] + "X", id="noncanonical-or-other-key"),
        pytest.param(GO_VERIFIER + " ", id="trailing-space"),
        pytest.param("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                     id="go-wrong-length"),
        pytest.param(_with_algorithm(GO_VERIFIER, 0x02), id="go-unknown-algorithm"),
        pytest.param(GO_SIGNER, id="a-signer-key"),
    ],
)
def test_parse_verifier_key_refuses(text: str) -> None:
    with pytest.raises(CheckpointFormatError):
        parse_verifier_key(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GO_VERIFIER, id="a-verifier-key"),
        pytest.param(GO_SIGNER.replace("PRIVATE+KEY+", "PRIVATE+"), id="half-prefix"),
        pytest.param(GO_SIGNER.lower(), id="lowercase-prefix"),
        pytest.param(GO_SIGNER + "AAAA", id="seed-too-long"),
        pytest.param(GO_SIGNER.replace("+AYEK", "+AoEK"), id="other-algorithm"),
        pytest.param(GO_SIGNER.replace("c74f20a3", "xyz"), id="bad-hash"),
        pytest.param(GO_SIGNER.replace("PeterNeumann", "Peter\nNeumann"), id="newline-in-name"),
    ],
)
def test_parse_signer_key_refuses(text: str) -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        parse_signer_key(text)
    assert "AYEKFALVFGyNhPJEMzD1QIDr" not in str(caught.value)


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\nb", "a\tb", "a\u2003b"])
def test_key_names_are_validated(name: str) -> None:
    for make in (lambda: key_hash(name, ROOT), lambda: verifier_key_text(name, ROOT),
                 lambda: signer_key_text(name, ROOT, ROOT)):
        with pytest.raises(CheckpointFormatError):
            make()


def test_key_sizes_are_validated() -> None:
    with pytest.raises(CheckpointFormatError):
        key_hash("k", ROOT[:31])
    with pytest.raises(CheckpointFormatError):
        signer_key_text("k", ROOT[:31], ROOT)


def test_format_error_is_a_kapflow_error_with_its_parts() -> None:
    with pytest.raises(CheckpointFormatError) as caught:
        Checkpoint.parse_body("o\n01\n")
    err = caught.value
    assert isinstance(err, KapflowError)
    assert err.as_dict() == {"error": "checkpoint_format_error", "message": err.message, "part": "checkpoint",
                             "reason": err.reason}
    assert err.message.startswith("malformed checkpoint: ")
