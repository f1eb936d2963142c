"""A memory limit for one local runtime process: a cgroup where one can be made, else RLIMIT_AS.

`poetmon dev` runs each monitor version as a plain process, so the memory limit a pod would get from its
container must come from the kernel too. Two ways, in order of preference:

- a memory cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`) created as a child of this process's own
  cgroup. Resident memory is what counts, as in a container, and the kernel's OOM killer ends the process
  with SIGKILL when it is exceeded; the cgroup's `oom_kill` counter says that is what happened.
- `RLIMIT_AS` (address space) when no cgroup can be made (no permission, no memory controller). An
  allocation past the limit fails inside the process instead (numpy raises `MemoryError`), which the runtime
  reports as a crash record; the backend reads that record's exception type. For the runtime it is set once
  the process has loaded, to what it maps then plus the limit (`limit_running`).

The child joins its cage itself, before it becomes the runtime: it is started as
`python -m poet_operator.local.cage --cgroup DIR | --rlimit BYTES -- COMMAND...`, joins the cgroup or sets
the limit, then `exec`s COMMAND. Nothing runs between fork and exec in the parent's threads.
"""

from __future__ import annotations

import contextlib
import os
import re
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


@dataclass
class Cage:
    """The limit of one process: `mechanism` is cgroup-v1, cgroup-v2 or rlimit."""

    limit: int
    mechanism: str
    path: Path | None = None
    after_load: bool = False  # RLIMIT_AS set on the loaded process (limit_running), not at exec

    def launcher_args(self) -> list[str]:
        """The arguments that put the next command into this cage (prefix of its command line); under
        RLIMIT_AS with `after_load` the limit is set by `limit_running` instead, once the process loaded."""
        head = [sys.executable, "-m", "poet_operator.local.cage"]
        if self.path is not None:
            return [*head, "--cgroup", str(self.path), "--"]
        if not self.after_load:
            return [*head, "--rlimit", str(self.limit), "--"]
        return []

    def limit_running(self, pid: int) -> int | None:
        """RLIMIT_AS of a loaded process: the address space it maps now plus the limit, so the limit bounds
        what it allocates from here on rather than what its libraries reserved (the runtime with numpy,
        scipy and pyarrow maps about 1.8 GB while 150 MB are resident). Returns the limit set."""
        if self.mechanism != "rlimit" or not self.after_load:
            return None
        import resource

        mapped = 0
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
        value = mapped + self.limit
        resource.prlimit(pid, resource.RLIMIT_AS, (value, value))
        return value

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer acted in this cgroup (0 without one)."""
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
        """Remove the cgroup (its processes have exited)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def describe(self) -> str:
        if self.mechanism == "rlimit":
            return (
                f"{format_memory(self.limit)} (RLIMIT_AS{' over the loaded size' if self.after_load else ''})"
            )
        return f"{format_memory(self.limit)} (cgroup {self.mechanism[-2:]})"


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
    """A cage of `limit` bytes named `name`: a child cgroup of our own when the kernel lets us make one
    (`prefer="auto"` or `"cgroup"`), else RLIMIT_AS (`prefer="rlimit"` asks for it directly)."""
    if prefer != "rlimit":
        own = _own_cgroup()
        if own is not None:
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
        if prefer == "cgroup":
            raise MemoryLimitError("no memory cgroup can be made here (permission or controller missing)")
    return Cage(limit, "rlimit", after_load=after_load)


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
