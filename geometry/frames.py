"""Target geometries (orthogonal frame, simplex ETF) and closed-form SCL optima.

All functions here are NumPy float64: they produce reference values, not training signals.
Class-mean matrices are `[K, d]` (one row per class), like the `[N, d]` embeddings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def orthogonal_frame(num_classes: int, dim: int) -> np.ndarray:
  """The orthogonal frame (OF): K orthonormal, non-negative class means `[K, d]` (rows e_c).

  Needs d >= K: unit-norm non-negative orthogonal vectors have disjoint supports.
  """
  if dim < num_classes:
    raise ValueError(f"an orthogonal frame of {num_classes} classes needs dim >= {num_classes}, "
                     f"got {dim}")
  return np.eye(num_classes, dim)


def simplex_etf(num_classes: int, dim: int) -> np.ndarray:
  """A simplex equiangular tight frame `[K, d]`: unit rows with pairwise cosine -1/(K-1).

  Built from the centered identity, rotated into the first K-1 coordinates when d = K-1.
  """
  k = num_classes
  if dim < k - 1:
    raise ValueError(f"a simplex ETF of {k} classes needs dim >= {k - 1}, got {dim}")
  centered = np.eye(k) - np.full((k, k), 1.0 / k)
  centered /= np.linalg.norm(centered, axis=1, keepdims=True)
  if dim >= k:
    return np.pad(centered, ((0, 0), (0, dim - k)))
  # Express the rows in an orthonormal basis of the (K-1)-dim subspace orthogonal to 1.
  _, _, vt = np.linalg.svd(centered)
  return centered @ vt[: k - 1].T


def frame_embeddings(means: np.ndarray, labels) -> np.ndarray:
  """Collapsed embeddings `[N, d]`: every example sits at its class mean, h_i = mu_{y_i}."""
  return np.asarray(means, np.float64)[np.asarray(labels)]


def etf_gram(num_classes: int) -> np.ndarray:
  """Gram matrix of a simplex ETF: (K/(K-1)) (I - 11^T/K)."""
  k = num_classes
  return (k / (k - 1)) * (np.eye(k) - np.full((k, k), 1.0 / k))


def collapsed_scl_loss(class_counts, gram, temperature: float) -> float:
  r"""SCL (sum form) of one batch of collapsed embeddings with unit class means of Gram `gram`.

  With m_c rows of class c in the batch, an anchor of class c has m_c - 1 positives at
  similarity 1 and m_{c'} contrast rows at similarity g_{cc'}, so its term is
  :math:`\log\big(m_c - 1 + \sum_{c' \ne c} m_{c'} e^{(g_{cc'} - 1)/\tau}\big)`, and the batch
  loss is :math:`\sum_{c: m_c \ge 2} m_c` times that. `gram = I` gives the OF value
  (Theorems 1-2), `etf_gram(K)` the ETF value of docs/theory.md#ufm-no-relu.
  """
  m = np.asarray(class_counts, np.float64)
  g = np.asarray(gram, np.float64)
  weights = np.exp((g - 1.0) / temperature)
  np.fill_diagonal(weights, 0.0)
  inner = (m - 1.0) + weights @ m
  anchored = m >= 2
  return float(np.sum(m[anchored] * np.log(inner[anchored])))


def scl_optimal_loss(class_sizes: Sequence[int], temperature: float) -> float:
  r"""Theorem 1: the full-batch UFM+ minimum, attained exactly by every OF,

  .. math:: L^* = \sum_c n_c \log\big(n_c - 1 + (n - n_c) e^{-1/\tau}\big)

  (classes of size 1 have no anchor term).
  """
  sizes = np.asarray(class_sizes)
  return collapsed_scl_loss(sizes, np.eye(len(sizes)), temperature)


def batch_class_counts(labels, batches, num_classes: int | None = None) -> np.ndarray:
  """`[num_batches, K]` rows per class in each batch (duplicated indices count twice)."""
  labels = np.asarray(labels)
  k = int(labels.max()) + 1 if num_classes is None else num_classes
  return np.stack([np.bincount(labels[np.asarray(b, np.int64)], minlength=k) for b in batches])


def scl_batch_bound(labels, batches, temperature: float, *, reduction: str = "sum",
                    views: int = 1, num_classes: int | None = None) -> float:
  r"""Theorem 2: the mini-batch UFM+ minimum :math:`\sum_B L^*_B`, attained by every OF,

  .. math:: L^*_B = \sum_{c: n_{B,c} \ge 2} n_{B,c} \log\big(n_{B,c} - 1 + (|B| - n_{B,c})
      e^{-1/\tau}\big).

  Args:
    labels: `[n]` labels of the examples.
    batches: a sequence of index arrays (binding rows included; repeats count as rows).
    temperature: tau.
    reduction: `"sum"` (the paper's objective) or `"mean"`: the average over batches of the
      batch loss divided by its number of anchors with a positive, i.e. the OF floor of
      `supcon_loss(..., reduction="mean")` averaged over an epoch.
    views: rows per example in each batch (2 for two-view training), so n_{B,c} -> V n_{B,c}.
  """
  counts = views * batch_class_counts(labels, batches, num_classes)
  eye = np.eye(counts.shape[1])
  per_batch = np.array([collapsed_scl_loss(m, eye, temperature) for m in counts])
  if reduction == "sum":
    return float(per_batch.sum())
  if reduction == "mean":
    anchors = np.where(counts >= 2, counts, 0).sum(axis=1)
    return float(np.mean(per_batch / np.maximum(anchors, 1)))
  raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
