"""The paper's experiments as configs, the sweep runner and the theory-vs-practice report."""

from geometry._version import __version__
