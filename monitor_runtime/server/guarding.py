"""The guard the runtime puts around generated code: `monitor_runtime.guard`, scoped per call.

Generated code runs in the server process on one worker thread; every call enters `guard.restricted()`,
which restricts only that thread, so the event loop keeps its sockets and files while the monitor code
cannot open any (measurements and the reasoning are in docs/runtime.md). The scope is looked up once, at
import, before any generated code runs: the hook's state is out of reach of that code, and so is the
function the runtime enters.
"""

from __future__ import annotations

from monitor_runtime import guard
from monitor_runtime.server.host import GuardFactory

_RESTRICTED: GuardFactory = guard.restricted
_INSTALL = guard.install
_IS_INSTALLED = guard.is_installed


def guard_factory() -> GuardFactory:
    """Install the audit hook (once per process) and return the per-call scope."""
    if not _IS_INSTALLED():
        _INSTALL()
    return _RESTRICTED
