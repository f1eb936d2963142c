"""The container images: the Dockerfile parses, its COPY sources exist and reach the build context, each image
gets only what its process needs, and `poetmon serve` runs without the operator's packages."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.chart.chart_helpers import REPO
from tests.runtime.server.runtime_server_helpers import (
    columns_json,
    frame,
    free_port,
    http,
    wait_until,
    write_version,
)

OPERATOR_ONLY = {"kopf", "kubernetes", "openai"}
UID = "10001"
RUNTIME_CMD = [
    "serve", "--code-dir", "/etc/poet/version", "--host", "0.0.0.0", "--port", "8080",
    "--checkpoint-dir", "/var/lib/poet/checkpoints", "--termination-log", "/dev/termination-log",
    "--reference-file", "/etc/poet/reference/reference.npz",
]  # fmt: skip


def stages() -> dict[str, list[dict]]:
    """Instructions of each build stage, by stage name."""
    parser = DockerfileParser(str(REPO / "Dockerfile"))
    out: dict[str, list[dict]] = {}
    current: list[dict] | None = None
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", instruction["value"], re.I)
            assert match, f"every stage is named: {instruction['content']}"
            current = out.setdefault(match.group(2), [instruction])
        elif instruction["instruction"] == "ARG" and current is None:
            continue  # build arguments for the FROM lines
        elif instruction["instruction"] != "COMMENT":
            assert current is not None, f"instruction before the first FROM: {instruction['content']}"
            current.append(instruction)
    return out


def flags_and_args(value: str) -> tuple[dict[str, str], list[str]]:
    words = value.split()
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    return flags, [w for w in words if not w.startswith("--")]


def dockerignore_admits(path: str) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins, and a pattern that matches a parent
    folder excludes everything below it."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def matches(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern.rstrip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        parts = candidate.split("/")
        return any(re.fullmatch(regex, "/".join(parts[: i + 1])) for i in range(len(parts)))

    admitted = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        if matches(pattern.lstrip("!"), path):
            admitted = negated
    return admitted


def test_stages_and_base_image() -> None:
    found = stages()
    assert set(found) == {"wheel", "runtime-env", "operator-env", "runtime", "operator"}
    text = (REPO / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    for name, instructions in found.items():
        assert instructions[0]["value"].startswith("${PYTHON_IMAGE} "), (
            f"stage {name} is not on the slim base"
        )


def test_every_copy_source_exists_and_reaches_the_build_context() -> None:
    found = stages()
    names = list(found)
    copies = 0
    for stage, instructions in found.items():
        for ins in instructions:
            if ins["instruction"] not in ("COPY", "ADD"):
                continue
            assert ins["instruction"] == "COPY", f"{stage}: ADD fetches and unpacks; use COPY"
            flags, args = flags_and_args(ins["value"])
            sources = args[:-1]
            assert sources, ins["content"]
            if "from" in flags:
                assert flags["from"] in names[: names.index(stage)], f"{stage}: COPY --from an unknown stage"
                continue
            for source in sources:
                copies += 1
                path = REPO / source
                assert path.exists(), f"{stage}: COPY source {source} does not exist"
                files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
                assert files, f"{stage}: COPY source {source} is empty"
                for file in files:
                    rel = file.relative_to(REPO).as_posix()
                    assert dockerignore_admits(rel), f"{rel} is copied but .dockerignore leaves it out"
    assert copies >= 4
    for left_out in ("tests/chart/test_images.py", ".venv/bin/python", "operator/README.md", "bench/x.py"):
        assert not dockerignore_admits(left_out), f".dockerignore sends {left_out} to the daemon"
    assert not dockerignore_admits("monitor_runtime/__pycache__/x.pyc")


def test_final_images_are_non_root_without_build_tools() -> None:
    found = stages()
    for target in ("runtime", "operator"):
        instructions = found[target]
        users = [i["value"] for i in instructions if i["instruction"] == "USER"]
        assert users == [f"{UID}:{UID}"], f"{target}: runs as {users}"
        runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
        assert f"--uid {UID}" in runs and f"--gid {UID}" in runs
        assert not re.search(r"apt-get|apk|gcc|build-essential|pip install", runs), (
            f"{target}: installs in the final image"
        )
        sources = {
            flags_and_args(i["value"])[0].get("from") for i in instructions if i["instruction"] == "COPY"
        }
        assert sources == {f"{target}-env"}, f"{target} copies from {sources}: only its ready environment"
        entry = [i["value"] for i in instructions if i["instruction"] == "ENTRYPOINT"]
        assert entry == ['["poetmon"]']
    runtime_cmd = next(i["value"] for i in found["runtime"] if i["instruction"] == "CMD")
    assert json.loads(runtime_cmd) == RUNTIME_CMD  # the shared runtime command line


def test_runtime_image_installs_no_operator_package() -> None:
    found = stages()
    runtime_install = " ".join(i["value"] for i in found["runtime-env"] if i["instruction"] == "RUN")
    operator_install = " ".join(i["value"] for i in found["operator-env"] if i["instruction"] == "RUN")
    # Dependencies come from pyproject.toml (base plus one extra) in their own layer, then the wheel alone.
    assert "/tmp/pyproject.toml parquet" in runtime_install and "operator" not in runtime_install
    assert "/tmp/pyproject.toml operator" in operator_install and "parquet" not in operator_install
    for install in (runtime_install, operator_install):
        assert "--no-deps /wheels/poet_monitor-*.whl" in install
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    base = names(project["dependencies"])
    assert not base & OPERATOR_ONLY, f"the base distribution (runtime image) pulls in {base & OPERATOR_ONLY}"
    assert names(project["optional-dependencies"]["operator"]) == OPERATOR_ONLY
    assert names(project["optional-dependencies"]["parquet"]) == {"pyarrow"}
    assert "-e '.[operator,test,parquet]'" in (REPO / "Makefile").read_text()


# A fresh interpreter that refuses the operator-only packages, as the runtime image would not have them.
BLOCKING_BOOTSTRAP = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            message = f"No module named {{name!r}} (refused: not in the runtime image)"
            raise ModuleNotFoundError(message, name=name)
        return None
sys.meta_path.insert(0, Refuse())
assert not BLOCKED & {{m.split(".")[0] for m in sys.modules}}
from poet_operator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def blocked_python(*args: str) -> list[str]:
    return [sys.executable, "-c", BLOCKING_BOOTSTRAP.format(blocked=OPERATOR_ONLY), *args]


def test_the_blocker_refuses_operator_packages() -> None:
    """The bootstrap really refuses them: the LLM client, which imports openai when it is made, fails."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKING_BOOTSTRAP.format(blocked=OPERATOR_ONLY).replace(
            "from poet_operator.cli import main",
            "from poet_operator.poet.generators.llm import ChatClient\nChatClient(None)")],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "No module named 'openai' (refused" in proc.stderr


