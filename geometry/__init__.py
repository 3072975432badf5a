"""The math shared by the UFM solver and the trainer: losses, frames, metrics, batching."""

from geometry._version import __version__
