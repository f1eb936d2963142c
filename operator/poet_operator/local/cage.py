"""A memory limit for one local runtime process: the best the kernel gives this user, else RLIMIT_AS.

`poetmon dev` runs each monitor version as a plain process, so the memory limit a pod would get from its
container must come from the kernel too. Three ways, in order of preference (`make_cage`, `prefer="auto"`):

- a memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) created as a child of this process's own
  cgroup: as root, or in a cgroup v2 subtree delegated to this user. Resident memory is what counts, as in a
  container, and the kernel's OOM killer ends the process with SIGKILL when it is exceeded; the cgroup's
  `oom_kill` counter says that is what happened.
- a transient systemd scope of the user's own service manager (`systemd-run --user --scope -p MemoryMax=...`):
  on cgroup v2 systems with systemd, where the memory controller is delegated to each user's manager (the
  usual case on a desktop Linux session). The same kernel limit and OOM killer; the kill is read from the
  `oom_kill` counter of the scopes' parent cgroup, which outlives the scope. A probe (a scope that prints
  its own `memory.max`) says whether it works here, once per run.
- `RLIMIT_AS` (address space) when neither can be had (macOS, no systemd user manager, cgroup v1 without
  root). An allocation past the limit fails inside the process instead (numpy raises `MemoryError`); the
  runtime then ends itself with exit status 3 and an out-of-memory record (docs/runtime.md), which the backend
  reports as `OOMKilled`. For the runtime it is set once the process has loaded, to what it maps then plus
  what a cgroup of the same limit would still allow it (the limit less its anonymous memory then: the
  library pages it maps are file cache a cgroup would reclaim; `limit_running`).

The child joins its cage before it becomes the runtime: it is started as
`python -m poet_operator.local.cage --cgroup DIR | --rlimit BYTES -- COMMAND...` (joins the cgroup or sets
the limit, then `exec`s COMMAND), or as `systemd-run --user --scope ... -- COMMAND` (which creates the scope
with its own pid and then `exec`s COMMAND). Nothing runs between fork and exec in the parent's threads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]?|[bB])?\s*$")
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


class MemoryLimitError(ValueError):
    """A memory limit that cannot be read; the message says what is accepted."""


def parse_memory(text: str) -> int:
    """`300M`, `300Mi`, `1.5G`, `268435456` -> bytes. M and G are 2**20 and 2**30 as in `docker -m`;
    Mi/Gi are the same; a plain number is bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise MemoryLimitError(
            f"memory limit {text!r}: use a number of bytes or a size such as 300M, 300Mi or 1G"
        )
    number, unit = float(match.group(1)), (match.group(2) or "").lower().rstrip("b")
    factor = _UNITS.get(unit + "i" if unit in ("k", "m", "g") else unit, 1)
    value = int(number * factor)
    if value < 64 * 1024**2:
        raise MemoryLimitError(f"memory limit {text!r} is below 64M: the runtime alone needs more")
    return value


def format_memory(value: int) -> str:
    return f"{value / 1024**2:.0f}M" if value % 1024**2 == 0 else f"{value} bytes"


MECHANISMS = ("auto", "cgroup", "systemd", "rlimit")
PROBE_SECONDS = 10.0
_UNIT_UNSAFE = re.compile(r"[^A-Za-z0-9:_.-]")


