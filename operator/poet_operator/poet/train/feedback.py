"""The `Feedback` record: what went wrong with a deployed version, normalised so it can be compared.

A signature is the stable identity of a failure: the exception type and where in the generated code it was
raised (file and function, never line numbers, which move between versions), or a platform condition such as
`OOMKilled` or `ProbeTimeout`. Two crashes with the same signature are the same problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class FeedbackSource(StrEnum):
    """Where a feedback record came from."""

    CRASH = "crash"
    OOM_KILLED = "oom_killed"
    PROBE_FAILURE = "probe_failure"
    ENFORCE_REJECTION = "enforce_rejection"
    USER = "user"


_SOURCE_ALIASES = {
    "oomkilled": FeedbackSource.OOM_KILLED,
    "oom": FeedbackSource.OOM_KILLED,
    "probe": FeedbackSource.PROBE_FAILURE,
    "probe_timeout": FeedbackSource.PROBE_FAILURE,
    "liveness": FeedbackSource.PROBE_FAILURE,
    "readiness": FeedbackSource.PROBE_FAILURE,
    "enforce": FeedbackSource.ENFORCE_REJECTION,
    "error": FeedbackSource.CRASH,
    "load": FeedbackSource.CRASH,  # the runtime refused to load the version
}

OOM_SIGNATURE = "OOMKilled"
PROBE_TIMEOUT_SIGNATURE = "ProbeTimeout"
SLOW_BATCH_SIGNATURE = "SlowBatch"


# A signature is an identifier, never prose: characters outside this set are replaced, so a signature can be
# shown in a comment, a log line or a prompt without starting a new line or closing a string.
_SIGNATURE_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_@.:<>-]")
MAX_SIGNATURE_CHARS = 160


def clean_signature(text: object) -> str:
    """`text` as a signature: only letters, digits and `_@.:<>-` (others become `_`), at most 160 chars."""
    return _SIGNATURE_UNSAFE_RE.sub("_", str(text).strip())[:MAX_SIGNATURE_CHARS]


class FeedbackError(ValueError):
    """A feedback record or file that cannot be understood; the message says which field and what to do."""


@dataclass(frozen=True)
class Feedback:
    """One observation that a version misbehaved.

    `evidence` holds what was seen: `termination_message`, `traceback`, `log_tail`, `data_profile`
    (shape, dtypes and missing counts of the offending batch, never raw values), `message`, `exit_code`.
    """

    source: FeedbackSource
    signature: str
    version: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every record, however built, carries a clean signature (frozen, hence object.__setattr__).
        object.__setattr__(self, "signature", clean_signature(self.signature))

    @property
    def data_profile(self) -> dict[str, Any] | None:
        profile = self.evidence.get("data_profile")
        return profile if isinstance(profile, dict) and profile else None

    @property
    def message(self) -> str:
        return str(self.evidence.get("message") or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "signature": self.signature,
            "version": self.version,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feedback:
        """Build a record from its JSON form (as written by `to_dict`, or a raw termination message)."""
        if not isinstance(data, Mapping):
            raise FeedbackError(f"feedback must be a JSON object, got {type(data).__name__}")
        if "signature" in data and "source" in data and "evidence" in data:
            source = parse_source(data["source"])
            evidence = data.get("evidence") or {}
            if not isinstance(evidence, Mapping):
                raise FeedbackError("feedback field 'evidence' must be an object (termination_message, ...)")
            signature = clean_signature(data["signature"])
            if not signature:
                raise FeedbackError("feedback field 'signature' is empty; give e.g. 'KeyError@monitor.py:f'")
            return cls(source, signature, _version(data.get("version")), dict(evidence))
        return feedback_from_termination_message(data)


def parse_source(value: Any) -> FeedbackSource:
    """Read a source name, accepting Kubernetes spellings such as `OOMKilled`."""
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return FeedbackSource(text)
    except ValueError:
        if text in _SOURCE_ALIASES:
            return _SOURCE_ALIASES[text]
    allowed = ", ".join(s.value for s in FeedbackSource)
    raise FeedbackError(f"feedback field 'source' is {value!r}; use one of: {allowed}")


_FRAME_RE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>[^\s]+)')
_EXC_LINE_RE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_VOLATILE_RE = re.compile(r"0x[0-9a-fA-F]+|\b\d+(?:\.\d+)?\b")


def normalise_signature(exception_type: str, location: str | None = None) -> str:
    """`KeyError` raised in `monitor.py`, function `detect_drift` -> `KeyError@monitor.py:detect_drift`.

    The module path is dropped (`builtins.KeyError` -> `KeyError`) and the file reduced to its base name, so a
    signature survives reinstalls and line shifts.
    """
    exc = exception_type.strip().rsplit(".", 1)[-1] or "Error"
    if not location:
        return clean_signature(exc)
    loc = location.strip()
    if ":" in loc:
        file_part, func = loc.rsplit(":", 1)
        func = func if not func.isdigit() else ""
    else:
        file_part, func = loc, ""
    file_part = file_part.replace("\\", "/").rsplit("/", 1)[-1]
    return clean_signature(f"{exc}@{file_part}:{func}" if func else f"{exc}@{file_part}")


def parse_traceback(text: str) -> tuple[str | None, str | None, str]:
    """(exception type, `file:function` of the innermost frame in generated code, message) of a traceback.

    The innermost frame in `monitor.py` is preferred because that is the code a new version can change; when
    the failure is raised elsewhere (numpy, the toolkit) the innermost generated frame still locates it.
    """
    frames = [(m.group("file"), m.group("func")) for m in _FRAME_RE.finditer(text)]
    generated = [f for f in frames if f[0].replace("\\", "/").rsplit("/", 1)[-1] == "monitor.py"]
    chosen = (generated or frames or [None])[-1]
    location = f"{chosen[0]}:{chosen[1]}" if chosen else None
    exc_type: str | None = None
    message = ""
    for line in reversed([ln.strip() for ln in text.strip().splitlines() if ln.strip()]):
        if line.startswith(("File ", "Traceback", "^", "~")):
            continue
        match = _EXC_LINE_RE.match(line)
        if match and (":" in line or match.group("type").endswith(("Error", "Exception"))):
            exc_type, message = match.group("type"), (match.group("msg") or "").strip()
            break
    return exc_type, location, message


def feedback_from_termination_message(
    message: str | Mapping[str, Any],
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    version: int | None = None,
) -> Feedback:
    """Turn what Kubernetes reported for a terminated container into a `Feedback`.

    `message` is the container's termination message: the runtime's JSON crash record (signature, traceback,
    batch profile, version) or free text. `reason` is the container state reason (`OOMKilled`, `Error`, ...):
    the kernel's OOM killer leaves no message, so the reason alone decides that case; a record whose own
    `reason` is `OOMKilled` (the runtime ran out of memory without a kill) is the same failure.
    """
    record: dict[str, Any] = {}
    text = ""
    if isinstance(message, Mapping):
        record = dict(message)
    elif message:
        text = message
        try:
            parsed = json.loads(message)
        except (json.JSONDecodeError, TypeError):
            parsed = None
        if isinstance(parsed, dict):
            record = parsed
    evidence: dict[str, Any] = {}
    if text:
        evidence["termination_message"] = text
    elif record:
        evidence["termination_message"] = json.dumps(record, sort_keys=True, default=str)
    if exit_code is not None:
        evidence["exit_code"] = exit_code
    version = version if version is not None else _version(record.get("version"))

    traceback_text = str(record.get("traceback") or (text if "Traceback" in text else ""))
    if traceback_text:
        evidence["traceback"] = traceback_text
    profile = _first(record, "data_profile", "batch_profile", "profile")
    if isinstance(profile, Mapping):
        evidence["data_profile"] = dict(profile)
    log_tail = _first(record, "log_tail", "logs")
    if log_tail:
        evidence["log_tail"] = str(log_tail)

    reasons = {(reason or "").strip().lower(), str(record.get("reason", "")).strip().lower()}
    if "oomkilled" in reasons:
        # The kernel's kill leaves no record; the runtime's own out-of-memory exit (a MemoryError, record
        # reason `OOMKilled`, exit status 3) says what could not be allocated.
        recorded = str(record.get("message") or "")
        evidence.setdefault("message", recorded or "container killed by the kernel OOM killer")
        return Feedback(FeedbackSource.OOM_KILLED, OOM_SIGNATURE, version, evidence)

    signature = record.get("signature")
    if isinstance(signature, Mapping):
        # The runtime's crash record: {"exception": type, "location": "monitor.py:LINE in FUNC"}.
        record = {**record, "exception": signature.get("exception"), "location": signature.get("location")}
        signature = None
    exc_type = _first(record, "exception_type", "exception", "error_type")
    location = _runtime_location(_first(record, "location", "where"))
    msg = str(_first(record, "message", "error", "detail") or "")
    if traceback_text:
        tb_type, tb_loc, tb_msg = parse_traceback(traceback_text)
        exc_type, location, msg = exc_type or tb_type, location or tb_loc, msg or tb_msg
    if not exc_type and text and not record:
        tb_type, _, tb_msg = parse_traceback(text)
        exc_type, msg = tb_type, msg or tb_msg or text.strip()[:500]
    if msg:
        evidence["message"] = msg
    if signature and "@" not in str(signature) and exc_type and location:
        signature = None  # a bare type from the runtime; add the location we found
    signature = clean_signature(signature) if signature else ""
    signature = signature or normalise_signature(str(exc_type or "UnknownError"), location)
    source_value = record.get("source")
    source = parse_source(source_value) if source_value else FeedbackSource.CRASH
    return Feedback(source, signature, version, evidence)


def probe_failure(kind: str = "liveness", *, version: int | None = None, detail: str = "") -> Feedback:
    """A probe that timed out or failed: the process was too slow to answer."""
    return Feedback(
        FeedbackSource.PROBE_FAILURE,
        PROBE_TIMEOUT_SIGNATURE,
        version,
        {"message": detail or f"{kind} probe failed", "probe": kind},
    )


def load_feedback_file(path: str | Path) -> list[Feedback]:
    """Read a feedback file: one record, a list of records, or a raw termination message (JSON or text)."""
    file = Path(path)
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeedbackError(f"cannot read feedback file {file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FeedbackError(
            f"feedback file {file} is not UTF-8 text (byte {exc.start}); write the JSON record as UTF-8"
        ) from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        if not raw.strip():
            raise FeedbackError(f"feedback file {file} is empty; write a JSON feedback record") from None
        return [feedback_from_termination_message(raw)]
    items = data if isinstance(data, list) else [data]
    records = []
    for index, item in enumerate(items):
        try:
            records.append(Feedback.from_dict(item))
        except FeedbackError as exc:
            raise FeedbackError(f"{file} record {index}: {exc}") from None
    return records


def message_fingerprint(message: str) -> str:
    """A message with numbers and addresses removed, for grouping similar failures."""
    return _VOLATILE_RE.sub("#", message)[:200]


def _runtime_location(location: Any) -> str | None:
    """`monitor.py:88 in detect_drift` (the runtime's form) -> `monitor.py:detect_drift`."""
    if not location or str(location) == "unknown":
        return None
    match = re.match(r"^(?P<file>.+?):(?P<line>\d+) in (?P<func>\S+)$", str(location).strip())
    return f"{match.group('file')}:{match.group('func')}" if match else str(location)


def _first(record: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if record.get(key) not in (None, ""):
            return record[key]
    return None


def _version(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FeedbackError(
            f"feedback field 'version' is {value!r}; give the version number as an integer"
        ) from None
