"""Fixtures of the Kubernetes tests: `emulator` (see tests/k8s/emulator.py)."""

from tests.k8s.emulator import emulator

__all__ = ["emulator"]
