"""The monitor contract, version 1: what a version directory holds and what generated code must return.

A version directory holds `monitor.py` (the generated code) and `manifest.json` (who made it, from which
spec, what it answers and how it was enforced). Loading verifies the manifest, the contract version and the
sha256 of `monitor.py` *before* any generated code runs, and compiles exactly the bytes it hashed.
The full contract is documented in docs/contract.md.
"""

from __future__ import annotations

import hashlib
import json
import linecache
import math
import os
import tempfile
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTRACT = 1
CODE_FILE = "monitor.py"
MANIFEST_FILE = "manifest.json"
REQUIRED_METHODS = (
    "detect_drift",
    "monitor_features",
    "monitor_predictions",
    "update_reference_window",
    "state",
    "restore",
)
HEALTH_VALUES = ("good", "warning", "critical")
FEATURE_STATUSES = ("ok", "new_feature", "missing_feature", "insufficient_data", "constant", "all_missing")
FEATURE_RESULT_KEYS = (
    "features",
    "overall_health",
    "overall_drift_score",
    "recommendations",
    "window_config",
    "drifted_features",
)
DRIFT_RESULT_KEYS = (
    "features",
    "overall_health",
    "overall_drift_score",
    "recommendations",
    "drifted_features",
)


class ContractError(Exception):
    """A version directory or monitor output that breaks the contract; the message says what to fix."""


class GeneratorInfo(BaseModel):
    """Which generator produced the code (kind) and, for LLMs, which model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(..., min_length=1)
    model: str | None = None


class VersionManifest(BaseModel):
    """`manifest.json` of a version directory. Unknown keys are kept so newer writers stay readable."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    contract: int
    version: int = Field(..., ge=1)
    monitor: str = Field(..., min_length=1)
    model: str = Field(..., min_length=1)
    spec_hash: str = Field(..., alias="specHash", pattern=r"^[0-9a-f]{64}$")
    spec: dict[str, Any]
    generator: GeneratorInfo
    answers_feedback: list[str] = Field(default_factory=list, alias="answersFeedback")
    lessons_applied: list[Any] = Field(default_factory=list, alias="lessonsApplied")
    enforce: dict[str, Any] | None = None
    code_sha256: str = Field(..., alias="codeSha256", pattern=r"^[0-9a-f]{64}$")
    created_at: str = Field(..., alias="createdAt")

    def to_dict(self) -> dict[str, Any]:
        """The manifest as written to disk (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class LoadedVersion:
    """A verified and imported version: its manifest, module and `Monitor` class."""

    directory: Path
    manifest: VersionManifest
    module: types.ModuleType
    monitor_class: type

    def create(self, toolkit: Any | None = None, spec: Mapping[str, Any] | None = None) -> Any:
        """A `Monitor` instance built as the contract prescribes: `Monitor(spec, toolkit)`."""
        if toolkit is None:
            from monitor_runtime import toolkit as default_toolkit

            toolkit = default_toolkit
        return self.monitor_class(dict(spec if spec is not None else self.manifest.spec), toolkit)


def code_sha256(code: str | bytes) -> str:
    """sha256 hex digest of the code as stored (UTF-8)."""
    data = code.encode("utf-8") if isinstance(code, str) else code
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    # Readers (runtime pods, the operator) must never see a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_version_dir(
    directory: str | os.PathLike[str],
    *,
    code: str,
    version: int,
    monitor: str,
    model: str,
    spec: Mapping[str, Any],
    spec_hash: str,
    generator: Mapping[str, Any],
    answers_feedback: Sequence[str] = (),
    lessons_applied: Sequence[Any] = (),
    enforce: Mapping[str, Any] | None = None,
    created_at: str | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> VersionManifest:
    """Write `monitor.py` and `manifest.json`; returns the manifest. Refuses to overwrite unless asked."""
    path = Path(directory)
    if not overwrite and ((path / CODE_FILE).exists() or (path / MANIFEST_FILE).exists()):
        raise ContractError(f"{path} already holds a version; versions are immutable, write a new directory")
    fields: dict[str, Any] = dict(extra or {})
    fields.update(
        contract=CONTRACT,
        version=version,
        monitor=monitor,
        model=model,
        specHash=spec_hash,
        spec=dict(spec),
        generator=dict(generator),
        answersFeedback=list(answers_feedback),
        lessonsApplied=list(lessons_applied),
        enforce=dict(enforce) if enforce is not None else None,
        codeSha256=code_sha256(code),
        createdAt=created_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    manifest = _validate_manifest(fields, where="the manifest to write")
    path.mkdir(parents=True, exist_ok=True)
    _atomic_write(path / CODE_FILE, code.encode("utf-8"))
    _atomic_write(path / MANIFEST_FILE, _manifest_bytes(manifest))
    return manifest


def record_enforce_report(directory: str | os.PathLike[str], report: Mapping[str, Any]) -> VersionManifest:
    """Store an enforce report in an existing version's manifest (the code and its hash are untouched)."""
    path = Path(directory)
    manifest = read_manifest(path)
    data = manifest.to_dict()
    data["enforce"] = json.loads(json.dumps(dict(report), allow_nan=False))
    updated = _validate_manifest(data, where=str(path / MANIFEST_FILE))
    _atomic_write(path / MANIFEST_FILE, _manifest_bytes(updated))
    return updated


