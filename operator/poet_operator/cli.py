"""Command line: argument parsing only; each command calls one function elsewhere."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from poet_operator import __version__

#: Exit statuses of the command line itself (each command documents its own).
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE
EXIT_INTERRUPTED = 130  # likewise for SIGINT


def build_parser() -> argparse.ArgumentParser:
    """The `poetmon` argument parser."""
    parser = argparse.ArgumentParser(
        prog="poetmon",
        description="poet-monitor: self-healing ML drift monitors.",
        epilog="Every command exits with 141 and one line on stderr when its standard output is closed "
        "early (e.g. `| head -1`), and with 130 on Ctrl-C.",
    )
    parser.add_argument("--version", action="version", version=f"poetmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="detect drift on the bundled example and print the report")
    demo.add_argument(
        "--format", choices=["table", "json", "html"], default="table", help="report format (default: table)"
    )

    gen = sub.add_parser("generate", help="generate a monitor version directory from a spec")
    gen.add_argument("-f", "--file", required=True, help="ModelMonitor manifest or bare spec (YAML)")
    gen.add_argument("-o", "--output", required=True, help="version directory to write")
    gen.add_argument("--feedback", action="append", default=[], help="feedback record (JSON), repeatable")
    gen.add_argument("--lessons", help="lessons file (JSON) to apply")
    gen.add_argument("--generator", choices=["template", "llm"], help="override spec.generator.kind")
    gen.add_argument(
        "--version-number", type=int, default=None, help="version to write (default: previous + 1, or 1)"
    )
    gen.add_argument("--previous", help="the version directory the feedback is about (carries its remedies)")
    gen.add_argument("--events-file", help="append POET events as JSON lines here instead of stderr")

    enf = sub.add_parser("enforce", help="enforce a version directory; non-zero exit on failure")
    enf.add_argument("directory")
    enf.add_argument("--json", action="store_true", help="print the report as JSON")

    serve = sub.add_parser(
        "serve",
        help="run the monitor runtime HTTP server over a version directory",
        description="Run the monitor runtime HTTP server over a version directory (what each monitor pod "
        "runs). One line on stderr and exit status 2 when the version cannot be loaded or the address "
        "cannot be bound.",
    )
    serve.add_argument(
        "--code-dir", required=True, help="version directory holding monitor.py and manifest.json (required)"
    )
    serve.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on (default: 0.0.0.0, every interface, so other machines can reach it; "
        "127.0.0.1 keeps it to this machine)",
    )
    serve.add_argument("--port", type=int, default=8080, help="TCP port to listen on (default: 8080)")
    serve.add_argument(
        "--checkpoint-dir",
        default=None,
        help="directory for periodic checkpoints, resumed from at start "
        "(default: $POET_CHECKPOINT_DIR, else none: no checkpoints)",
    )
    serve.add_argument(
        "--termination-log",
        default=None,
        metavar="PATH",
        help="file the crash feedback record is written to (default: /dev/termination-log inside a "
        "Kubernetes pod, i.e. when $KUBERNETES_SERVICE_HOST is set; elsewhere none: the record is only "
        "logged)",
    )
    serve.add_argument(
        "--reference-file",
        default=None,
        help="npz reference (application/vnd.poet.reference+npz) loaded at start when the file exists and "
        "the checkpoint holds no reference; a missing or unusable file is logged and ignored (default: none)",
    )
    serve.add_argument(
        "--history-file",
        default=None,
        metavar="PATH",
        help="evaluation history (GET /v1/history's JSON, plain or gzip) merged at start into the one the "
        "checkpoint restored, so the report draws earlier versions too; a missing or unusable file is logged "
        "and ignored (default: none)",
    )

    op = sub.add_parser("operator", help="run the Kubernetes operator (kubeconfig or in-cluster credentials)")
    op.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; default: all namespaces)",
    )
    op.add_argument(
        "--operator-namespace",
        default=None,
        help="namespace of the shared lessons ConfigMap (default: $POD_NAMESPACE, else poet-system)",
    )
    op.add_argument(
        "--runtime-image",
        default=None,
        help="image of the runtime pods (default: $POET_RUNTIME_IMAGE, else poet-monitor/runtime:VERSION)",
    )
    op.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus metrics port, 0 to disable (9090)"
    )
    op.add_argument("--health-port", type=int, default=8081, help="liveness endpoint port, /healthz (8081)")
    op.add_argument(
        "--prometheus-url",
        default=None,
        help="Prometheus for canary analysis queries (default: $POET_PROMETHEUS_URL; none: queries skipped)",
    )
    op.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else $KUBECONFIG)"
    )

    crd = sub.add_parser("crd", help="print the ModelMonitor CRD (YAML) generated from the spec model")
    crd.add_argument("-o", "--output", help="write to this file instead of standard output")
    crd.add_argument("--docs", action="store_true", help="the spec reference page (Markdown) instead")

    run = sub.add_parser("run", help="generate, enforce and run a monitor once over files")
    run.add_argument(
        "-f", "--file", required=True, help="ModelMonitor manifest or bare spec (YAML; required)"
    )
    run.add_argument(
        "--reference",
        required=True,
        help="reference data: .csv, .tsv, .jsonl or .parquet (required)",
    )
    run.add_argument(
        "--current",
        required=True,
        help="current data compared with the reference as one batch, same formats (required)",
    )
    run.add_argument(
        "--format",
        choices=["table", "json", "html"],
        default="table",
        help="report format on standard output (default: table)",
    )

    dev = sub.add_parser(
        "dev",
        help="the whole self-healing loop on this machine: processes instead of pods, a replayed stream",
    )
    dev.add_argument("-f", "--file", required=True, help="ModelMonitor manifest or bare spec (YAML)")
    dev.add_argument("--data", required=True, help="the stream to replay (CSV; a timestamp column paces it)")
    dev.add_argument("--reference", help="reference data (CSV) posted to every process")
    dev.add_argument(
        "--memory-limit", help="memory limit of each process, e.g. 300M (cgroup, else RLIMIT_AS)"
    )
    dev.add_argument(
        "--memory-cage",
        choices=["auto", "cgroup", "systemd", "rlimit"],
        default="auto",
        help="how the memory limit is applied: auto (default) takes the first that works of a child memory "
        "cgroup, a systemd user scope and RLIMIT_AS; the others ask for one (see docs/dev.md)",
    )
    dev.add_argument("--speed", type=float, default=1.0, help="stream seconds replayed per second (1)")
    dev.add_argument("--workdir", help="where versions, logs and reports go (default .poetmon-dev/NAME)")
    dev.add_argument("--batch-rows", type=int, default=2000, help="rows per HTTP batch (2000)")
    dev.add_argument("--max-seconds", type=float, default=900.0, help="give up after this long (900)")
    dev.add_argument(
        "--until",
        choices=["end", "healed"],
        default="end",
        help="end: replay the whole stream (default); healed: stop once a promoted version serves, reports",
    )

    add_cluster_commands(sub)
    return parser


# -- commands that speak to the cluster (also `kubectl poet ...`) ------------------------------------------
CLUSTER_COMMANDS = ("status", "history", "diff", "promote", "abort", "regenerate", "pause", "resume")
_CLUSTER_HELP = {
    "status": "a monitor at a glance: phase, versions, canary progress, health, last failure, conditions",
    "history": "every version of a monitor: state, reason, generator, feedback answered, remedies",
    "diff": "what changed between two versions: the manifest's decisions and monitor.py as a unified diff",
    "promote": "promote the canary now (annotation poet.dev/promote)",
    "abort": "roll back the canary or stop the generation in progress (annotation poet.dev/abort)",
    "regenerate": "generate a new version from the spec and all feedback (annotation poet.dev/regenerate)",
    "pause": "stop regenerating, promoting and rolling back (annotation poet.dev/paused)",
    "resume": "undo pause (removes poet.dev/paused)",
}


def add_cluster_commands(sub: argparse._SubParsersAction) -> None:
    """Add the cluster commands to a subparsers group (`poetmon` and `kubectl poet` share them)."""
    for command in CLUSTER_COMMANDS:
        cmd = sub.add_parser(command, help=_CLUSTER_HELP[command], description=_CLUSTER_HELP[command])
        cmd.add_argument("name", metavar="NAME", help="the ModelMonitor")
        if command == "diff":
            cmd.add_argument("a", metavar="A", help="a version: 2, v2, stable or canary")
            cmd.add_argument("b", metavar="B", help="the version to compare it with")
        cmd.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
        cmd.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        cmd.add_argument("--context", help="kubeconfig context (default: the current one)")
        cmd.add_argument("-o", "--output", choices=["json"], help="print JSON instead of text")


def _run_cluster_command(args: argparse.Namespace) -> int:
    from poet_operator.k8s.user_commands import user_command

    return user_command(
        args.command,
        name=args.name,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        context=args.context,
        output=args.output,
        versions=(args.a, args.b) if args.command == "diff" else None,
    )


def kubectl_poet(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kubectl-poet` console script: `kubectl poet COMMAND NAME [options]`."""
    parser = argparse.ArgumentParser(
        prog="kubectl poet", description="Inspect and steer poet-monitor ModelMonitors."
    )
    parser.add_argument("--version", action="version", version=f"kubectl-poet {__version__}")
    add_cluster_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return run_guarded(f"kubectl poet {args.command}", _run_cluster_command, args)


