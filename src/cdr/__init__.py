"""cdr: a typed, modular PyTorch framework for cross-domain recommendation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cdr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
