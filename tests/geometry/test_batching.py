"""Batch schedules and the C1/C2 certificate on the schedules of docs/theory.md#reference-values."""

import numpy as np
import pytest

from geometry import batching


def three_classes():
  return np.repeat(np.arange(3), 4)  # a0..a3, b0..b3, c0..c3


def test_c1_violation_certificate():
  cert = batching.batch_certificate(three_classes(), [[0, 1, 4, 5], [6, 7, 8, 9], [2, 3, 10, 11]])
  assert cert["c1_connected"] == {0: False, 1: False, 2: False}
  assert cert["c2_pairs_missing"] == []
  assert cert["of_unique"] is False


def test_c2_violation_certificate():
  y = three_classes()
  cert = batching.batch_certificate(y, [list(range(8)), list(range(4)) + list(range(8, 12))])
  assert all(cert["c1_connected"].values())
  assert cert["c2_pairs_missing"] == [[1, 2]]
  assert cert["of_unique"] is False


def test_two_singletons_do_not_tie_classes():
  y = np.array([0, 0, 1, 1])
  # classes meet only in a batch where each has a single row
  cert = batching.batch_certificate(y, [[0, 1], [2, 3], [0, 2]])
  assert cert["c2_pairs_missing"] == [[0, 1]]
  cert = batching.batch_certificate(y, [[0, 1], [2, 3], [0, 1, 2]])
  assert cert["of_unique"] is True


def test_binding_always_certifies():
  y = three_classes()
  bad = [[0, 1, 4, 5], [6, 7, 8, 9], [2, 3, 10, 11]]
  bound = batching.add_binding(bad, batching.binding_indices(y))
  assert batching.batch_certificate(y, bound)["of_unique"] is True
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(5), [40, 40, 3, 3, 2])
  binding = batching.binding_indices(labels, per_class=1)
  np.testing.assert_array_equal(binding, [0, 40, 80, 83, 86])
  for epoch in range(5):
    batches = batching.random_partition(len(labels), 4, seed=int(rng.integers(100)), epoch=epoch)
    bound = batching.add_binding(batches, binding)
    assert bound.shape == (len(labels) // 4, 4 + 5)
    assert all(set(binding) <= set(b) for b in bound)
    # A single epoch may leave examples out (drop-last); those must be in a batch to be tied.
    covered = np.zeros(len(labels), bool)
    covered[bound.ravel()] = True
    assert batching.batch_certificate(labels, bound)["of_unique"] == bool(covered.all())


def test_unseen_example_breaks_c1():
  y = np.array([0, 0, 0, 1, 1])
  cert = batching.batch_certificate(y, [[0, 1, 3, 4]])
  assert cert["c1_connected"] == {0: False, 1: True}


def test_reshuffle_reproducible_per_seed_and_epoch():
  a = batching.epoch_batches("shuffle", 103, 10, seed=3, epoch=7)
  b = batching.epoch_batches("shuffle", 103, 10, seed=3, epoch=7)
  c = batching.epoch_batches("shuffle", 103, 10, seed=3, epoch=8)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == (10, 10) and len(np.unique(a)) == 100  # drop-last, no repeats
  fixed = [batching.epoch_batches("fixed", 103, 10, seed=3, epoch=e) for e in range(3)]
  np.testing.assert_array_equal(fixed[0], fixed[2])
  np.testing.assert_array_equal(batching.epoch_batches("full", 5, None, 0, 0), [[0, 1, 2, 3, 4]])


def test_bad_batch_size():
  with pytest.raises(ValueError):
    batching.random_partition(10, 1, 0)
  with pytest.raises(ValueError):
    batching.binding_indices(np.array([0, 0, 1]), per_class=2)


def test_incremental_certificate_equals_union():
  labels = np.repeat(np.arange(4), [20, 20, 2, 2])
  epochs = [batching.random_partition(len(labels), 4, seed=0, epoch=e) for e in range(6)]
  acc = batching.BatchCertificate(labels)
  for e, batches in enumerate(epochs):
    acc.update(batches)
    union = np.concatenate(epochs[: e + 1])
    assert acc.result() == batching.batch_certificate(labels, union)


def test_two_views_tie_singletons():
  y = np.array([0, 0, 1, 1])
  batches = [[0, 1], [2, 3], [0, 2]]
  assert batching.batch_certificate(y, batches)["c2_pairs_missing"] == [[0, 1]]
  assert batching.batch_certificate(y, batches, views=2)["of_unique"] is True
