"""The memory cage of `poetmon dev` processes, on real processes: the kernel's OOM killer in a cgroup, a
failed allocation under RLIMIT_AS, and the sizes the command line accepts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from poet_operator.local.cage import MemoryLimitError, make_cage, parse_memory, systemd_scope_parent
from poet_operator.local.replay import StreamError, load_batches

# Touches every page of 400 MB, so it is resident memory, not only address space.
ALLOCATE = "import numpy as np; a = np.ones(50_000_000); print(a.sum())"


def test_sizes_are_read_like_docker_and_kubernetes() -> None:
    assert parse_memory("300M") == parse_memory("300Mi") == 300 * 1024**2
    assert parse_memory("1G") == 1024**3
    assert parse_memory("268435456") == 256 * 1024**2
    with pytest.raises(MemoryLimitError, match="300 megs"):
        parse_memory("300 megs")
    with pytest.raises(MemoryLimitError, match="below 64M"):
        parse_memory("10M")


def test_the_kernel_kills_a_process_past_its_cgroup_limit_and_the_cage_counts_it() -> None:
    cage = make_cage(parse_memory("128M"), f"poetmon-test-oom-{os.getpid()}")
    if cage.mechanism == "rlimit":
        pytest.skip("no memory cgroup can be made here (needs root and a memory controller)")
    try:
        before = cage.oom_kills()
        done = subprocess.run([*cage.launcher_args(), sys.executable, "-c", ALLOCATE], capture_output=True)
        assert done.returncode == -signal.SIGKILL, done
        assert cage.oom_kills() == before + 1
    finally:
        cage.close()
    assert not cage.path.exists()  # type: ignore[union-attr]


def test_under_rlimit_as_the_allocation_fails_inside_the_process() -> None:
    cage = make_cage(parse_memory("2G"), "unused", prefer="rlimit")
    assert cage.mechanism == "rlimit" and cage.describe() == "2048M (RLIMIT_AS)"
    code = (
        "import numpy as np\ntry:\n    np.ones(400_000_000)\nexcept MemoryError:\n    raise SystemExit(3)\n"
    )
    done = subprocess.run([*cage.launcher_args(), sys.executable, "-c", code], capture_output=True)
    assert done.returncode == 3, done
    assert cage.oom_kills() == 0


def test_rlimit_after_load_is_the_loaded_size_plus_the_limit() -> None:
    cage = make_cage(parse_memory("200M"), "unused", prefer="rlimit", after_load=True)
    assert cage.launcher_args() == [] and "over the loaded size" in cage.describe()
    code = (
        "import sys, numpy as np\n"
        "sys.stdout.write('loaded\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
        "a = np.ones(12_500_000)\n"  # 100 MB: within the limit
        "try:\n    b = np.ones(25_000_000)\nexcept MemoryError:\n    raise SystemExit(3)\n"  # 200 MB more
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "loaded\n"  # type: ignore[union-attr]
    status = _status(child.pid)
    value = cage.limit_running(child.pid)
    # What it maps, plus what a 200M cgroup would still leave it: 200M less its anonymous and shared memory.
    charged = status["RssAnon"] + status["RssShmem"]
    assert value is not None and value == status["VmSize"] + parse_memory("200M") - charged
    child.communicate("go\n", timeout=60)
    assert child.returncode == 3


def test_rlimit_after_load_leaves_the_room_a_cgroup_would_beside_file_pages(tmp_path: Path) -> None:
    """A process with 120 MB of a file resident (as the runtime has its libraries' pages) still gets about
    the limit for its own data: a cgroup would reclaim those pages, not end the process for them."""
    mapped = tmp_path / "mapped.bin"
    with mapped.open("wb") as f:
        for _ in range(120):
            f.write(os.urandom(1024 * 1024))
    cage = make_cage(parse_memory("200M"), "unused", prefer="rlimit", after_load=True)
    code = (
        "import mmap, sys, numpy as np\n"
        f"f = open({str(mapped)!r}, 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
        "touched = int(np.frombuffer(m, np.uint8)[::4096].sum())\n"  # every page read: resident
        "sys.stdout.write('loaded\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
        "try:\n    a = np.ones(18_750_000)\nexcept MemoryError:\n    raise SystemExit(4)\n"  # 150 MB: fits
        "try:\n    b = np.ones(12_500_000)\nexcept MemoryError:\n    raise SystemExit(3)\n"  # 100 MB more
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "loaded\n"  # type: ignore[union-attr]
    status = _status(child.pid)
    assert status["VmRSS"] - status["RssAnon"] > 120 * 1024 * 1024  # the file's pages are resident
    cage.limit_running(child.pid)
    child.communicate("go\n", timeout=60)
    # 4: the 150 MB did not fit, as when resident file pages were counted (200M - 120 MB - the interpreter)
    assert child.returncode == 3


def _status(pid: int) -> dict[str, int]:
    sizes = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmSize", "VmRSS", "RssAnon", "RssShmem"):
            sizes[key] = int(value.split()[0]) * 1024
    return sizes


def test_a_cage_that_cannot_be_had_is_refused_by_name() -> None:
    with pytest.raises(MemoryLimitError, match="memory cage 'docker'"):
        make_cage(parse_memory("300M"), "unused", prefer="docker")
    parent, why = systemd_scope_parent()
    if parent is None:
        expected = re.escape(f"no systemd user scope with a memory limit here: {why}")
        with pytest.raises(MemoryLimitError, match=expected):
            make_cage(parse_memory("300M"), "unused", prefer="systemd")
    else:
        cage = make_cage(parse_memory("300M"), "poetmon-test-scope", prefer="systemd")
        assert cage.mechanism == "systemd"
        assert cage.launcher_args()[:3] == ["systemd-run", "--user", "--scope"]


def test_a_process_within_its_limit_runs_normally() -> None:
    cage = make_cage(parse_memory("1G"), f"poetmon-test-fits-{os.getpid()}")
    try:
        done = subprocess.run(
            [*cage.launcher_args(), sys.executable, "-c", ALLOCATE], capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.strip() == "50000000.0"
    finally:
        cage.close()


def test_stream_batches_drop_the_timestamp_and_keep_its_pace(tmp_path) -> None:
    stream = tmp_path / "s.csv"
    stream.write_text('timestamp,a,b\n100,1,x\n100.5,2,y\n102,3,"q,r"\n')
    batches = load_batches(stream, batch_rows=2)
    assert [b.rows for b in batches] == [2, 1]
    assert [b.stream_time for b in batches] == [0.0, 2.0]
    assert batches[0].body == b"a,b\n1,x\n2,y\n"
    assert batches[1].body == b'a,b\n3,"q,r"\n'


def test_stream_errors_name_the_file_and_row(tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,a\n1,2\nyesterday,3\n")
    with pytest.raises(StreamError, match=r"bad.csv: row 2: timestamp 'yesterday'"):
        load_batches(bad)
    short = tmp_path / "short.csv"
    short.write_text("a,b\n1,2\n3\n")
    with pytest.raises(StreamError, match="row 2 has 1 cells but the header has 2"):
        load_batches(short)
    without = tmp_path / "plain.csv"
    without.write_text("a\n1\n2\n3\n")
    assert [b.stream_time for b in load_batches(without, batch_rows=2)] == [0.0, 0.002]
