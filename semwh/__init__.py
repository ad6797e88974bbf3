"""semwh: a results warehouse for the emergence of semantics in vision networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semwh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "open"]


def __getattr__(name: str):  # noqa: ANN202 (module attribute hook)
    # semwh.open loads the library on first use, so `import semwh` (and the CLI) stays light.
    if name == "open":
        from semwh.api import open as open_

        return open_
    raise AttributeError(f"module 'semwh' has no attribute {name!r}")
