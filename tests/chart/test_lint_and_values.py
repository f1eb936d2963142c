"""`helm lint` passes for the defaults and every documented variant; values.schema.json rejects bad values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.chart.chart_helpers import CHART, VARIANTS, helm, values_args


def test_the_documented_variants_are_there() -> None:
    names = {p.name for p in VARIANTS}
    assert {"namespaced-values.yaml", "monitors-values.yaml", "dashboard-values.yaml"} <= names
    assert "networkpolicy-values.yaml" in names
    install_doc = (CHART.parents[1] / "docs" / "install.md").read_text()
    for variant in VARIANTS:
        assert f"ci/{variant.name}" in install_doc, f"docs/install.md does not document {variant.name}"


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=lambda v: "defaults" if v is None else v.stem)
def test_helm_lint_strict(variant: Path | None) -> None:
    proc = helm("lint", "--strict", CHART, *values_args([variant] if variant else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


BAD_VALUES = [
    # (values, the part of helm's message that names the problem)
    ({"watch": {"namespaces": ["Team_A"]}}, "/watch/namespaces/0"),
    ({"operator": {"metricsPort": 70000}}, "/operator/metricsPort"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"serviceMonitor": {"interval": "soon"}}, "/serviceMonitor/interval"),
    ({"rolloutDefaults": {"restartTolerance": -1}}, "/rolloutDefaults/restartTolerance"),
    # A key in values would end up in the release's stored manifest: only a Secret reference is accepted.
    ({"llm": {"apiKey": "sk-not-here"}}, "apiKey"),
    ({"replicas": 2}, "replicas"),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
@pytest.mark.parametrize("command", ["template", "lint"])
def test_values_breaking_the_schema_are_rejected(
    tmp_path: Path, values: dict, named: str, command: str
) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    args = ["template", "poet", CHART] if command == "template" else ["lint", CHART]
    proc = helm(*args, "-f", bad)
    assert proc.returncode != 0, f"helm {command} accepted {values}"
    output = proc.stdout + proc.stderr
    assert "schema" in output.lower() or "additional properties" in output.lower(), output
    assert named in output, output


def test_every_value_has_a_comment() -> None:
    """Each key in values.yaml has a comment line right above it (free-form maps excepted)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    free_form_parents = {"resources", "requests", "limits", "labels"}
    parents: list[tuple[int, str]] = []
    missing = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if not (parents and parents[-1][1] in free_form_parents):
            previous = lines[i - 1].strip() if i else ""
            if not previous.startswith("#"):
                missing.append(f"line {i + 1}: {key}")
        parents.append((indent, key))
    assert not missing, f"values without a comment above them: {missing}"


def test_schema_covers_every_default_value() -> None:
    """values.yaml passes its own schema key by key: nothing in it is unknown to values.schema.json."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_notes_tell_what_to_apply_and_how_to_watch() -> None:
    proc = helm("install", "poet-monitor", CHART, "--namespace", "poet-system", "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n poet-system rollout status deployment/poet-monitor" in notes
    assert "kubectl apply -n NAMESPACE -f examples/minimal.yaml" in notes
    assert (CHART.parents[1] / "examples" / "minimal.yaml").is_file()
    assert "kubectl get mm -n NAMESPACE -w" in notes and "kubectl poet status NAME" in notes
    assert "llm.apiKeySecret.name" in notes  # no key configured: the notes say how
