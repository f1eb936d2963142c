"""The guard the runtime puts around generated code: `monitor_runtime.guard`, scoped per call.

Generated code runs in the server process on one worker thread; every call enters `guard.restricted()`,
which sets a context variable only on that thread, so the event loop keeps its sockets and files while
the monitor code cannot open any (measurements and the reasoning are in docs/runtime.md).
"""

from __future__ import annotations

from monitor_runtime import guard
from monitor_runtime.server.host import GuardFactory


def guard_factory() -> GuardFactory:
    """Install the audit hook (once per process) and return the per-call scope."""
    if not guard.is_installed():
        guard.install()
    return guard.restricted
