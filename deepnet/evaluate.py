"""Evaluation of a training run: the geometry metrics of docs/theory.md#metrics on every
train and test example, the OF floor of the logged loss, and the C1/C2 certificates of the
batches (docs/theory.md#theorem-2).

The network is evaluated in eval mode (running BatchNorm statistics), one view, no binding;
the numbers are computed in float64 on the host (``geometry.metrics``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deepnet import models
from deepnet import run_setup as run_setup_lib
from geometry import batching as batching_lib
from geometry import frames
from geometry import metrics as metrics_lib

# The per-split keys of geometry_report that a metrics line holds (test ones as test_KEY).
_GEOMETRY_KEYS = ("dist_of", "dist_etf", "nc1", "nc1_over_k", "mean_cos", "class_mean_norms")


def eval_step(params, batch_stats, x_all, idx, *, setup: run_setup_lib.RunSetup):
  """Eval-mode ``setup.metric_output`` of the rows ``idx`` of ``x_all`` (pure; jit it)."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  out, _ = models.apply_model(setup.model, variables, jnp.take(x_all, idx, axis=0),
                              train=False)
  return out[setup.metric_output]


def compile_eval_step(setup: run_setup_lib.RunSetup):
  return jax.jit(lambda params, batch_stats, x_all, idx: eval_step(
      params, batch_stats, x_all, idx, setup=setup), out_shardings=setup.shardings.replicated)


def embeddings(setup: run_setup_lib.RunSetup, p_eval, state, x_all: jax.Array,
               rows) -> np.ndarray:
  """Outputs of the rows ``rows`` of ``x_all`` (an index array, or an int n for rows 0..n-1)
  through the jitted ``p_eval``, in chunks of ``setup.eval_chunk`` (the last one padded,
  never dropped)."""
  rows = np.arange(rows) if np.ndim(rows) == 0 else np.asarray(rows)
  num = len(rows)
  chunks = []
  chunk = setup.eval_chunk
  for start in range(0, num, chunk):
    idx = np.zeros((chunk,), np.int32)
    idx[:min(chunk, num - start)] = rows[start:start + chunk]
    chunks.append(p_eval(state.params, state.batch_stats, x_all,
                         run_setup_lib.global_array(idx, setup.shardings.rows)))
  # One transfer after every chunk is queued, so the device never waits on the host.
  return np.concatenate([np.asarray(c) for c in jax.device_get(chunks)], 0)[:num]


def geometry(setup: run_setup_lib.RunSetup, train_emb: np.ndarray,
             test_emb: np.ndarray, test_y: np.ndarray | None = None) -> dict:
  """Geometry and NCC of the train embeddings (their own class means) and of the test
  embeddings (the train class means), the keys of a metrics.jsonl line; ``test_y`` are the
  labels of the test rows embedded (default: the whole test split)."""
  k = setup.num_classes
  majority = [int(c) for c in setup.dataset.majority]
  train_y = setup.train_y
  test_y = setup.test_y if test_y is None else test_y
  # Collapsed embeddings (all rows zero: every unit of the last ReLU dead) have undefined
  # normalised Grams; their metrics are NaN, written as null, without a warning per metric.
  with np.errstate(invalid="ignore", divide="ignore"):
    train = metrics_lib.geometry_report(train_emb, train_y, k, majority=majority)
    train_means, _ = metrics_lib.class_means(train_emb, train_y, k)
    test = metrics_lib.geometry_report(test_emb, test_y, k, reference_means=train_means,
                                       majority=majority)
  out = {key: train[key] for key in _GEOMETRY_KEYS}
  out.update({f"test_{key}": test[key] for key in _GEOMETRY_KEYS})
  for split, report in (("train", train), ("test", test)):
    out[f"ncc_acc_{split}"] = report["ncc_acc"]
    out[f"ncc_maj_{split}"] = report["ncc_maj"]
    out[f"ncc_min_{split}"] = report["ncc_min"]
    out[f"ncc_per_class_{split}"] = report["ncc_per_class"]
  out["test_examples"] = int(len(test_y))
  out["gram"] = train["gram"]
  out["angle_values"] = train["angle_values"]
  return out


def optimal_loss(labels, batches, *, temperature: float, views: int, loss_scale: float = 1.0,
                 num_classes: int | None = None) -> float:
  """The OF floor of the logged SCL ``train_loss`` for one epoch's batches, same units.

  ``loss_scale * mean_B L*_B / A_B`` with L*_B the Theorem-2 value of batch B with every
  example repeated ``views`` times and A_B its anchors with a positive
  (``geometry.frames.scl_batch_bound(reduction="mean")``): what ``supcon_loss(reduction=
  "mean")`` averaged over the epoch's steps equals when the embeddings form an exact OF.
  """
  return float(loss_scale) * frames.scl_batch_bound(labels, batches, temperature,
                                                    reduction="mean", views=views,
                                                    num_classes=num_classes)


class Certificates:
  """C1/C2 certificates (docs/theory.md#theorem-2) of each epoch's batches and of the union of
  the batches of epochs 1..e, fed incrementally (the union only gains ties)."""

  def __init__(self, setup: run_setup_lib.RunSetup):
    self.setup = setup
    self._union = None
    self._union_epochs = 0
    self._union_unique = False

  def __call__(self, epoch: int, schedule: np.ndarray) -> dict:
    setup = self.setup
    cert = batching_lib.batch_certificate(setup.train_y, schedule, setup.num_classes,
                                          views=setup.num_views)
    out = {"of_unique_epoch": cert["of_unique"],
           "c1_disconnected_epoch": [int(c) for c, ok in cert["c1_connected"].items() if not ok],
           "c2_pairs_missing_epoch": len(cert["c2_pairs_missing"])}
    # Feed the epochs not seen yet (all of them after a resume), and stop once the union
    # certifies the OF.
    if not self._union_unique:
      if self._union is None:
        self._union = batching_lib.BatchCertificate(setup.train_y, setup.num_classes,
                                                    views=setup.num_views)
      for e in range(self._union_epochs + 1, epoch + 1):
        self._union.update(schedule if e == epoch else run_setup_lib.epoch_schedule(
            setup.config, setup.train_y, setup.num_classes, e))
      self._union_epochs = epoch
      self._union_unique = self._union.result()["of_unique"]
    out["of_unique_so_far"] = self._union_unique
    return out
