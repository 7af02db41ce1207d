"""The package version, in a module of its own so that any module can name it.

``sessionstore/__init__.py`` imports the whole public API; a module that took the version
from there would import the store it is itself imported by.
"""

from typing import Final

__all__ = ["__version__"]

__version__: Final = "0.1.0"