@dataclass
class Cage:
    """The limit of one process: `mechanism` is cgroup-v1, cgroup-v2, systemd or rlimit."""

    limit: int
    mechanism: str
    path: Path | None = None  # the cgroup (cgroup-v1/v2), or the parent cgroup of the scopes (systemd)
    after_load: bool = False  # RLIMIT_AS set on the loaded process (limit_running), not at exec
    unit: str = ""  # systemd: the scope's name without the start counter
    starts: int = 0

    def launcher_args(self) -> list[str]:
        """The arguments that put the next command into this cage (prefix of its command line); under
        RLIMIT_AS with `after_load` the limit is set by `limit_running` instead, once the process loaded."""
        if self.mechanism == "systemd":
            # A new scope per start: a scope ends with its process, and a name is not reused meanwhile.
            self.starts += 1
            return [*_scope_command(self.limit), f"--unit={self.unit}-{self.starts}", "--"]
        head = [sys.executable, "-m", "poet_operator.local.cage"]
        if self.path is not None:
            return [*head, "--cgroup", str(self.path), "--"]
        if not self.after_load:
            return [*head, "--rlimit", str(self.limit), "--"]
        return []

    def limit_running(self, pid: int) -> int | None:
        """RLIMIT_AS of a loaded process: the address space it maps now plus what a memory cgroup of the same
        limit would still allow it (the limit less its anonymous and shared memory now). The address space
        is far larger than resident memory (the runtime with numpy, scipy and pyarrow maps about 1.8 GB
        while about 195 MB are resident), so the limit itself cannot be the cap; this way a process has
        about the same room left for its data under either cage. Returns the limit set."""
        if self.mechanism != "rlimit" or not self.after_load:
            return None
        import resource

        sizes = _proc_status_sizes(pid)
        # A cgroup ends a process for memory it cannot reclaim: its anonymous and shared pages. The pages of
        # the libraries it mapped (about 95 of the runtime's 195 MB resident) are file cache, which the
        # kernel drops under the limit instead (and which is charged to whoever read the file first).
        # Counting them, as VmRSS does, left a runtime about 100 MB less room than a cgroup of the same limit.
        anonymous = sizes["RssAnon"] + sizes.get("RssShmem", 0) if "RssAnon" in sizes else None  # Linux 4.5+
        charged = sizes.get("VmRSS", 0) if anonymous is None else anonymous
        value = sizes.get("VmSize", 0) + max(0, self.limit - charged)
        resource.prlimit(pid, resource.RLIMIT_AS, (value, value))
        return value

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer acted in this cgroup (0 without one); for systemd scopes,
        in their parent (the count is hierarchical in cgroup v2, and the parent outlives each scope)."""
        if self.path is None:
            return 0
        name = "memory.oom_control" if self.mechanism == "cgroup-v1" else "memory.events"
        try:
            text = (self.path / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def close(self) -> None:
        """Remove the cgroup (its processes have exited); systemd removes its scopes itself."""
        if self.path is not None and self.mechanism != "systemd":
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def describe(self) -> str:
        if self.mechanism == "rlimit":
            return (
                f"{format_memory(self.limit)} (RLIMIT_AS{' over the loaded size' if self.after_load else ''})"
            )
        if self.mechanism == "systemd":
            return f"{format_memory(self.limit)} (cgroup v2, systemd user scope)"
        return f"{format_memory(self.limit)} (cgroup {self.mechanism[-2:]})"


def _proc_status_sizes(pid: int) -> dict[str, int]:
    """`VmSize`, `VmRSS`, `RssAnon` ... of a process in bytes (empty when it cannot be read)."""
    sizes: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if key.startswith(("Vm", "Rss")) and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                sizes[key] = int(parts[0]) * 1024
    return sizes


def _own_cgroup() -> tuple[str, Path] | None:
    """(mechanism, directory) of this process's memory cgroup, when one is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = CGROUP_ROOT / "memory" / path.lstrip("/")
            if directory.is_dir():
                return "cgroup-v1", directory
    for line in lines:
        if line.startswith("0::"):
            directory = CGROUP_ROOT / line[3:].lstrip("/")
            if (CGROUP_ROOT / "cgroup.controllers").exists() and directory.is_dir():
                return "cgroup-v2", directory
    return None


