"""The poet-monitor operator: POET code generation, enforcement, rollout and the Kubernetes layer."""

from monitor_runtime import __version__

__all__ = ["__version__"]
