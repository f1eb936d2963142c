"""Fixtures for the runtime server tests (helpers live in runtime_server_helpers.py)."""

from .runtime_server_helpers import crashing_version_dir, server_factory, version_dir

__all__ = ["crashing_version_dir", "server_factory", "version_dir"]
