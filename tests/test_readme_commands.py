"""Every command in the README's shell blocks is either run here or listed with the reason it is not.

Commands that need a cluster (kubectl, helm install/upgrade, curl through a port-forward) are recognised by
their first words; a new README command that is neither run nor excused fails the first test, and an entry
below that the README no longer has fails it too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.kube_tools import kube_tools

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# Commands run by test_readme_commands_run, exactly as written (paths under /tmp go to the test's tmp_path);
# a tuple is a sequence the README runs in that order.
RUN_GROUPS: list[tuple[str, ...]] = [
    ("make demo",),
    ("make lint",),
    ("helm lint charts/poet-monitor",),
    (
        "helm template poet-monitor charts/poet-monitor --namespace poet-system "
        "-f charts/poet-monitor/ci/namespaced-values.yaml",
    ),
    (
        "poetmon generate -f examples/data/monitor.yaml -o /tmp/poet-version",
        "poetmon enforce /tmp/poet-version",
    ),
    (
        "poetmon run -f examples/data/monitor.yaml --reference examples/data/reference.csv "
        "--current examples/data/current.csv",
    ),
]
RUN = [command for group in RUN_GROUPS for command in group]
# Commands that could run without a cluster but are not run here, and why.
NOT_RUN = {
    "make test": "runs the whole suite, this test included",
    "make images": "needs a Docker daemon; test_make_images_builds_both_targets checks what it runs",
    "make bench-quick": "a benchmark; tests/bench/test_drift_bench.py runs its harness",
    "make bench-runtime": "a benchmark of a running server; tests/runtime cover the server",
    "make bench-generator": "a benchmark; tests/poet cover the generators it times",
    "make e2e": "brings up a real cluster (root, the cached Kubernetes build); it is the end-to-end suite",
    "make cluster-up": "brings up a real single-node cluster (root)",
    "make cluster-down": "tears down what make cluster-up brought up",
    "E2E_KUBECONFIG=~/.kube/config make e2e": "the end-to-end suite against a user's own cluster",
}
# First words of commands that need a Kubernetes cluster (or a port-forward into one).
CLUSTER = ("kubectl ", "helm install ", "helm upgrade ", "helm uninstall ", "curl ")


def readme_commands() -> list[str]:
    """Commands of the README's ```bash blocks, continuation lines joined and comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_is_run_or_excused() -> None:
    commands = readme_commands()
    assert len(commands) >= 10
    unclassified = [c for c in commands if c not in RUN and c not in NOT_RUN and not c.startswith(CLUSTER)]
    assert not unclassified, f"README commands neither run nor excused: {unclassified}"
    stale = [c for c in [*RUN, *NOT_RUN] if c not in commands]
    assert not stale, f"listed here but not in the README: {stale}"


def environment(tmp_path: Path) -> dict[str, str]:
    """The README's tools first on PATH: this interpreter's `poetmon`, the unpacked `helm`."""
    helm, _ = kube_tools()
    path = os.pathsep.join([str(Path(sys.executable).parent), str(helm.parent), os.environ.get("PATH", "")])
    python_path = os.pathsep.join([str(REPO), str(REPO / "operator")])
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": python_path,
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }


def run_readme_command(command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command.replace("/tmp/poet-version", str(tmp_path / "poet-version")))
    if argv[0] == "make":
        # The Makefile's own virtual environment is this interpreter's; a fresh stamp file stops it from
        # creating another one (which `make` does on a new machine before running the same recipe).
        stamp = tmp_path / "installed"
        stamp.touch()
        argv += [f"VENV={Path(sys.executable).parent.parent}", f"STAMP={stamp}"]
    proc = subprocess.run(
        argv, cwd=REPO, env=environment(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.parametrize("group", RUN_GROUPS, ids=lambda g: g[0].split(" -")[0][:40])
def test_readme_commands_run(group: tuple[str, ...], tmp_path: Path) -> None:
    for command in group:
        proc = run_readme_command(command, tmp_path)
        if command.startswith("poetmon run"):
            assert "income" in proc.stdout  # the bundled example drifts in income
        if command == "make demo":
            # The self-healing loop on examples/payments (README Quickstart): the kernel kills version 1 in a
            # cgroup (exit 137); under RLIMIT_AS the runtime ends itself as out of memory (exit 3).
            assert "RESULT  phase Running" in proc.stdout and "drift detected in amount" in proc.stdout
            killed = "(cgroup v" in proc.stdout
            for step in (
                f"reason OOMKilled, exit code {137 if killed else 3}",
                "CanaryStarted: version 2",
                "Promoted: version 2",
            ):
                assert step in proc.stdout, proc.stdout[-3000:]
        if command.startswith("helm template"):
            assert "kind: Role" in proc.stdout and "namespace: ml-team-a" in proc.stdout
        if command.startswith("poetmon generate"):
            assert (tmp_path / "poet-version" / "monitor.py").is_file()


def test_make_images_builds_both_targets() -> None:
    # Under `make test` this runs as a sub-make, which would print "Entering directory" lines.
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "images"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert proc.stdout.splitlines() == [
        "docker build --target runtime -t poet-monitor/runtime:0.1.0 .",
        "docker build --target operator -t poet-monitor/operator:0.1.0 .",
    ]


@pytest.mark.parametrize("doc", ["README.md", "docs/install.md", "docs/operator.md"])
def test_relative_links_resolve(doc: str) -> None:
    """Every relative link in the user's documentation names a file that exists, and a heading in it."""
    source = REPO / doc
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"{doc}: broken links {broken}"
