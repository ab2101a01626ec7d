"""The checkpoint file: every signed checkpoint, one line each, appended outside the database.

A line is a JSON object: ``size``, ``root`` (base64), ``at``, ``key`` (name and key id), for a
reader's eye, and ``signed_note``, the C2SP signed note itself (https://c2sp.org/tlog-checkpoint): the
only part verification trusts, after its Ed25519 signature checks out. Keep the file where the
database's administrators cannot rewrite it (another machine, write-once storage, a witness's
mailbox): it is what an insider's rewrite of the database is held against.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from kapflow.audit.note import Checkpoint, key_id_hex
from kapflow.audit.signing import Ed25519Verifier, open_note
from kapflow.domain.audit_log import CheckpointRecord
from kapflow.domain.entries import to_iso
from kapflow.domain.errors import CheckpointFormatError


def checkpoint_line(record: CheckpointRecord) -> str:
    """One line of the checkpoint file (without its newline)."""
    return json.dumps({
        "size": record.size, "root": base64.b64encode(record.root).decode("ascii"), "at": to_iso(record.at),
        "key": f"{record.key_name}+{record.key_id}", "signed_note": record.note,
    }, sort_keys=True, ensure_ascii=False)


def read_lines(path: str | Path) -> list[str]:
    """The file's lines; a file that cannot be read is an input error saying which."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CheckpointFormatError("checkpoint file", f"cannot read {path} ({exc.strerror or type(exc).__name__})"
                                    ) from None
    except UnicodeDecodeError:
        raise CheckpointFormatError("checkpoint file", f"{path} is not UTF-8 text") from None


def publish(path: str | Path, records: Sequence[CheckpointRecord]) -> int:
    """Append the checkpoints the file lacks (matched by their notes), fsynced; returns how many.

    Called after each checkpoint commits, with every stored checkpoint newer than the file's last:
    a line that could not be written before (a full disk, say) is written at the next checkpoint.
    """
    target = Path(path)
    known = set()
    if target.exists():
        for line in read_lines(target):
            try:
                known.add(json.loads(line)["signed_note"])
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line is verification's to report; appending goes on
    new = [r for r in records if r.note not in known]
    if not new:
        return 0
    text = "".join(checkpoint_line(r) + "\n" for r in new).encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # public: no client data in it
    try:
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(new)


def note_opener(verifiers: Sequence[Ed25519Verifier]) -> Callable[[str], tuple[Checkpoint, str]]:
    """A function checking a signed checkpoint with ``verifiers``: its checkpoint and the key id that signed it."""
    known = {(v.name, v.key_id) for v in verifiers}

    def open_checkpoint(text: str) -> tuple[Checkpoint, str]:
        note = open_note(text, verifiers)
        signer = next(s for s in note.signatures if (s.name, s.key_id) in known)
        return Checkpoint.parse_body(note.body), key_id_hex(signer.key_id)

    return open_checkpoint


def lines_of(records: Iterable[CheckpointRecord]) -> list[str]:
    return [checkpoint_line(r) for r in records]
