"""Flax networks trained with the losses of `geometry` (the `scl-train` command).

``deepnet.train_and_evaluate(config, workdir)`` trains (or resumes) the run of an
ml_collections config in ``workdir`` and returns a `deepnet.train.RunResult` whose
``metrics`` is the last line of metrics.jsonl; see `deepnet.train`. It is loaded on first use,
so ``import deepnet`` stays light (no JAX).
"""

from geometry._version import __version__

_API = ("train_and_evaluate", "RunResult")


def __getattr__(name):
  if name in _API:
    from deepnet import train  # pylint: disable=g-import-not-at-top
    return getattr(train, name)
  raise AttributeError(f"module 'deepnet' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_API])
