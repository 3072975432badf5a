"""Flax networks trained with the losses of `geometry` (the `scl-train` command)."""

from geometry._version import __version__
