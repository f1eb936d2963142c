"""The `poetmon` entry point: version and the demo (the whole POET loop on a bundled example)."""

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from poet_operator import __version__


def _poetmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_version() -> None:
    out = _poetmon("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"poetmon {__version__}"


def test_demo_generates_enforces_runs_and_reports() -> None:
    out = _poetmon("demo")
    assert out.returncode == 0, out.stderr
    assert "with the template generator; enforce passed" in out.stdout
    assert "health CRITICAL" in out.stdout
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "DRIFT" in lines["income"] and "DRIFT" in lines["country"]
    assert "DRIFT" not in lines["tenure_months"]
    assert "Retraining is warranted" in out.stdout


def test_demo_as_json() -> None:
    out = _poetmon("demo", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["drifted_features"]) == {"income", "country", "age"}
    assert report["version"]["generator"] == "template"


# --- rough edges: one clear line on stderr and a non-zero exit, never a traceback --------------------------

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"
TERMINATION_LOG = Path("/dev/termination-log")


def _env(**extra: str) -> dict[str, str]:
    """The test's environment as run by hand: not in a pod, wide help output."""
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(COLUMNS="200", **extra)
    return env


def _run(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env or _env(),
    )


def _one_clear_line(out: subprocess.CompletedProcess | tuple[int, str, str], code: int = 2) -> str:
    returncode, stdout, stderr = out if isinstance(out, tuple) else (out.returncode, out.stdout, out.stderr)
    assert returncode == code, (returncode, stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].isprintable(), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from poet_operator.poet.engine import run_poet
    from poet_operator.poet.events import ListSink
    from poet_operator.spec import load_document_file

    document = load_document_file(DATA / "monitor.yaml")
    directory = tmp_path_factory.mktemp("version") / "v1"
    result = run_poet(document.spec, directory, monitor=document.name, generator="template", sink=ListSink())
    assert result.status == "written"
    return directory


def test_serve_on_a_busy_port(version_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _run("serve", "--code-dir", str(version_dir), "--host", "127.0.0.1", "--port", str(port))
    line = _one_clear_line(out)
    assert line.startswith(f"poetmon serve: cannot listen on 127.0.0.1:{port}: address already in use")
    assert "another --port" in line


def _code_dir_is_a_file(tmp_path: Path, version_dir: Path) -> Path:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    return path


def _manifest_is_a_directory(tmp_path: Path, version_dir: Path) -> Path:
    path = tmp_path / "v1"
    shutil.copytree(version_dir, path)
    (path / "manifest.json").unlink()
    (path / "manifest.json").mkdir()
    return path


def _no_permission(tmp_path: Path, version_dir: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: a permission cannot make a directory unreadable")
    path = tmp_path / "v1"
    shutil.copytree(version_dir, path)
    path.chmod(0)
    return path


@pytest.mark.parametrize("make", [_code_dir_is_a_file, _manifest_is_a_directory, _no_permission])
def test_serve_with_an_unreadable_code_dir(tmp_path: Path, version_dir: Path, make) -> None:
    code_dir = make(tmp_path, version_dir)
    try:
        out = _run("serve", "--code-dir", str(code_dir), "--host", "127.0.0.1", "--port", "0")
    finally:
        code_dir.chmod(0o755)
    line = _one_clear_line(out)
    assert line.startswith(f"poetmon serve: cannot load the version in {code_dir}: ")
    assert "cannot be read" in line or "not a directory" in line.lower()
    # The JSON log on stdout says the same, without the runtime's own traceback.
    record = json.loads(out.stdout.splitlines()[-1])
    assert record["event"] == "runtime.load_failed" and record["traceback"] is None


@pytest.mark.parametrize(
    "args",
    [
        ("crd",),
        (
            "run",
            "-f",
            str(DATA / "monitor.yaml"),
            "--reference",
            str(DATA / "reference.csv"),
            "--current",
            str(DATA / "current.csv"),
            "--format",
            "json",
        ),
    ],
    ids=["crd", "run-json"],
)
def test_a_closed_output_pipe(args: tuple[str, ...]) -> None:
    # As `poetmon ... | head -1` once head has left: the read end is closed before anything is written.
    proc = subprocess.Popen(
        [sys.executable, "-m", "poet_operator.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    proc.stdout.close()
    stderr = proc.stderr.read()
    returncode = proc.wait(timeout=120)
    line = _one_clear_line((returncode, "", stderr), code=141)
    assert line == f"poetmon {args[0]}: output stopped: the reader of standard output closed it (broken pipe)"


def _run_over(current: Path) -> subprocess.CompletedProcess:
    return _run(
        "run",
        "-f",
        str(DATA / "monitor.yaml"),
        "--reference",
        str(DATA / "reference.csv"),
        "--current",
        str(current),
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # A NUL byte, bytes that are not UTF-8 and an odd quote: once a misleading quote error.
        (b'age,income\n41,\x00\x9f\x1b[31m"5\n', "not a CSV text file: it holds binary data (a NUL byte"),
        (bytes(range(128, 256)) * 4, "not UTF-8 text (byte 0 is 0x80)"),
        (gzip.compress(b"age,income\n41,5\n"), "it holds gzip-compressed data; decompress it first"),
    ],
    ids=["nul", "not-utf8", "gzip"],
)
def test_run_over_a_binary_file(tmp_path: Path, content: bytes, expected: str) -> None:
    current = tmp_path / "current.csv"
    current.write_bytes(content)
    out = _run_over(current)
    line = _one_clear_line(out)
    assert line.startswith(f"poetmon run: {current}: ") and expected in line, line
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty; it needs a header line and at least one row"),
        (b"\n  \n", "the file is empty; it needs a header line and at least one row"),
        (b"age,income\n", "the file has a header but no rows"),
    ],
    ids=["empty", "blank", "header-only"],
)
def test_run_over_an_empty_file(tmp_path: Path, content: bytes, expected: str) -> None:
    current = tmp_path / "current.csv"
    current.write_bytes(content)
    line = _one_clear_line(_run_over(current))
    assert line == f"poetmon run: {current}: {expected}"
    assert "request" not in line and "body" not in line


# --- the termination log is the pod's, not the machine's ---------------------------------------------------


def _state(path: Path) -> tuple[int, bytes] | None:
    try:
        return path.stat().st_mtime_ns, path.read_bytes()
    except FileNotFoundError:
        return None


def test_serve_by_hand_leaves_dev_termination_log_alone(tmp_path: Path) -> None:
    # A version that fails to load is the first thing that writes a feedback record.
    before = _state(TERMINATION_LOG)
    try:
        out = _run("serve", "--code-dir", str(tmp_path / "missing"), "--port", "0")
        assert out.returncode == 2
        assert _state(TERMINATION_LOG) == before
    finally:
        if before is None and TERMINATION_LOG.exists():
            TERMINATION_LOG.unlink()  # what the bug would leave behind


def test_serve_writes_the_termination_log_it_is_given(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    out = _run("serve", "--code-dir", str(tmp_path / "missing"), "--port", "0", "--termination-log", str(log))
    assert out.returncode == 2
    record = json.loads(log.read_bytes())
    assert record["kind"] == "poet.feedback/v1" and record["phase"] == "load"
    assert record["signature"]["exception"] == "ContractError"


# --- help --------------------------------------------------------------------------------------------------


def _options(help_text: str) -> dict[str, str]:
    """Option -> its help text, from argparse's `options:` section."""
    section = help_text.split("options:", 1)[1]
    options: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^  (-.*?)(?:\s{2,}(.*))?$", line)
        if match:
            current = [word for word in match.group(1).split() if word.startswith("-")][-1].rstrip(",")
            options[current] = match.group(2) or ""
        elif current and line.strip():
            options[current] += " " + line.strip()
    return options


@pytest.mark.parametrize("command", ["serve", "run"])
def test_every_option_says_its_default(command: str) -> None:
    out = _run(command, "--help")
    assert out.returncode == 0
    options = _options(out.stdout)
    options.pop("--help")
    assert len(options) >= 4, options
    vague = [name for name, text in options.items() if "default" not in text and "required" not in text]
    assert vague == [], options


def test_serve_help_says_the_default_host_listens_everywhere() -> None:
    options = _options(_run("serve", "--help").stdout)
    assert "default: 0.0.0.0, every interface" in options["--host"]
    assert "/dev/termination-log inside a Kubernetes pod" in options["--termination-log"]


# --- spec mistakes: all at once ----------------------------------------------------------------------------

TYPOS = """\
apiVersion: poet.dev/v1alpha1
kind: ModelMonitor
metadata: {name: typos}
spec:
  model: m
  optimiseFor: accuracy
  window: {strategy: sliding, sise: 300}
  thresholds:
    alpha: yes
    methods: {kss: 0.1}
  features:
    - {name: income, typ: continuous}
"""


def test_generate_reports_every_spec_mistake_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "typos.yaml"
    spec.write_text(TYPOS)
    out = _run("generate", "-f", str(spec), "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    problems = dict(
        line.strip().split(": ", 1) for line in out.stderr.splitlines()[1:] if line.startswith("  ")
    )
    assert out.stderr.startswith(f"poetmon generate: invalid ModelMonitor spec in {spec} (5 problems):")
    assert "unknown field 'optimiseFor' (did you mean 'optimizeFor'?)" in problems["spec"]
    assert "unknown field 'sise' (did you mean 'size'?)" in problems["spec.window"]
    assert "unknown field 'kss' (did you mean 'ks'?)" in problems["spec.thresholds.methods"]
    assert "unknown field 'typ' (did you mean 'type'?)" in problems["spec.features.0"]
    assert problems["spec.thresholds.alpha"].startswith("expected a number, got true")
    assert not (tmp_path / "out").exists()


# --- a feature's method and a feature absent from the current data, through `poetmon run` ----------------


def test_run_uses_the_method_a_feature_declares(tmp_path: Path) -> None:
    spec = tmp_path / "monitor.yaml"
    spec.write_text(
        (DATA / "monitor.yaml")
        .read_text()
        .replace(
            "{name: income, type: continuous, importance: 3.0}",
            "{name: income, type: continuous, importance: 3.0, method: wasserstein}",
        )
        .replace("{name: plan, type: categorical}", "{name: plan, type: categorical, method: psi}")
    )
    out = _run(
        "run",
        "-f",
        str(spec),
        "--reference",
        str(DATA / "reference.csv"),
        "--current",
        str(DATA / "current.csv"),
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    features = json.loads(out.stdout)["features"]
    assert features["income"]["method"] == "wasserstein" and features["income"]["drift_detected"]
    assert features["plan"]["method"] == "psi"
    assert features["age"]["method"] == "ks"


def test_run_refuses_a_method_the_type_cannot_take(tmp_path: Path) -> None:
    spec = tmp_path / "monitor.yaml"
    spec.write_text("model: m\nfeatures:\n  - {name: income, method: chi2, type: continuous}\n")
    out = _run(
        "run",
        "-f",
        str(spec),
        "--reference",
        str(DATA / "reference.csv"),
        "--current",
        str(DATA / "current.csv"),
    )
    assert out.returncode == 2
    assert "spec.features.0: method chi2 measures only categorical features" in out.stderr


def test_run_counts_a_renamed_feature_by_its_importance(tmp_path: Path) -> None:
    lines = (DATA / "current.csv").read_text().splitlines()
    assert lines[0].split(",")[1] == "income"
    current = tmp_path / "renamed.csv"
    current.write_text("\n".join([lines[0].replace("income", "earnings"), *lines[1:]]) + "\n")
    args = (
        "run",
        "-f",
        str(DATA / "monitor.yaml"),
        "--reference",
        str(DATA / "reference.csv"),
        "--current",
        str(current),
    )
    out = _run(*args, "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    income = report["features"]["income"]
    assert income["drift_detected"] and income["missing_rate"] == 1.0 and income["severity"] == 1.0
    assert income["reason"].startswith("absent from the current data")
    assert "income" in report["drifted_features"]
    # Importance 3 of 8.5, and nothing else drifts in the example apart from income itself.
    assert report["overall_drift_score"] == pytest.approx(3 / 8.5)
    assert report["overall_health"] == "critical"
    table = _run(*args)
    row = next(line for line in table.stdout.splitlines() if line.startswith("income "))
    assert "DRIFT" in row and "100.0%" in row and row.endswith("absent from current data")
