"""The checkpoint as data: the state codec (JSON plus numpy buffers, no pickle), the file's framing and
checksum, the old pickle format refused unread, and the report trackers' own `to_state`/`from_state`."""

from __future__ import annotations

import hashlib
import io
import pathlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor_runtime.server.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.prediction_quality import PredictionQuality
from monitor_runtime.server.state_codec import NotData, UnreadableState, decode_state, encode_state


def _texts(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _every_kind_of_data() -> dict[str, Any]:
    return {
        "plain": {"n": 3, "x": 0.1, "flag": True, "none": None, "text": "é\u0000\ud83d"[:2], "big": 2**70},
        "non_finite": [float("nan"), float("inf"), -float("inf"), 1.5],
        "float_run": [i / 3 for i in range(40)] + [float("nan"), float("-inf")],  # a window's numbers
        "tuple": (1, "a"),
        "$dollar": {"$array": [0, 0, [1]], "$$": "keys that look like tags are the state's own"},
        "floats": np.arange(12.0).reshape(3, 4)[:, ::2],  # not contiguous
        "ints": np.array([-(2**40), 7], dtype=np.int64),
        "small": np.array([1, 2], dtype=np.int8),
        "bools": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "dates": np.array(["2026-12-02T06:00"], dtype="M8[m]"),
        "unicode": np.array(["ab", "c"]),
        "scalar_array": np.array(4.5),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "text_column": _texts(["a", None, "", "ü"]),
        "mixed_labels": _texts(["yes", 1.0, float("nan"), None, True, np.float64(2.5)]),
        "numpy_scalars": [np.float64(0.5), np.int32(-3), np.bool_(True)],
        "bytes": b"PK\x03\x04 not an archive",
        "more_bytes": bytearray(b"\x00\x01"),
    }


def test_a_state_of_every_kind_of_data_round_trips() -> None:
    state = _every_kind_of_data()
    back = decode_state(encode_state(state))
    assert set(back) == set(state)
    assert back["plain"] == state["plain"]
    assert back["tuple"] == [1, "a"]  # tuples are stored as lists
    run = back["float_run"]
    assert type(run) is list and all(type(v) is float for v in run)  # the very same floats, in a list
    assert run[:40] == state["float_run"][:40] and np.isnan(run[40]) and run[41] == -np.inf
    assert back["$dollar"] == state["$dollar"]  # a state key never passes for a tag
    assert np.isnan(back["non_finite"][0]) and back["non_finite"][1:] == [np.inf, -np.inf, 1.5]
    for key in ("floats", "ints", "small", "bools", "complex", "dates", "unicode", "scalar_array", "empty"):
        assert back[key].dtype == state[key].dtype and back[key].shape == state[key].shape, key
        np.testing.assert_array_equal(back[key], state[key])
        assert back[key].flags.writeable
    assert back["text_column"].dtype == object and back["text_column"].tolist() == ["a", None, "", "ü"]
    mixed = back["mixed_labels"].tolist()
    assert mixed[:2] == ["yes", 1.0] and np.isnan(mixed[2]) and mixed[3:] == [None, True, 2.5]
    assert back["numpy_scalars"] == [0.5, -3, True]
    assert back["bytes"] == state["bytes"] and back["more_bytes"] == b"\x00\x01"


def test_the_archive_is_plain_npz_with_a_member_per_dtype_whatever_the_number_of_arrays() -> None:
    state = {"chunks": [{"counts": np.arange(20.0), "pct": np.linspace(0, 1, 101)} for _ in range(500)]}
    payload = encode_state(state)
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}  # every member loads without pickle
    assert sorted(members) == ["b0", "state"]  # one float64 buffer for the 1000 arrays
    assert members["b0"].size == 500 * 121
    back = decode_state(payload)
    np.testing.assert_array_equal(back["chunks"][499]["pct"], np.linspace(0, 1, 101))


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("state", "where", "what"),
    [
        ({"monitor_state": {"seen": {1, 2}}}, "monitor_state.seen", "set is not data"),
        ({"a": [1, {"b": _Opaque()}]}, "a[1].b", "_Opaque is not data"),
        ({"a": {"my key": print}}, "a['my key']", "builtin_function_or_method is not data"),
        ({"a": {1: "x"}}, "at a:", "key 1 is int; checkpoint keys are str"),
        ({"col": _texts(["a", {"b": 1}])}, "at col:", "object array holds dict at flat index 1"),
        ({"rec": np.zeros(2, dtype=[("x", "f8")])}, "at rec:", "array of dtype"),
        ({"when": np.datetime64("2026-01-01")}, "at when:", "datetime64 is not data"),
        ({"nested": [[1, 2], [3, np.float64(1.0), object()]]}, "nested[1][2]", "object is not data"),
    ],
)
def test_anything_that_is_not_data_is_refused_naming_its_path(state: dict, where: str, what: str) -> None:
    with pytest.raises(NotData) as info:
        encode_state(state)
    assert where in str(info.value) and what in str(info.value)


