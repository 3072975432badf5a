"""The unconstrained-features model (UFM / UFM+) and its `ufm` command."""

from geometry._version import __version__