def test_poetmon_serve_runs_without_operator_packages(tmp_path: Path) -> None:
    version = write_version(tmp_path / "v1")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            blocked_python(
                "serve", "--code-dir", str(version), "--host", "127.0.0.1", "--port", str(port),
                "--termination-log", str(tmp_path / "termination-log"),
            ),
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            env={
                "PATH": "/usr/bin:/bin",
                "POET_MAX_EVALUATION_INTERVAL_S": "0.2",
                "PYTHONPATH": f"{REPO}:{REPO / 'operator'}",
            },
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"poetmon serve exited {proc.returncode}: {log.read_text()[-3000:]}")
                return http("GET", url + "/readyz")[0] == 200

            wait_until(ready, 60, what="readyz")
            assert http("POST", url + "/v1/reference", columns_json(frame(600, seed=1)))[0] == 200
            assert http("POST", url + "/v1/batches", columns_json(frame(600, seed=2, shift=1.0)))[0] == 202
            wait_until(
                lambda: b"poet_monitor_feature_drift_score{" in http("GET", url + "/metrics")[1],
                60, what="an evaluation",
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert "refused: not in the runtime image" not in log.read_text()


@pytest.mark.slow
def test_wheel_builds_from_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """The builder stage's context (its COPY lines only) builds a wheel holding every package file, whose
    unconditional requirements leave the operator's packages to the `operator` extra."""
    context = tmp_path / "src"
    for ins in stages()["wheel"]:
        if ins["instruction"] != "COPY":
            continue
        *sources, dest = flags_and_args(ins["value"])[1]
        for source in sources:
            src = REPO / source
            if src.is_dir():  # Docker copies a folder's contents into the destination folder
                shutil.copytree(src, context / dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                assert dest.endswith("/"), ins["content"]
                (context / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, context / dest / src.name)
    # With build isolation, as in the image: pip fetches the build backend pyproject.toml names.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "w"), "."],
        cwd=context, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp_path / "w").glob("poet_monitor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for package_root, prefix in ((REPO / "monitor_runtime", "monitor_runtime"), (REPO / "operator", "")):
        for file in package_root.rglob("*"):
            if (
                file.is_file()
                and file.suffix in {".py", ".json", ".tmpl", ".html", ".yaml"}
                and "__pycache__" not in file.parts
            ):
                rel = file.relative_to(package_root).as_posix()
                assert f"{prefix}/{rel}".lstrip("/") in names, f"the image's wheel lacks {rel}"
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    unconditional = {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r
    }
    assert not unconditional & OPERATOR_ONLY
    for package in OPERATOR_ONLY:
        assert any(r.startswith(package) and 'extra == "operator"' in r for r in requires), package
