"""The unconstrained-features model (UFM / UFM+) and its `ufm` command.

``ufm.solve(sizes=..., dim=..., tau=..., relu=..., batching=..., seeds=...)`` solves one
problem and returns a `ufm.api.Result` (the fields of result.json and the embeddings); see
`ufm.api`. It is loaded on first use, so ``import ufm`` stays light (no JAX).
"""

from geometry._version import __version__

_API = ("solve", "Result")


def __getattr__(name):
  if name in _API:
    from ufm import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f"module 'ufm' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_API])
