"""A hand-written monitor that keeps contract 1: the known-good sample of the enforce tests."""

import math

import numpy as np

CONTRACT = 1


def _json_values(values):
    # state() must be strict JSON: NaN and inf become None.
    out = []
    for value in values.tolist():
        if isinstance(value, float) and not math.isfinite(value):
            out.append(None)
        else:
            out.append(value)
    return out


class Monitor:
    def __init__(self, spec, toolkit):
        self.spec = spec
        self.toolkit = toolkit
        self.features = {
            f["name"]: {"type": f["type"], "importance": f["importance"]} for f in spec["features"]
        }
        self.optimize_for = spec.get("optimizeFor", "accuracy")
        self.task = spec["predictions"]["task"]
        self.reference_data = None
        self.reference = None
        self.batches = 0

    def _fit(self):
        self.reference = self.toolkit.Reference.fit(
            self.reference_data, features=self.features or None, optimize_for=self.optimize_for
        )

    def update_reference_window(self, new_data):
        self.reference_data = {name: np.asarray(values) for name, values in new_data.items()}
        self._fit()

    def detect_drift(self, current):
        if self.reference is None:
            return {
                "features": {},
                "overall_drift_score": 0.0,
                "overall_health": "good",
                "drifted_features": [],
                "recommendations": ["no reference yet"],
            }
        return self.reference.detect(current)

    def monitor_features(self, batch):
        result = dict(self.detect_drift(batch))
        self.batches += 1
        result["window_config"] = {"strategy": "fixed", "batches": self.batches}
        return result

    def monitor_predictions(self, predictions, actuals):
        if actuals is None or self.task == "none" or len(predictions) == 0:
            return {"task": self.task, "n": len(predictions)}
        return self.toolkit.evaluate_predictions(predictions, actuals, task=self.task)

    def state(self):
        data = None
        if self.reference_data is not None:
            data = {name: _json_values(values) for name, values in self.reference_data.items()}
        return {"reference": data, "batches": self.batches}

    def restore(self, state):
        self.batches = int(state["batches"])
        if state["reference"] is not None:
            self.reference_data = {
                name: np.array([np.nan if v is None else v for v in values])
                if all(v is None or isinstance(v, float | int) for v in values)
                else np.array(values, dtype=object)
                for name, values in state["reference"].items()
            }
            self._fit()
