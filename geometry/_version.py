"""The version of the scl-geometry distribution (pyproject.toml reads it from here)."""

__version__ = "0.1.0"