def _manifest_bytes(manifest: VersionManifest) -> bytes:
    return (json.dumps(manifest.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _validate_manifest(data: Any, *, where: str) -> VersionManifest:
    if not isinstance(data, Mapping):
        raise ContractError(f"{where}: must be a JSON object, got {type(data).__name__}")
    try:
        return VersionManifest.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ContractError(f"{where}: invalid manifest ({problems})") from None


def read_manifest(directory: str | os.PathLike[str]) -> VersionManifest:
    """Parse and validate `manifest.json` of a version directory (no code is read or run)."""
    path = Path(directory) / MANIFEST_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(
            f"{path} is missing; a version directory holds {CODE_FILE} and {MANIFEST_FILE}"
        ) from None
    except OSError as exc:
        raise ContractError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ContractError(f"{path} is not UTF-8 text; write the manifest as UTF-8 JSON") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if isinstance(data, Mapping) and data.get("contract") != CONTRACT:
        raise ContractError(
            f"{path}: contract {data.get('contract')!r} is not supported "
            f"(this runtime speaks contract {CONTRACT}); "
            "regenerate the version with a matching generator"
        )
    return _validate_manifest(data, where=str(path))


def verify_version_dir(directory: str | os.PathLike[str]) -> tuple[VersionManifest, bytes]:
    """Check manifest, contract version and code hash without running anything; returns (manifest, code)."""
    path = Path(directory)
    if not path.is_dir():
        raise ContractError(f"{path} is not a directory; pass the version directory holding {CODE_FILE}")
    manifest = read_manifest(path)
    code_path = path / CODE_FILE
    try:
        code = code_path.read_bytes()
    except FileNotFoundError:
        raise ContractError(f"{code_path} is missing; the version directory is incomplete") from None
    except OSError as exc:
        raise ContractError(f"{code_path} cannot be read: {exc.strerror or exc}") from None
    actual = code_sha256(code)
    if actual != manifest.code_sha256:
        raise ContractError(
            f"{code_path} has sha256 {actual} but the manifest records {manifest.code_sha256}; "
            "the code was changed after it was enforced, regenerate or restore the version"
        )
    return manifest, code


def import_code(
    code: str | bytes, *, module_name: str = "poet_generated_monitor", filename: str = CODE_FILE
) -> types.ModuleType:
    """Run generated code as a fresh module (not in sys.modules); ContractError on failure.

    Callers verify (hash) or sandbox the code first: this function runs it.
    """
    try:
        compiled = compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ContractError(f"{filename} line {exc.lineno}: syntax error: {exc.msg}") from None
    # Tracebacks and warnings then show the generated source without reading the file again (which the
    # guard would refuse while restricted).
    text = code.decode("utf-8", errors="replace") if isinstance(code, bytes) else code
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    try:
        exec(compiled, module.__dict__)
    except Exception as exc:
        raise ContractError(f"{filename} failed while importing: {type(exc).__name__}: {exc}") from exc
    return module


def monitor_class_of(module: types.ModuleType, *, filename: str = CODE_FILE) -> type:
    """The module's `Monitor` class, after checking `CONTRACT` and the required methods."""
    declared = module.__dict__.get("CONTRACT")
    if declared != CONTRACT:
        raise ContractError(
            f"{filename} declares CONTRACT = {declared!r}; this runtime needs CONTRACT = {CONTRACT}"
        )
    cls = module.__dict__.get("Monitor")
    if not isinstance(cls, type):
        raise ContractError(
            f"{filename} defines no class Monitor; define `class Monitor` with __init__(spec, toolkit)"
        )
    missing = [
        name for name in REQUIRED_METHODS if not callable(cls.__dict__.get(name, getattr(cls, name, None)))
    ]
    if missing:
        raise ContractError(
            f"{filename}: Monitor lacks {', '.join(missing)}; every contract method is required"
        )
    return cls


def load_version_dir(directory: str | os.PathLike[str]) -> LoadedVersion:
    """Verify a version directory (manifest, contract, sha256), then import its code. Raises ContractError."""
    path = Path(directory)
    manifest, code = verify_version_dir(path)
    module_name = f"poet_monitor_v{manifest.version}_{manifest.code_sha256[:12]}"
    module = import_code(code, module_name=module_name, filename=str(path / CODE_FILE))
    cls = monitor_class_of(module, filename=str(path / CODE_FILE))
    return LoadedVersion(directory=path, manifest=manifest, module=module, monitor_class=cls)


# --- result schema ---------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_problem(value: Any) -> str | None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"is not strict JSON ({exc}); return plain floats/ints/strings and None instead of NaN"
    return None


def _feature_entry_problems(name: str, entry: Any) -> list[str]:
    where = f"features[{name!r}]"
    if not isinstance(entry, Mapping):
        return [f"{where} must be a dict, got {type(entry).__name__}"]
    problems = []
    if not isinstance(entry.get("drift_detected"), bool):
        problems.append(f"{where}.drift_detected must be a bool, got {entry.get('drift_detected')!r}")
    for key in ("score", "effect_size", "threshold"):
        if key in entry and entry[key] is not None and not _is_number(entry[key]):
            problems.append(f"{where}.{key} must be a finite number or None, got {entry[key]!r}")
    for key in ("p_value", "p_value_adjusted", "severity", "confidence", "missing_rate"):
        value = entry.get(key)
        if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
            problems.append(f"{where}.{key} must be None or a number in [0, 1], got {value!r}")
    if "severity" not in entry:
        problems.append(f"{where}.severity is missing (0..1, how far past its threshold)")
    if not isinstance(entry.get("method"), str):
        problems.append(f"{where}.method must be a string naming the test, got {entry.get('method')!r}")
    status = entry.get("status", "ok")
    if status not in FEATURE_STATUSES:
        problems.append(f"{where}.status must be one of {', '.join(FEATURE_STATUSES)}, got {status!r}")
    return problems


def drift_result_problems(result: Any, *, required: Sequence[str] = DRIFT_RESULT_KEYS) -> list[str]:
    """Everything wrong with a drift result (docs/drift-result.md); empty when it is valid."""
    if not isinstance(result, Mapping):
        return [f"result must be a dict, got {type(result).__name__}"]
    problems = [f"result lacks key {key!r}" for key in required if key not in result]
    features = result.get("features", {})
    if not isinstance(features, Mapping):
        problems.append(f"features must be a dict of feature name -> entry, got {type(features).__name__}")
        features = {}
    for name, entry in features.items():
        if not isinstance(name, str):
            problems.append(f"feature names must be strings, got {name!r}")
        problems.extend(_feature_entry_problems(str(name), entry))
    if "overall_health" in result and result["overall_health"] not in HEALTH_VALUES:
        problems.append(
            f"overall_health must be one of {', '.join(HEALTH_VALUES)}, got {result['overall_health']!r}"
        )
    score = result.get("overall_drift_score", 0.0)
    if not (_is_number(score) and 0.0 <= score <= 1.0):
        problems.append(f"overall_drift_score must be a number in [0, 1], got {score!r}")
    recommendations = result.get("recommendations", [])
    if not isinstance(recommendations, list) or not all(isinstance(r, str) for r in recommendations):
        problems.append("recommendations must be a list of strings")
    drifted = result.get("drifted_features", [])
    if not isinstance(drifted, list) or not all(isinstance(d, str) for d in drifted):
        problems.append("drifted_features must be a list of feature names")
    else:
        flagged = {
            n for n, e in features.items() if isinstance(e, Mapping) and e.get("drift_detected") is True
        }
        if set(drifted) != flagged:
            problems.append(
                f"drifted_features {sorted(drifted)} disagrees with the features flagged drift_detected "
                f"{sorted(flagged)}; list exactly the flagged features"
            )
    if not problems:
        json_problem = _json_problem(result)
        if json_problem:
            problems.append(f"result {json_problem}")
    return problems


def feature_result_problems(result: Any) -> list[str]:
    """Everything wrong with a `monitor_features` result; empty when it is valid."""
    problems = drift_result_problems(result, required=FEATURE_RESULT_KEYS)
    if (
        isinstance(result, Mapping)
        and "window_config" in result
        and not isinstance(result["window_config"], Mapping)
    ):
        problems.append("window_config must be a dict describing the window (strategy, size, ...)")
    return problems


def json_object_problems(value: Any, what: str) -> list[str]:
    """Problems of a value that must be a JSON object (state(), monitor_predictions results)."""
    if not isinstance(value, Mapping):
        return [f"{what} must return a dict, got {type(value).__name__}"]
    problem = _json_problem(value)
    return [f"{what} result {problem}"] if problem else []


def check_feature_result(result: Any) -> dict[str, Any]:
    """Return a valid `monitor_features` result unchanged, or raise ContractError listing the problems."""
    problems = feature_result_problems(result)
    if problems:
        raise ContractError("monitor_features broke the result schema: " + "; ".join(problems))
    return dict(result)


def check_drift_result(result: Any) -> dict[str, Any]:
    """Return a valid `detect_drift` result unchanged, or raise ContractError listing the problems."""
    problems = drift_result_problems(result)
    if problems:
        raise ContractError("detect_drift broke the result schema: " + "; ".join(problems))
    return dict(result)


__all__ = [
    "CODE_FILE",
    "CONTRACT",
    "MANIFEST_FILE",
    "REQUIRED_METHODS",
    "ContractError",
    "GeneratorInfo",
    "LoadedVersion",
    "VersionManifest",
    "check_drift_result",
    "check_feature_result",
    "code_sha256",
    "drift_result_problems",
    "feature_result_problems",
    "import_code",
    "json_object_problems",
    "load_version_dir",
    "monitor_class_of",
    "read_manifest",
    "record_enforce_report",
    "verify_version_dir",
    "write_version_dir",
]
