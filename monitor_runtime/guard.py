"""A Python audit hook that stops generated monitor code from touching files, processes or the network.

Defense in depth behind the static policy: whatever the policy misses, the interpreter itself refuses.
`install()` registers the hook once per process (audit hooks cannot be removed); checks apply only while
the caller is *restricted*: inside `with restricted():` (the runtime wraps each call into the monitor) or
for the rest of the process after `activate()` (the enforce sandbox child). Restriction is tracked per
thread, so a server thread that is not running monitor code keeps its sockets. The hook's state (policy,
restricted threads, the process-wide switch, the record of refusals) lives in closures that restricted code
cannot rebind, and the module itself is read-only once loaded.

While restricted the hook refuses: opening any file for writing, reading files outside the allowed roots
(the interpreter and installed packages), sockets, subprocesses, `os.system`/`exec*`/`fork`/`kill`,
`ctypes`, changing rlimits, filesystem mutation, and importing modules outside the allow-list (modules
already imported before restriction do not raise an import event; the static policy covers those).
Every refusal is recorded (`violations()`) even if the code catches the exception.
"""

from __future__ import annotations

import collections
import contextlib
import os
import site
import sys
import sysconfig
import threading
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from monitor_runtime.sealing import seal

# fmt: off
# Modules that may be imported for the first time while restricted: the statistics stack, the runtime and
# the pure, side-effect-free part of the standard library those lazily pull in.
RUNTIME_IMPORT_ALLOW = (
    "numpy", "scipy", "monitor_runtime", "math", "cmath", "statistics", "collections", "dataclasses",
    "typing", "typing_extensions", "itertools", "functools", "bisect", "heapq", "operator", "numbers",
    "decimal", "fractions", "random", "re", "copy", "enum", "abc", "warnings", "contextlib", "textwrap",
    "string", "types", "weakref", "keyword", "reprlib", "json", "datetime", "encodings", "codecs",
    "unicodedata", "difflib", "pprint", "array", "struct", "linecache", "tokenize", "token", "traceback",
    "contextvars", "__future__", "_heapq", "_bisect", "_json", "_decimal", "_pydecimal", "_collections",
    "_collections_abc", "_functools", "_operator", "_random", "_statistics", "_weakrefset", "_struct",
    "_datetime", "_contextvars", "_strptime", "_string", "_sre", "sre_compile", "sre_parse", "sre_constants",
    "_bz2", "_lzma", "zlib", "_opcode", "opcode", "dis", "inspect", "ast", "_ast", "locale", "_locale",
    "calendar", "hashlib", "_hashlib", "_blake2", "_sha256", "_sha512", "_md5", "_sha1", "_sha3",
)

# Audit events refused outright while restricted (exact names or prefixes ending in ".").
REFUSED_EVENTS = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
    "os.chown", "os.chdir", "os.chroot", "os.link", "os.symlink", "os.truncate", "os.utime", "os.putenv",
    "os.unsetenv", "os.setxattr", "os.removexattr", "os.startfile", "os.add_dll_directory", "os.chflags",
    "os.lchflags", "os.mkfifo", "os.mknod", "pty.", "ctypes.", "resource.setrlimit", "resource.prlimit",
    "sys.addaudithook", "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "shutil.", "mmap.", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.", "telnetlib.", "imaplib.",
    "poplib.", "nntplib.", "sqlite3.", "builtins.input", "builtins.breakpoint", "fcntl.", "syslog.",
    "signal.pthread_kill", "sys.remote_exec", "_posixsubprocess.", "os.setsid",
)
# fmt: on
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
MAX_RECORDED_VIOLATIONS = 1000


class GuardViolation(PermissionError):
    """An action refused by the guard; `event` is the audit event, `detail` what was attempted."""

    def __init__(self, event: str, detail: str, reason: str) -> None:
        self.event = event
        self.detail = detail
        self.reason = reason
        super().__init__(f"refused by the monitor guard: {reason} ({event}: {detail})")


