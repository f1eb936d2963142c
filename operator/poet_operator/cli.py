"""Command line: argument parsing only; each command calls one function elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from poet_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    """The `poetmon` argument parser."""
    parser = argparse.ArgumentParser(prog="poetmon", description="poet-monitor: self-healing ML drift monitors.")
    parser.add_argument("--version", action="version", version=f"poetmon {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `poetmon` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
