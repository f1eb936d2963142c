"""The monitor runtime server: the program in every monitor pod (`poetmon serve`)."""

from __future__ import annotations


def serve(
    code_dir: str,
    host: str = "0.0.0.0",
    port: int = 8080,
    checkpoint_dir: str | None = None,
    termination_log: str | None = None,
    reference_file: str | None = None,
    history_file: str | None = None,
) -> int:
    """Run one monitor version until told to stop; the process exit code (see docs/runtime.md).

    `termination_log` None: `/dev/termination-log` inside a Kubernetes pod, no file elsewhere.
    """
    # Imported here so the package's small modules (parsing, crash records, the report page) can be used
    # without loading aiohttp and the HTTP stack.
    from monitor_runtime.server.runner import serve as run

    return run(
        code_dir,
        host=host,
        port=port,
        checkpoint_dir=checkpoint_dir,
        termination_log=termination_log,
        reference_file=reference_file,
        history_file=history_file,
    )


__all__ = ["serve"]
