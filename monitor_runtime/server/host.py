"""The one place generated code runs: a single worker thread, every call under the guard.

One thread serialises all calls into the `Monitor` instance (it is not required to be thread-safe) and
keeps evaluation off the event loop, so ingestion continues while drift is computed (numpy releases the
GIL in its sorts and reductions).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

GuardFactory = Callable[[], AbstractContextManager[Any]]


class EvaluationTimeout(Exception):
    """A call into generated code did not return in time; its thread cannot be stopped, only abandoned."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"{method} did not return within {seconds:g} s")
        self.method = method
        self.seconds = seconds


class MonitorHost:
    """Calls methods of the generated `Monitor` on its worker thread under `guard()`."""

    def __init__(self, monitor: Any, guard: GuardFactory | None = None) -> None:
        self.monitor = monitor
        self._guard = guard or contextlib.nullcontext
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poet-monitor")
        self.stuck = False

    def _invoke(self, method: str, args: tuple[Any, ...]) -> tuple[Any, float]:
        started = time.perf_counter()
        with self._guard():  # the lookup too: a generated property or descriptor is generated code
            out = getattr(self.monitor, method)(*args)
        return out, time.perf_counter() - started

    async def call(self, method: str, *args: Any, timeout: float | None = None) -> tuple[Any, float]:
        """Run `monitor.<method>(*args)` on the worker thread; returns (result, seconds).

        Past `timeout` the call is abandoned with EvaluationTimeout and the host is marked stuck: the
        thread keeps running, so the process must exit (the runtime does, with a feedback record).
        """
        if self.stuck:
            raise EvaluationTimeout(method, 0.0)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._invoke, method, args)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.stuck = True
            raise EvaluationTimeout(method, timeout) from None

    def abandon(self) -> None:
        """Give up on the call in progress (shutdown deadline): nothing calls into the monitor again."""
        self.stuck = True

    def call_blocking(self, method: str, *args: Any) -> tuple[Any, float]:
        """The same call from synchronous code (startup and shutdown)."""
        return self._executor.submit(self._invoke, method, args).result()

    def construct(self, factory: Callable[[], Any]) -> Any:
        """Build the monitor on the worker thread under the guard (its constructor is generated code too)."""

        def build() -> Any:
            with self._guard():
                return factory()

        self.monitor = self._executor.submit(build).result()
        return self.monitor

    def close(self) -> None:
        """Stop the worker thread once the current call returns (at once, abandoning it, when stuck)."""
        self._executor.shutdown(wait=not self.stuck, cancel_futures=True)
