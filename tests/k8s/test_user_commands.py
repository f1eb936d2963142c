"""`poetmon status|history|diff|promote|...` and `kubectl poet ...` against the Kubernetes API emulator.

The real `kubernetes` client talks HTTP to kmock's emulator on loopback; the commands run in-process through
`cli.main` with a real kubeconfig file, and once as the `kubectl-poet` console script under real kubectl.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from poet_operator.cli import kubectl_poet, main

from tests.k8s.emulator import CONFIGMAPS, MODELMONITORS, EmulatedCluster, running_emulator, write_kubeconfig
from tests.rollout.monitors import mid_canary
from tests.rollout.test_render import payloads

ROOT = Path(__file__).resolve().parents[2]
NS = "ml"


@pytest.fixture
def cluster(tmp_path: Path) -> EmulatedCluster:
    """The emulator (kubeconfig namespace `ml`) holding monitor `fraud` mid-canary and ConfigMaps v2, v3."""
    with running_emulator(tmp_path, namespace=NS) as emulated:
        emulated.put(MODELMONITORS, mid_canary("fraud", NS))
        for payload in payloads():
            emulated.put(
                CONFIGMAPS,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": payload.config_map,
                        "namespace": NS,
                        "labels": {"poet.dev/monitor": "fraud", "poet.dev/version": str(payload.number)},
                    },
                    "immutable": True,
                    "data": {"monitor.py": payload.code, "manifest.json": json.dumps(payload.manifest)},
                },
            )
        # Another monitor's version in the same namespace: never counted as fraud's.
        emulated.put(
            CONFIGMAPS,
            {
                "metadata": {
                    "name": "other-v1",
                    "namespace": NS,
                    "labels": {"poet.dev/monitor": "other", "poet.dev/version": "1"},
                },
                "data": {},
            },
        )
        yield emulated


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_of_a_monitor_mid_canary(cluster: EmulatedCluster, capsys) -> None:
    code, out, err = run(capsys, "status", "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 0, err
    assert (
        "Name:          fraud\nNamespace:     ml\nModel:         fraud-model\nPhase:         ◌ Canary\n"
        in out
    )
    assert "Canary:        v3 (fraud-v3, template)" in out
    assert "ready" in out.split("Analysis:", 1)[1].splitlines()[0]
    assert "✖ OOMKilled (exit 137) on pod fraud-6d5f7-abcde, v2 stable" in out
    assert "\x1b[" not in out  # not a TTY
    calls = cluster.requests()
    # The namespace came from the kubeconfig's context; one read of the monitor, nothing else.
    assert [(c.verb, c.group, c.resource, c.namespace, c.name) for c in calls] == [
        ("get", "poet.dev", "modelmonitors", NS, "fraud")
    ]


def test_status_as_json_and_an_explicit_namespace(cluster: EmulatedCluster, capsys, tmp_path: Path) -> None:
    other = write_kubeconfig(tmp_path / "elsewhere", cluster.url, namespace="default")
    code, out, err = run(capsys, "status", "fraud", "-n", NS, "--kubeconfig", str(other), "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["name"] == "fraud" and data["namespace"] == NS
    assert data["status"] == mid_canary("fraud", NS)["status"]


def test_history(cluster: EmulatedCluster, capsys) -> None:
    code, out, err = run(capsys, "history", "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("v3", "canary", "crash-feedback"),
        ("v2", "stable", "spec-change"),
        ("v1", "superseded", "initial"),
    ]
    code, out, err = run(capsys, "history", "fraud", "--kubeconfig", str(cluster.kubeconfig), "-o", "json")
    assert [v["number"] for v in json.loads(out)] == [3, 2, 1]


@pytest.mark.parametrize("versions", [("2", "3"), ("v2", "v3"), ("stable", "canary")])
def test_diff_of_two_version_configmaps(cluster: EmulatedCluster, capsys, versions: tuple[str, str]) -> None:
    code, out, err = run(capsys, "diff", "fraud", *versions, "--kubeconfig", str(cluster.kubeconfig))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "fraud: v2 → v3"
    assert "    + OOMKilled -> bounded_memory (feedback)" in lines
    assert "--- fraud-v2/monitor.py" in lines and "+++ fraud-v3/monitor.py" in lines
    assert "-REMEDIES = {}" in lines and "+REMEDIES = {'OOMKilled': 'bounded_memory'}" in lines
    reads = [(c.verb, c.resource, c.name) for c in cluster.requests()]
    assert reads == [
        ("get", "modelmonitors", "fraud"),
        ("get", "configmaps", "fraud-v2"),
        ("get", "configmaps", "fraud-v3"),
    ]


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        ("promote", "poet.dev/promote", "time"),
        ("abort", "poet.dev/abort", "time"),
        ("regenerate", "poet.dev/regenerate", "time"),
        ("pause", "poet.dev/paused", "true"),
    ],
)
def test_each_annotation_command_sends_one_merge_patch(
    cluster: EmulatedCluster, capsys, command: str, key: str, value: str
) -> None:
    code, out, err = run(capsys, command, "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 0, err
    patches = [c for c in cluster.requests() if c.verb == "patch"]
    assert len(patches) == 1
    patch = patches[0]
    assert (patch.group, patch.resource, patch.namespace, patch.name) == (
        "poet.dev",
        "modelmonitors",
        NS,
        "fraud",
    )
    assert patch.subresource is None
    assert patch.content_type == "application/merge-patch+json"
    assert list(patch.body) == ["metadata"] and list(patch.body["metadata"]) == ["annotations"]
    sent = patch.body["metadata"]["annotations"]
    assert list(sent) == [key]
    stored = cluster.get(MODELMONITORS, NS, "fraud")["metadata"]["annotations"][key]
    assert stored == sent[key]
    if value == "time":  # a one-shot request carries the time it was made, RFC 3339 in UTC
        assert len(sent[key]) == 20 and sent[key].endswith("Z") and sent[key][10] == "T"
    else:
        assert sent[key] == value
    assert out.startswith(
        {
            "promote": "promote requested for fraud: canary v3 replaces stable v2",
            "abort": "abort requested for fraud: canary v3 is rolled back",
            "regenerate": "regenerate requested for fraud",
            "pause": "fraud paused",
        }[command]
    )


def test_resume_removes_the_paused_annotation(cluster: EmulatedCluster, capsys) -> None:
    obj = mid_canary("fraud", NS)
    obj["metadata"]["annotations"] = {"poet.dev/paused": "true", "team": "fraud"}
    cluster.put(MODELMONITORS, obj)
    code, out, err = run(capsys, "resume", "fraud", "--kubeconfig", str(cluster.kubeconfig), "-o", "json")
    assert code == 0, err
    (patch,) = [c for c in cluster.requests() if c.verb == "patch"]
    assert patch.body == {"metadata": {"annotations": {"poet.dev/paused": None}}}
    assert cluster.get(MODELMONITORS, NS, "fraud")["metadata"]["annotations"] == {"team": "fraud"}
    assert json.loads(out)["annotations"] == {"team": "fraud"}


def test_a_missing_monitor_is_one_line_and_exit_1(cluster: EmulatedCluster, capsys) -> None:
    for command in ("status", "promote"):
        code, out, err = run(capsys, command, "nope", "--kubeconfig", str(cluster.kubeconfig))
        assert code == 1 and out == ""
        assert err == "error: modelmonitor 'nope' not found in namespace ml (see: kubectl get mm -n ml)\n"


def test_a_garbage_collected_configmap_names_the_versions_kept(cluster: EmulatedCluster, capsys) -> None:
    code, out, err = run(capsys, "diff", "fraud", "1", "3", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1 and out == ""
    assert err == (
        "error: ConfigMap fraud-v1 of version 1 is gone (old versions are garbage-collected); "
        "versions kept for fraud: v2, v3\n"
    )
    code, out, err = run(capsys, "diff", "fraud", "2", "9", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1
    assert err == "error: fraud has no version 9 (latest is v3; ConfigMaps kept: v2, v3)\n"


def test_forbidden_names_the_verb_and_resource(cluster: EmulatedCluster, capsys) -> None:
    cluster.fail(
        "patch",
        MODELMONITORS,
        403,
        "Forbidden",
        'modelmonitors.poet.dev "fraud" is forbidden: User "alice" cannot patch resource',
    )
    code, out, err = run(capsys, "promote", "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        "error: forbidden: you may not patch modelmonitors.poet.dev 'fraud' in namespace ml "
        "(needs RBAC verb 'patch' on modelmonitors.poet.dev): "
    )
    assert 'User "alice" cannot patch resource' in err


def test_no_cluster_reachable(tmp_path: Path, capsys) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", namespace=NS)
    code, out, err = run(capsys, "status", "fraud", "--kubeconfig", str(kubeconfig))
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"error: cannot reach the Kubernetes API at http://127.0.0.1:{port} (")
    assert err.endswith("check --kubeconfig/--context or try: kubectl cluster-info\n")


def test_kubeconfig_problems(tmp_path: Path, capsys, cluster: EmulatedCluster) -> None:
    empty = tmp_path / "empty"
    empty.write_text("{}\n")
    code, _, err = run(capsys, "status", "fraud", "--kubeconfig", str(empty))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: no usable kubeconfig ({empty}): ")
    assert err.endswith("; pass --kubeconfig or set KUBECONFIG\n")
    code, _, err = run(capsys, "status", "fraud", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 1 and err == f"error: kubeconfig {tmp_path / 'missing'} does not exist\n"
    code, _, err = run(
        capsys, "status", "fraud", "--kubeconfig", str(cluster.kubeconfig), "--context", "prod"
    )
    assert code == 1 and err == "error: context 'prod' is not in the kubeconfig (contexts: emulator)\n"
    code, _, err = run(capsys, "diff", "fraud", "2", "latest", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1
    assert err == "error: version 'latest' is not a version: use a number (3 or v3), stable or canary\n"


def test_kubectl_poet_entry_point_exposes_the_same_commands(cluster: EmulatedCluster, capsys) -> None:
    assert kubectl_poet(["history", "fraud", "--kubeconfig", str(cluster.kubeconfig), "-o", "json"]) == 0
    assert [v["number"] for v in json.loads(capsys.readouterr().out)] == [3, 2, 1]
    with pytest.raises(SystemExit):
        kubectl_poet(["demo"])  # the local commands stay under poetmon


def _kubectl_poet_script(directory: Path) -> Path:
    """The console script pip writes for the `kubectl-poet` entry point declared in pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["kubectl-poet"].split(":")
    script = directory / "kubectl-poet"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    return script