def _npz(**members: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **members)
    return out.getvalue()


def _document(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


class _Touch:
    """Unpickling this touches `path`: the visible effect a pickle payload could have."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_the_touch_payload_has_its_effect_when_unpickled(tmp_path: Path) -> None:
    # The control for the refusals below: the payload is live, so a marker that stays absent proves that
    # nothing unpickled it.
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps({"x": _Touch(marker)}))
    assert marker.exists()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not an archive at all", "not an npz archive"),
        (_npz(b0=np.arange(3.0)), "no 'state' member"),
        (_npz(state=_document("{]")), "not JSON"),
        (
            _npz(state=_document('{"format": "other", "version": 2, "buffers": [], "state": {}}')),
            "not a poet",
        ),
        (
            _npz(state=_document('{"format": "poet.checkpoint", "version": 9, "buffers": [], "state": {}}')),
            "9",
        ),
        (
            _npz(
                state=_document(
                    '{"format":"poet.checkpoint","version":2,"buffers":[],"state":{"x":{"$eval":1}}}'
                )
            ),
            "unknown or malformed tag '$eval'",
        ),
        (
            _npz(
                state=_document(
                    '{"format":"poet.checkpoint","version":2,"buffers":["<f8"],'
                    '"state":{"x":{"$array":[0,2,[5]]}}}'
                ),
                b0=np.arange(4.0),
            ),
            "past the end of b0",
        ),
        (
            _npz(
                state=_document('{"format":"poet.checkpoint","version":2,"buffers":["<i8"],"state":{}}'),
                b0=np.arange(4.0),
            ),
            "differ from the document",
        ),
    ],
)
def test_archives_this_codec_did_not_write_are_unreadable(payload: bytes, reason: str) -> None:
    with pytest.raises(UnreadableState) as info:
        decode_state(payload)
    assert reason in str(info.value)


def test_an_archive_member_holding_pickled_objects_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = _Touch(marker)
    out = io.BytesIO()
    np.savez(
        out, state=_document('{"format":"poet.checkpoint","version":2,"buffers":["|O"],"state":{}}'), b0=evil
    )
    with pytest.raises(UnreadableState, match="cannot be read"):
        decode_state(out.getvalue())
    assert not marker.exists()


# ---------------------------------------------------------------- the file


def test_a_checkpoint_file_round_trips_and_damage_is_detected(tmp_path: Path) -> None:
    state = _every_kind_of_data()
    path = save_checkpoint(tmp_path, state)
    assert path == tmp_path / CHECKPOINT_NAME and [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    np.testing.assert_array_equal(load_checkpoint(tmp_path)["floats"], state["floats"])
    data = path.read_bytes()
    header, digest, payload = data.split(b"\n", 2)
    assert header == b"POETCKPT2" and digest == hashlib.sha256(payload).hexdigest().encode()
    assert zipfile.is_zipfile(io.BytesIO(payload))
    for damaged in (data[:-10], data[: len(data) // 2], data[:-1] + bytes([data[-1] ^ 1]), data[:40]):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            load_checkpoint(tmp_path)
    path.write_bytes(b"something else")
    with pytest.raises(CheckpointError, match="not a poet checkpoint"):
        load_checkpoint(tmp_path)


def test_a_state_that_is_not_data_leaves_the_previous_checkpoint_in_place(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, {"n": 1})
    before = path.read_bytes()
    with pytest.raises(NotData, match=r"monitor_state\.window: deque is not data"):
        save_checkpoint(tmp_path, {"monitor_state": {"window": __import__("collections").deque([1])}})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def _pickle_checkpoint(marker: Path) -> bytes:
    """A checkpoint as older runtimes wrote it (magic, sha256, pickle), with a live payload."""
    payload = pickle.dumps({"code_sha256": "x", "monitor_state": _Touch(marker)})
    return b"POETCKPT1\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


@pytest.mark.parametrize("name", ["checkpoint.pkl", CHECKPOINT_NAME])
def test_a_checkpoint_of_the_old_pickle_format_is_refused_unread(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "unpickled"
    (tmp_path / name).write_bytes(_pickle_checkpoint(marker))
    with pytest.raises(CheckpointError, match="pickle format of an older runtime") as info:
        load_checkpoint(tmp_path)
    assert "POETCKPT1" in str(info.value) and "starting fresh" in str(info.value)
    assert not marker.exists()
    # The next checkpoint replaces it; the old file is gone for good.
    save_checkpoint(tmp_path, {"n": 2})
    assert load_checkpoint(tmp_path) == {"n": 2} and not (tmp_path / "checkpoint.pkl").exists()
    assert not marker.exists()


# ---------------------------------------------------------------- the report's trackers


def _tracker() -> DistributionTracker:
    rng = np.random.default_rng(3)
    tracker = DistributionTracker(window_rows=300)
    tracker.set_reference(
        {
            "age": rng.normal(40, 10, 500),
            "segment": _texts(list(rng.choice(["a", "b", "c"], 500))),
            "flat": np.full(500, 2.0),
        }
    )
    for seed in range(4):  # more rows than one window: the oldest chunk has been dropped
        r = np.random.default_rng(seed)
        age = r.normal(45, 10, 100)
        age[:5] = np.nan
        tracker.add_current(
            {"age": age, "segment": _texts(["a", None, "z", "b"] * 25), "flat": np.full(100, np.nan)}, 100
        )
    return tracker


def test_distributions_round_trip_through_the_codec() -> None:
    tracker = _tracker()
    back = DistributionTracker.from_state(decode_state(encode_state({"d": tracker.to_state()}))["d"])
    assert len(back.chunks) == len(tracker.chunks) == 3
    assert repr(back.snapshot()) == repr(tracker.snapshot())  # NaN statistics included
    # The restored tracker keeps working: counts go on from where they were.
    more = {"age": np.full(100, 80.0), "segment": _texts(["c"] * 100), "flat": np.full(100, 2.0)}
    tracker.add_current(more, 100)
    back.add_current(more, 100)
    assert repr(back.snapshot()) == repr(tracker.snapshot())


def test_prediction_quality_round_trips_through_the_codec() -> None:
    quality = PredictionQuality("classification", "yes", window_rows=250)
    labels = _texts(["yes", "no"] * 100)
    quality.set_reference(labels, labels, None)
    # Actuals of batches without them are NaN among the labels: an object column of mixed types.
    actuals = _texts(["yes", float("nan"), "no", None] * 50)
    quality.add_current(labels, actuals, np.linspace(0, 1, 200))
    quality.add_current(labels[:100], labels[:100], None)
    back = PredictionQuality.from_state(decode_state(encode_state({"q": quality.to_state()}))["q"])
    assert back.snapshot() == quality.snapshot() and back.snapshot()["current"] is not None
    more = _texts(["no"] * 100)
    quality.add_current(more, labels[:100], None)
    back.add_current(more, labels[:100], None)
    assert back.snapshot() == quality.snapshot()


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda s: s["features"]["age"].update(kind="histogram"), "distributions.features['age'].kind"),
        (lambda s: s["features"]["age"].update(edges=[0, 1]), "distributions.features['age'].edges"),
        (lambda s: s["chunks"][0].update(rows="many"), "distributions.chunks[0].rows"),
        (
            lambda s: s["chunks"][1]["features"]["segment"]["summary"].update(missing=None),
            "distributions.chunks[1].features['segment'].summary.missing",
        ),
    ],
)
def test_a_malformed_distributions_state_names_the_field(edit: Any, where: str) -> None:
    state = decode_state(encode_state({"d": _tracker().to_state()}))["d"]
    edit(state)
    with pytest.raises(ValueError, match="^" + __import__("re").escape(where) + ":"):
        DistributionTracker.from_state(state)


def test_a_history_entry_is_data_whatever_types_the_result_used() -> None:
    from monitor_runtime.server.history import history_entry

    class Verdict:
        def __str__(self) -> str:
            return "distribution"

    result = {
        "overall_health": np.str_("critical"),
        "overall_drift_score": np.float64(0.4),
        "features": {
            "age": {"drift_detected": np.bool_(True), "score": np.nan, "decision": {"decided_by": Verdict()}}
        },
    }
    entry = history_entry(result, at=1.0, version=1, code_sha256="c", rows=10)
    assert type(entry["overall_health"]) is str and entry["features"]["age"]["decided_by"] == "distribution"
    assert decode_state(encode_state({"entry": entry}))["entry"] == entry
