"""semwh: a results warehouse for the emergence of semantics in vision networks."""

from semwh.version import __version__

__all__ = ["__version__", "open"]


def __getattr__(name: str):  # noqa: ANN202 (module attribute hook)
    # semwh.open loads the library on first use, so `import semwh` (and the CLI) stays light.
    if name == "open":
        from semwh.api import open as open_

        return open_
    raise AttributeError(f"module 'semwh' has no attribute {name!r}")
