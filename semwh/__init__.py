"""semwh: a results warehouse for the emergence of semantics in vision networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semwh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
