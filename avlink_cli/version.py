"""The package's version, in one place for the code (pyproject.toml states it for packaging)."""

__version__ = "0.1.0"
