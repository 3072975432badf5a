"""The unconstrained-features model (UFM / UFM+) and its `ufm` command.

``ufm.solve(sizes=..., dim=..., temperature=..., final_relu=..., batching=..., seeds=...)``
solves one problem and returns a `ufm.api.Result` (the fields of result.json and the
embeddings); see `ufm.api`. It is loaded on first use, so ``import ufm`` stays light (no JAX).
"""

from geometry import _lazy
from geometry._version import __version__

__getattr__, __dir__ = _lazy.lazy_attributes(__name__, {
    "ufm.api": ("solve", "Result"),
    "ufm.cli": ("load_config",)})
