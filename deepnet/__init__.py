"""Flax networks trained with the losses of `geometry` (the `scl-train` command).

``deepnet.train_and_evaluate(config, workdir)`` trains (or resumes) the run of an
ml_collections config in ``workdir`` and returns a `deepnet.train.RunResult` whose
``metrics`` is the last line of metrics.jsonl; see `deepnet.train`.
``deepnet.load_config(config_file, overrides)`` is the config that
``scl-train --config=FILE --config.FIELD=VALUE ...`` trains, validated (see
`deepnet.config.load_config`). Both are loaded on first use, so ``import deepnet`` stays light
(no JAX).
"""

from geometry import _lazy
from geometry._version import __version__

__getattr__, __dir__ = _lazy.lazy_attributes(__name__, {
    "deepnet.train": ("train_and_evaluate", "RunResult"),
    "deepnet.config": ("load_config",)})
