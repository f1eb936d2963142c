"""Read-only modules: a module whose names generated code must not rebind or delete.

The guard and the toolkit are reachable from generated code; sealing them keeps it from swapping their
functions for every other user in the process.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class SealedModule(types.ModuleType):
    """A module type whose attributes cannot be rebound or deleted from outside once it is loaded.

    The module's own functions still update their globals (``global`` writes go to the module's
    ``__dict__`` directly, not through ``__setattr__``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self.__name__} is read-only: {name!r} cannot be rebound")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{self.__name__} is read-only: {name!r} cannot be deleted")


def seal(module_name: str) -> None:
    """Make the loaded module ``module_name`` read-only (call it last, at the module's bottom)."""
    sys.modules[module_name].__class__ = SealedModule