def test_kubectl_poet_as_a_real_kubectl_plugin(cluster: EmulatedCluster, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = _kubectl_poet_script(bin_dir)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        KUBECONFIG=str(cluster.kubeconfig),
        NO_COLOR="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "operator")]),
    )
    kubectl = shutil.which("kubectl")
    # kubectl finds `kubectl-poet` on PATH and runs it with the rest of the arguments.
    prefix = [kubectl, "poet"] if kubectl else [str(script)]
    done = subprocess.run(
        [*prefix, "status", "fraud"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        "Phase:         ◌ Canary" in done.stdout and "Stable:        v2 (fraud-v2, template)" in done.stdout
    )
    missing = subprocess.run(
        [*prefix, "status", "nope"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode == 1
    assert (
        missing.stderr == "error: modelmonitor 'nope' not found in namespace ml (see: kubectl get mm -n ml)\n"
    )


@pytest.mark.parametrize(
    ("status", "reason", "message", "expected"),
    [
        (
            401,
            "Unauthorized",
            "Unauthorized",
            "error: unauthorized: the API server at {url} refused the kubeconfig's credentials; "
            "log in again\n",
        ),
        (
            404,
            "NotFound",
            "the server could not find the requested resource",
            "error: the cluster does not serve modelmonitors.poet.dev: install the ModelMonitor CRD "
            "(kubectl apply -f crds/modelmonitor.yaml)\n",
        ),
        (
            500,
            "InternalError",
            "etcdserver: request timed out",
            "error: the API server answered 500 to get modelmonitors.poet.dev 'fraud' in namespace ml: "
            "etcdserver: request timed out\n",
        ),
    ],
)
def test_other_api_errors_are_one_line(
    cluster: EmulatedCluster, capsys, status: int, reason: str, message: str, expected: str
) -> None:
    cluster.fail("get", MODELMONITORS, status, reason, message)
    code, out, err = run(capsys, "status", "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1 and out == ""
    assert err == expected.format(url=cluster.url)


def test_colors_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    from poet_operator.k8s.user_commands import Terminal

    monkeypatch.delenv("NO_COLOR", raising=False)
    leader, follower = os.openpty()  # a real pseudo-terminal
    try:
        with os.fdopen(follower, "w") as tty, open(os.devnull, "w") as not_a_tty:
            assert Terminal.detect(tty).color is True
            assert Terminal.detect(not_a_tty).color is False
            monkeypatch.setenv("NO_COLOR", "1")
            assert Terminal.detect(tty).color is False
    finally:
        os.close(leader)


def test_a_status_this_version_cannot_read_is_one_line(cluster: EmulatedCluster, capsys) -> None:
    obj = mid_canary("fraud", NS)
    obj["status"]["phase"] = "Hibernating"  # a phase from some future operator
    cluster.put(MODELMONITORS, obj)
    code, out, err = run(capsys, "status", "fraud", "--kubeconfig", str(cluster.kubeconfig))
    assert code == 1 and out == ""
    assert err.startswith(
        "error: the status of fraud is not what this version of poetmon reads (status.phase: "
    )
    assert err.endswith("; use -o json, or upgrade poetmon\n") and err.count("\n") == 1
    code, out, _ = run(capsys, "status", "fraud", "--kubeconfig", str(cluster.kubeconfig), "-o", "json")
    assert code == 0 and json.loads(out)["status"]["phase"] == "Hibernating"