def make_cage(limit: int, name: str, *, prefer: str = "auto", after_load: bool = False) -> Cage:
    """A cage of `limit` bytes named `name`. `prefer="auto"` takes the first that works of: a child cgroup of
    our own, a systemd user scope, RLIMIT_AS; `"cgroup"`, `"systemd"` and `"rlimit"` ask for one of them
    (MemoryLimitError when it cannot be had)."""
    if prefer not in MECHANISMS:
        raise MemoryLimitError(f"memory cage {prefer!r}: use one of {', '.join(MECHANISMS)}")
    if prefer in ("auto", "cgroup"):
        cage = _child_cgroup(limit, name)
        if cage is not None:
            return cage
        if prefer == "cgroup":
            raise MemoryLimitError(
                "no memory cgroup can be made here (needs root, or a delegated cgroup v2 subtree)"
            )
    if prefer in ("auto", "systemd"):
        parent, problem = systemd_scope_parent()
        if parent is not None:
            return Cage(limit, "systemd", parent, unit=_UNIT_UNSAFE.sub("_", name))
        if prefer == "systemd":
            raise MemoryLimitError(f"no systemd user scope with a memory limit here: {problem}")
    return Cage(limit, "rlimit", after_load=after_load)


def _child_cgroup(limit: int, name: str) -> Cage | None:
    own = _own_cgroup()
    if own is None:
        return None
    mechanism, parent = own
    path = parent / name
    try:
        path.mkdir(exist_ok=True)
        if mechanism == "cgroup-v1":
            (path / "memory.limit_in_bytes").write_text(str(limit))
            # Swap would let the process outgrow the limit slowly instead of being killed.
            with contextlib.suppress(OSError):
                (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (path / "memory.max").write_text(str(limit))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        return Cage(limit, mechanism, path)
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None


def _scope_command(limit: int) -> list[str]:
    """`systemd-run` in a new scope of the user's manager, limited to `limit` bytes of memory."""
    return [
        *("systemd-run", "--user", "--scope", "--quiet", "--collect"),
        *("-p", f"MemoryMax={limit}"),
        *("-p", "MemorySwapMax=0"),  # swap would let the process outgrow the limit slowly instead of dying
    ]


_PROBE_LIMIT = 256 * 1024**2
# Prints the cgroup v2 path the probe runs in and that cgroup's memory.max.
_PROBE_SCRIPT = 'p=$(sed -n "s/^0:://p" /proc/self/cgroup); echo "$p"; cat "/sys/fs/cgroup$p/memory.max"'
_probed: dict[str, tuple[Path | None, str]] = {}


def systemd_scope_parent() -> tuple[Path | None, str]:
    """(parent cgroup of the user's transient scopes, "") when `systemd-run --user --scope` can give a
    process a memory limit here, else (None, why not). Probed once per process: a scope with
    `MemoryMax=256M` that prints its own cgroup and `memory.max`, which must read 268435456."""
    if "result" not in _probed:
        _probed["result"] = _probe_systemd_scope()
    return _probed["result"]


def _probe_systemd_scope() -> tuple[Path | None, str]:
    if shutil.which("systemd-run") is None:
        return None, "systemd-run is not installed"
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        return None, "the cgroup v2 hierarchy is not mounted at /sys/fs/cgroup"
    command = [*_scope_command(_PROBE_LIMIT), "--", "/bin/sh", "-c", _PROBE_SCRIPT]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"systemd-run failed: {exc}"
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        reason = " ".join((done.stderr or done.stdout).split())[:300] or f"exit status {done.returncode}"
        return None, f"systemd-run --user --scope: {reason}"
    if lines[1] != str(_PROBE_LIMIT):
        return None, f"the scope's memory.max reads {lines[1]!r}: the memory controller is not delegated"
    return (CGROUP_ROOT / lines[0].lstrip("/")).parent, ""


def main(argv: list[str] | None = None) -> int:
    """`python -m poet_operator.local.cage (--cgroup DIR | --rlimit BYTES) -- COMMAND...`: join, then exec."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[2] != "--":
        print("usage: cage (--cgroup DIR | --rlimit BYTES) -- COMMAND...", file=sys.stderr)
        return 2
    option, value, command = args[0], args[1], args[3:]
    if option == "--cgroup":
        (Path(value) / "cgroup.procs").write_text(str(os.getpid()))
    elif option == "--rlimit":
        import resource

        limit = int(value)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    else:
        print(f"cage: unknown option {option}", file=sys.stderr)
        return 2
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
