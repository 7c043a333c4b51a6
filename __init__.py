"""leisim: Monte Carlo risk simulator for legal-expenses insurance of overseas IP disputes."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("leisim")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
