"""The package version (read by pyproject.toml, written beside batch outputs)."""

__version__ = "0.1.0"
