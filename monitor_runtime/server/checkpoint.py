"""Checkpoints of monitor and runtime state in a directory (an emptyDir in the pod), as data.

The file `checkpoint.poet` is two header lines, the magic `POETCKPT2` and the sha256 (hex) of the payload,
then the payload: an npz archive written and read without pickle (`state_codec`: a JSON document plus
numpy buffers). The checksum is verified before anything is parsed, so a truncated or corrupt file is
reported, never half read. Writes go to a temporary file that is fsynced and renamed into place, so a kill
mid-write leaves the previous checkpoint intact.

Checkpoints of older runtimes were pickles (magic `POETCKPT1`, file `checkpoint.pkl`): they are never
unpickled (a new version must not run what an old one wrote) but reported as unreadable, and the runtime
starts fresh; the first new checkpoint removes the old file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from monitor_runtime.server.state_codec import UnreadableState, decode_state, encode_state

CHECKPOINT_NAME = "checkpoint.poet"
_MAGIC = b"POETCKPT2\n"
# The pickle format of older runtimes: recognised by its file name and magic, never loaded.
_PICKLE_NAME = "checkpoint.pkl"
_PICKLE_MAGIC = b"POETCKPT1\n"
# The evaluation history beside the checkpoint (GET /v1/history's JSON), written after every change: it is
# small next to a monitor's state, and a kill between periodic checkpoints must not lose it.
HISTORY_NAME = "history.json"


class CheckpointError(Exception):
    """A checkpoint could not be read (corrupt, truncated or from another format)."""


def save_checkpoint(directory: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write `state`; returns the file path. `state_codec.NotData` when it holds something that
    is not data (the message names where), before any file is touched."""
    payload = encode_state(state)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(payload).hexdigest().encode()
    target = root / CHECKPOINT_NAME
    tmp = root / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + digest + b"\n")
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    # The old pickle checkpoint is superseded: it would only be reported again at every start.
    (root / _PICKLE_NAME).unlink(missing_ok=True)
    return target


def save_history(directory: str | os.PathLike[str], text: str) -> Path:
    """Atomically write the history's JSON text beside the checkpoint; returns the file path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    target = root / HISTORY_NAME
    tmp = root / f".{HISTORY_NAME}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


def load_checkpoint(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The latest checkpoint, or None when there is none; CheckpointError when it is damaged or of the old
    pickle format (which is never unpickled)."""
    root = Path(directory)
    target = root / CHECKPOINT_NAME
    if not target.exists():
        legacy = root / _PICKLE_NAME
        if legacy.exists():
            raise CheckpointError(f"{legacy}: {_pickle_refusal()}")
        return None
    data = target.read_bytes()
    if data.startswith(_PICKLE_MAGIC):
        raise CheckpointError(f"{target}: {_pickle_refusal()}")
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{target}: not a poet checkpoint")
    header_end = data.find(b"\n", len(_MAGIC))
    if header_end < 0:
        raise CheckpointError(f"{target}: checksum mismatch (truncated or corrupt)")
    digest = data[len(_MAGIC) : header_end]
    payload = data[header_end + 1 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"{target}: checksum mismatch (truncated or corrupt)")
    try:
        return decode_state(payload)
    except UnreadableState as exc:
        raise CheckpointError(f"{target}: {exc}") from None


def _pickle_refusal() -> str:
    return (
        "a checkpoint in the pickle format of an older runtime (POETCKPT1); it is not read, since a "
        "checkpoint must be data: starting fresh (the history beside it is still merged)"
    )
