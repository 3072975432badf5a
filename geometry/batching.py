"""Batch schedules as plain index arrays, batch-binding, and the C1/C2 certificate.

A schedule for one epoch is a `[num_batches, batch_size]` int array of example indices (or,
for schedules read from a file, a list of 1-D arrays). Per-epoch reshuffles are a pure function
of `(seed, epoch)`, so any epoch can be regenerated, which is what makes resumed training runs
identical to uninterrupted ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

KINDS = ("full", "fixed", "shuffle")


def full_batch(num_examples: int) -> np.ndarray:
  """One batch with every example: `[1, n]`."""
  return np.arange(num_examples)[None, :]


def random_partition(num_examples: int, batch_size: int, seed: int, epoch: int = 0) -> np.ndarray:
  """A random partition into batches of `batch_size`, dropping the incomplete last batch.

  The permutation is drawn from `numpy.random.default_rng([seed, epoch])`.
  """
  if batch_size < 2:
    raise ValueError(f"batch size must be >= 2, got {batch_size}")
  if batch_size > num_examples:
    raise ValueError(f"batch size {batch_size} exceeds the {num_examples} examples")
  perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
  num_batches = num_examples // batch_size
  return perm[: num_batches * batch_size].reshape(num_batches, batch_size)


def epoch_batches(kind: str, num_examples: int, batch_size: int | None, seed: int,
                  epoch: int) -> np.ndarray:
  """The batches of one epoch: ``full``, ``fixed`` (one seeded partition kept for every epoch)
  or ``shuffle`` (a new partition per epoch, drop-last)."""
  if kind == "full":
    return full_batch(num_examples)
  if kind == "fixed":
    return random_partition(num_examples, batch_size, seed, 0)
  if kind == "shuffle":
    return random_partition(num_examples, batch_size, seed, epoch)
  raise ValueError(f"batching must be one of {KINDS}, got {kind!r}")


def binding_indices(labels, per_class: int = 1, num_classes: int | None = None) -> np.ndarray:
  """The batch-binding examples: the first `per_class` examples of each class, in index order
  (docs/theory.md#batch-binding, #choice-binding). Returned class by class: `[K * per_class]`."""
  labels = np.asarray(labels)
  if per_class < 0:
    raise ValueError(f"the binding count must be >= 0, got {per_class}")
  k = int(labels.max()) + 1 if num_classes is None else num_classes
  chosen = []
  for c in range(k):
    idx = np.flatnonzero(labels == c)
    if len(idx) < per_class:
      raise ValueError(f"class {c} has {len(idx)} examples, fewer than {per_class} binding "
                       "examples per class")
    chosen.append(idx[:per_class])
  return np.concatenate(chosen).astype(np.int64)


def add_binding(batches, binding: np.ndarray):
  """Append the binding examples to every batch, even one that already holds them."""
  binding = np.asarray(binding, np.int64)
  if isinstance(batches, np.ndarray) and batches.ndim == 2:
    return np.concatenate([batches, np.broadcast_to(binding, (len(batches), len(binding)))], 1)
  return [np.concatenate([np.asarray(b, np.int64), binding]) for b in batches]


class _UnionFind:

  def __init__(self, n):
    self.parent = np.arange(n)

  def find(self, i):
    root = i
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[i] != root:  # path compression
      self.parent[i], i = root, self.parent[i]
    return root

  def union(self, i, j):
    self.parent[self.find(i)] = self.find(j)


class BatchCertificate:
  """The C1/C2 certificate of docs/theory.md#theorem-2, accumulated over any number of batches.

  Feed one epoch's batches, or several epochs' (the union only gains ties), with `update`;
  `result` gives the certificate of everything fed so far. See `batch_certificate`.
  """

  def __init__(self, labels, num_classes: int | None = None, *, views: int = 1):
    self.labels = np.asarray(labels)
    self.views = views
    self.num_classes = int(self.labels.max()) + 1 if num_classes is None else num_classes
    self._components = _UnionFind(len(self.labels))
    self._tied = np.zeros((self.num_classes, self.num_classes), bool)

  def update(self, batches: Sequence) -> "BatchCertificate":
    labels, k = self.labels, self.num_classes
    for batch in batches:
      batch = np.asarray(batch, np.int64)
      if batch.size == 0:
        continue
      if batch.min() < 0 or batch.max() >= len(labels):
        raise ValueError(f"batch index out of range [0, {len(labels)})")
      batch_labels = labels[batch]
      counts = np.bincount(batch_labels, minlength=k)
      present = counts > 0
      for c in np.flatnonzero(counts >= 2):  # views of one example are equal anyway
        members = batch[batch_labels == c]
        for j in members[1:]:
          self._components.union(members[0], j)
      anchored = self.views * counts >= 2
      self._tied |= (present[:, None] & present[None, :]) & (anchored[:, None] | anchored[None, :])
    return self

  def result(self) -> dict:
    c1 = {}
    for c in range(self.num_classes):
      roots = {self._components.find(i) for i in np.flatnonzero(self.labels == c)}
      c1[c] = len(roots) <= 1
    k = self.num_classes
    missing = [[a, b] for a in range(k) for b in range(a + 1, k) if not self._tied[a, b]]
    return {"c1_connected": c1, "c2_pairs_missing": missing,
            "of_unique": bool(all(c1.values()) and not missing)}


def batch_certificate(labels, batches: Sequence, num_classes: int | None = None, *,
                      views: int = 1) -> dict:
  """Whether the OF is the unique minimizer of mini-batch UFM+ (Theorem 2, docs/theory.md#theorem-2).

  - C1: for each class c, the graph on class-c examples with an edge whenever two examples
    share a batch is connected (equality propagates along edges). An example in no batch is
    an isolated vertex.
  - C2: every pair of classes (c, c') is tied in some batch: both present and at least one of
    them with >= 2 rows there (orthogonality is forced only through anchors with positives).

  `batches` may be one epoch or the union of several epochs (or use `BatchCertificate`
  to add epochs incrementally). With `views` >= 2 rows per example (two-view training) every
  class present in a batch has an anchor with a positive, so every pair present is tied.

  Returns:
    ``{"c1_connected": {c: bool}, "c2_pairs_missing": [[c, c'], ...], "of_unique": bool}``.
  """
  return BatchCertificate(labels, num_classes, views=views).update(batches).result()
