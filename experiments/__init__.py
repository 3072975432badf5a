"""The paper's experiments as data (`experiments.spec`, the configs), the sweep runner, the demo
and the theory-vs-practice report (`experiments.report`)."""

from geometry._version import __version__
