"""Checkpoints of monitor and runtime state in a directory (an emptyDir in the pod).

Pickle is used because `Monitor.state()` returns numpy arrays and nested containers; the directory is
private to the pod and written only by this process. Each file carries a sha256 of its payload, and
writes go to a temporary file that is renamed into place, so a kill mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

_NAME = "checkpoint.pkl"
_MAGIC = b"POETCKPT1\n"
# The evaluation history beside the checkpoint (GET /v1/history's JSON), written after every change: it is
# small next to a monitor's state, and a kill between periodic checkpoints must not lose it.
HISTORY_NAME = "history.json"


class CheckpointError(Exception):
    """A checkpoint could not be read (corrupt, truncated or from another format)."""


def save_checkpoint(directory: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically write `state`; returns the file path."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(payload).hexdigest().encode()
    target = root / _NAME
    tmp = root / f".{_NAME}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + digest + b"\n" + payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
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
    """The latest checkpoint, or None when there is none; CheckpointError when it is damaged."""
    target = Path(directory) / _NAME
    if not target.exists():
        return None
    data = target.read_bytes()
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{target}: not a poet checkpoint")
    header_end = data.index(b"\n", len(_MAGIC))
    digest = data[len(_MAGIC) : header_end]
    payload = data[header_end + 1 :]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"{target}: checksum mismatch (truncated or corrupt)")
    state = pickle.loads(payload)
    if not isinstance(state, dict):
        raise CheckpointError(f"{target}: unexpected content")
    return state