# -- end of the cluster commands ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `poetmon` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(f"poetmon {args.command}" if args.command else "poetmon", _dispatch, parser, args)


def run_guarded(prog: str, command: Callable[..., int], *args: Any) -> int:
    """Run a command; a closed output pipe or Ctrl-C ends it with one line on stderr, not a traceback."""
    try:
        code = command(*args)
        # Flushed here, not at interpreter exit, so a closed pipe is reported below and not as a traceback.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `poetmon ... | head -1`: the reader left. Point stdout at /dev/null so the exit-time flush of what
        # is still buffered cannot fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        print(
            f"{prog}: output stopped: the reader of standard output closed it (broken pipe)", file=sys.stderr
        )
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # Imports are deferred so `poetmon --version` stays instant and each command loads only what it uses.
    if args.command == "demo":
        from poet_operator.demo import run_demo

        return run_demo(output_format=args.format)
    if args.command == "generate":
        from poet_operator.poet.engine import generate_command

        return generate_command(
            spec_file=args.file,
            output_dir=args.output,
            feedback_files=args.feedback,
            lessons_file=args.lessons,
            generator=args.generator,
            version_number=args.version_number,
            previous_dir=args.previous,
            events_file=args.events_file,
        )
    if args.command == "enforce":
        from poet_operator.poet.enforce import enforce_command

        return enforce_command(args.directory, as_json=args.json)
    if args.command == "serve":
        from monitor_runtime.server import serve

        return serve(
            code_dir=args.code_dir,
            host=args.host,
            port=args.port,
            checkpoint_dir=args.checkpoint_dir,
            termination_log=args.termination_log,
            reference_file=args.reference_file,
            history_file=args.history_file,
        )
    if args.command == "operator":
        from poet_operator.k8s.main import operator_command

        return operator_command(
            args.namespace,
            operator_namespace=args.operator_namespace,
            runtime_image=args.runtime_image,
            metrics_port=args.metrics_port,
            health_port=args.health_port,
            prometheus_url=args.prometheus_url,
            kubeconfig=args.kubeconfig,
        )
    if args.command == "crd":
        from poet_operator.k8s.crd import crd_command

        return crd_command(output=args.output, docs=args.docs)
    if args.command == "run":
        from poet_operator.local.run_once import run_command

        return run_command(
            spec_file=args.file, reference=args.reference, current=args.current, output_format=args.format
        )
    if args.command == "dev":
        from poet_operator.local.dev import DevConfig, dev_command

        return dev_command(
            DevConfig(
                spec_file=args.file,
                data=args.data,
                reference=args.reference,
                memory_limit=args.memory_limit,
                cage=args.memory_cage,
                speed=args.speed,
                workdir=args.workdir,
                batch_rows=args.batch_rows,
                max_seconds=args.max_seconds,
                until=args.until,
            )
        )
    if args.command in CLUSTER_COMMANDS:
        return _run_cluster_command(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
