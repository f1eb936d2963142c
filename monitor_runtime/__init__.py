"""The monitor runtime: the drift engine, windows and prediction metrics that every monitor trusts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("poet-monitor")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
