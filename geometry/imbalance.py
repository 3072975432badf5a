"""Class-size recipes of the paper's protocol (docs/theory.md#data-protocol) and seeded subsampling."""

from __future__ import annotations

import numpy as np

IMBALANCES = ("none", "step", "exp")


def class_sizes(num_classes: int, imbalance: str = "none", ratio: float = 1.0,
                n_max: int = 5000, rho: float = 0.5) -> list[int]:
  """Per-class sizes n_c for K classes.

  - ``none``: every class has n_max.
  - ``step``: the first floor(rho K) classes have n_max, the rest floor(n_max / R).
  - ``exp``: n_c = floor(n_max R^{-c/(K-1)}), c = 0..K-1 (computed in float64, then floored).
  """
  if imbalance not in IMBALANCES:
    raise ValueError(f"imbalance must be one of {IMBALANCES}, got {imbalance!r}")
  if num_classes < 2:
    raise ValueError(f"need at least 2 classes, got {num_classes}")
  if imbalance != "none" and not ratio >= 1:
    raise ValueError(f"the imbalance ratio R must be >= 1, got {ratio}")
  if imbalance == "none":
    sizes = [n_max] * num_classes
  elif imbalance == "step":
    if not 0 < rho < 1:
      raise ValueError(f"rho must be in (0, 1), got {rho}")
    n_major = int(np.floor(rho * num_classes))
    sizes = [n_max] * n_major + [int(np.floor(n_max / ratio))] * (num_classes - n_major)
  else:
    c = np.arange(num_classes, dtype=np.float64)
    sizes = np.floor(n_max * np.power(float(ratio), -c / (num_classes - 1))).astype(int).tolist()
  if min(sizes) < 1:
    raise ValueError(f"class sizes {sizes} contain an empty class: raise n_max or lower R")
  return [int(s) for s in sizes]


def majority_classes(num_classes: int, imbalance: str = "none", rho: float = 0.5) -> list[int]:
  """The majority classes for NCC accuracy splits (docs/theory.md#choice-majority): floor(rho K) for step,
  floor(K/2) otherwise."""
  count = int(np.floor(rho * num_classes)) if imbalance == "step" else num_classes // 2
  return list(range(count))


def subsample_indices(labels, sizes, seed: int = 1) -> np.ndarray:
  """Indices keeping sizes[c] examples of each class c, as the paper's code does.

  Class by class in label order, the class's indices are shuffled by a generator seeded once
  with `seed`, and the first n_c are kept. The result is sorted by class, then by draw order.
  """
  labels = np.asarray(labels)
  rng = np.random.RandomState(seed)
  keep = []
  for c, size in enumerate(sizes):
    idx = np.flatnonzero(labels == c)
    if size > len(idx):
      raise ValueError(f"class {c} has {len(idx)} examples, fewer than the {size} requested")
    rng.shuffle(idx)
    keep.append(idx[:size])
  return np.concatenate(keep)
