"""The installed semwh package's version, which results and vector files record as their maker.

It lives apart from ``semwh/__init__.py`` because that module offers ``semwh.open`` (the whole
library); the modules that stamp the version import it from here.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("semwh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