@dataclass(frozen=True)
class GuardPolicy:
    """What restricted code may still do: read files under `read_roots`, import modules in `import_allow`."""

    read_roots: tuple[str, ...]
    import_allow: tuple[str, ...] = RUNTIME_IMPORT_ALLOW

    def may_read(self, path: str) -> bool:
        """True when `path` (absolute, resolved) lies under an allowed root."""
        return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in self.read_roots)

    def may_import(self, module: str) -> bool:
        """True when `module` or one of its parent packages is on the allow-list."""
        return any(module == name or module.startswith(name + ".") for name in self.import_allow)


def default_read_roots(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The interpreter's library, installed packages and this package: what imports need to read."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            candidates.add(sysconfig.get_paths()[key])
    with contextlib.suppress(AttributeError):
        candidates.update(site.getsitepackages())
    # Editable installs live outside site-packages; the runtime's own package directory must stay readable.
    candidates.add(os.path.dirname(os.path.abspath(__file__)))
    candidates.update(extra)
    return tuple(sorted({os.path.realpath(p) for p in candidates if p}))


def _describe(args: tuple[Any, ...]) -> str:
    text = ", ".join(repr(a) for a in args[:3])
    return text if len(text) <= 200 else text[:197] + "..."


def _build_guard() -> types.SimpleNamespace:
    """Create the hook and its controls around state that only these closures hold.

    Why closures and not module globals: restricted code that reaches this module (through a gadget the
    static policy missed) could rebind a global such as a policy or an "is active" flag and switch the hook
    off. Closure cells cannot be rebound by name, and the hook reads nothing else that is mutable from
    outside: every helper and library function it calls is bound here, once, at import time.
    """
    realpath = os.path.realpath
    fsdecode = os.fsdecode
    get_ident = threading.get_ident
    refused_exact = frozenset(e for e in REFUSED_EVENTS if not e.endswith("."))
    refused_prefixes = tuple(e for e in REFUSED_EVENTS if e.endswith("."))
    write_flags = _WRITE_FLAGS
    describe = _describe
    may_read = GuardPolicy.may_read  # bound once: rebinding the class attribute later changes nothing here
    may_import = GuardPolicy.may_import
    violation_type = GuardViolation
    lock = threading.Lock()
    policy_cell: list[GuardPolicy | None] = [None]
    process_wide = [False]
    depth: dict[int, int] = {}  # thread id -> nesting depth of `restricted()` on that thread
    recorded: collections.deque[dict[str, str]] = collections.deque(maxlen=MAX_RECORDED_VIOLATIONS)
    counter = [0]
    in_hook = threading.local()
    hook_added = [False]

    def is_restricted() -> bool:
        return process_wide[0] or depth.get(get_ident(), 0) > 0

    def refuse(event: str, detail: str, reason: str) -> None:
        with lock:
            recorded.append({"event": event, "detail": detail, "reason": reason})
            counter[0] += 1
        raise violation_type(event, detail, reason)

    def check_open(policy: GuardPolicy, args: tuple[Any, ...]) -> None:
        path, mode, flags = (*args, None, None, None)[:3]
        if isinstance(path, int):
            refuse("open", repr(path), "opening file descriptors is not allowed")
        writing = bool(mode and any(c in str(mode) for c in "wax+")) or bool(
            isinstance(flags, int) and flags & write_flags
        )
        detail = fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else repr(path)
        if writing:
            refuse("open", detail, "writing files is not allowed")
        if not may_read(policy, realpath(detail)):
            refuse(
                "open", detail, "reading files outside the interpreter and installed packages is not allowed"
            )

    def check_listing(policy: GuardPolicy, event: str, args: tuple[Any, ...]) -> None:
        path = args[0] if args else "."
        if isinstance(path, int):
            return
        detail = fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else repr(path)
        if not may_read(policy, realpath(detail)):
            refuse(
                event,
                detail,
                "listing directories outside the interpreter and installed packages is not allowed",
            )

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not (process_wide[0] or depth.get(get_ident(), 0) > 0):
            return
        if getattr(in_hook, "active", False):  # realpath and friends must not re-enter the checks
            return
        policy = policy_cell[0]
        in_hook.active = True
        try:
            if policy is None:  # restricted without a policy cannot happen through the API; refuse all
                refuse(event, describe(args), "the guard has no policy; nothing is allowed")
            if event == "open":
                check_open(policy, args)
            elif event in ("os.listdir", "os.scandir"):
                check_listing(policy, event, args)
            elif event == "import":
                module = str(args[0]) if args else ""
                if not may_import(policy, module):
                    refuse(event, module, f"importing {module!r} is not allowed for monitor code")
            elif event in refused_exact or event.startswith(refused_prefixes):
                refuse(event, describe(args), "file, process, network and native-code access is not allowed")
        finally:
            in_hook.active = False

    def install(
        *,
        read_roots: Iterable[str] | None = None,
        extra_read_paths: Iterable[str] = (),
        import_allow: Iterable[str] | None = None,
    ) -> GuardPolicy:
        """Register the audit hook (once per process) with a policy; returns the policy in force.

        Calling again replaces the policy, except from restricted code, which may not loosen its own guard.
        """
        if is_restricted():
            refuse("guard.install", "", "restricted code may not change the guard policy")
        roots = tuple(realpath(p) for p in read_roots) if read_roots is not None else ()
        policy = GuardPolicy(
            read_roots=tuple(
                sorted(set(roots or default_read_roots()) | {realpath(p) for p in extra_read_paths})
            ),
            import_allow=tuple(import_allow) if import_allow is not None else RUNTIME_IMPORT_ALLOW,
        )
        with lock:
            policy_cell[0] = policy
            first = not hook_added[0]
            hook_added[0] = True
        if first:
            # Restricted code cannot write bytecode caches; not trying avoids refusals nobody asked for.
            sys.dont_write_bytecode = True
            sys.addaudithook(hook)
        return policy

    def is_installed() -> bool:
        """True once `install()` has registered the hook in this process."""
        return hook_added[0]

    @contextlib.contextmanager
    def restricted() -> Iterator[None]:
        """Run the block under the guard on this thread (installs the default policy when none is yet)."""
        if not hook_added[0]:
            install()
        ident = get_ident()
        with lock:
            depth[ident] = depth.get(ident, 0) + 1
        try:
            yield
        finally:
            with lock:
                left = depth[ident] - 1
                if left:
                    depth[ident] = left
                else:
                    del depth[ident]

    def activate() -> None:
        """Restrict the whole process from now on; irreversible (for sandbox processes)."""
        if not hook_added[0]:
            install()
        # Compiled bytecode caches would be writes; imports from here on use the sources or existing caches.
        sys.dont_write_bytecode = True
        process_wide[0] = True

    def violations() -> list[dict[str, str]]:
        """The most recent refused actions (event, detail, reason), oldest first; at most 1000 are kept."""
        with lock:
            return [dict(v) for v in recorded]

    def violation_count() -> int:
        """How many actions have been refused in this process, including those no longer kept."""
        return counter[0]

    def violations_since(count: int) -> list[dict[str, str]]:
        """The refusals recorded after `violation_count()` returned `count` (as many as are still kept)."""
        with lock:
            new = min(counter[0] - count, len(recorded))
            return [dict(v) for v in list(recorded)[len(recorded) - new :]] if new > 0 else []

    def current_policy() -> GuardPolicy | None:
        """The policy in force (immutable), or None before `install()`."""
        return policy_cell[0]

    is_restricted.__doc__ = "True when the current thread runs under the guard."
    return types.SimpleNamespace(
        install=install,
        is_installed=is_installed,
        is_restricted=is_restricted,
        restricted=restricted,
        activate=activate,
        violations=violations,
        violation_count=violation_count,
        violations_since=violations_since,
        current_policy=current_policy,
    )


_guard = _build_guard()
install = _guard.install
is_installed = _guard.is_installed
is_restricted = _guard.is_restricted
restricted = _guard.restricted
activate = _guard.activate
violations = _guard.violations
violation_count = _guard.violation_count
violations_since = _guard.violations_since
current_policy = _guard.current_policy
del _guard


__all__ = [
    "REFUSED_EVENTS",
    "RUNTIME_IMPORT_ALLOW",
    "GuardPolicy",
    "GuardViolation",
    "activate",
    "current_policy",
    "default_read_roots",
    "install",
    "is_installed",
    "is_restricted",
    "restricted",
    "violation_count",
    "violations",
    "violations_since",
]

# The hook does not depend on module names (its state is in closures), but trusted callers look up
# `restricted`, `install` and friends here; sealing keeps restricted code from swapping them.
seal(__name__)
