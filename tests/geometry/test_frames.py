"""Closed-form optima against docs/theory.md#reference-values and against the loss evaluated on frames."""

import math

import numpy as np
import pytest

from geometry import frames, imbalance, losses


def labels_for(sizes):
  return np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("tau,expected", [(1.0, 61.824906), (0.5, 53.288007)])
def test_theorem1_reference_values(tau, expected):
  sizes = [10, 10, 2, 2]
  assert frames.scl_optimal_loss(sizes, tau) == pytest.approx(expected, abs=5e-7)
  # ... and the loss of OF embeddings attains it.
  h = frames.frame_embeddings(frames.orthogonal_frame(4, 8), labels_for(sizes))
  got = float(losses.supcon_loss(h, labels_for(sizes), temperature=tau, reduction="sum"))
  assert got == pytest.approx(expected, abs=5e-7)


def test_theorem1_hand_formula_and_singletons():
  sizes = [3, 1, 2]
  tau = 0.7
  n = 6
  expected = sum(nc * math.log(nc - 1 + (n - nc) * math.exp(-1 / tau)) for nc in sizes if nc >= 2)
  assert frames.scl_optimal_loss(sizes, tau) == pytest.approx(expected, rel=1e-14)


def test_balanced_etf_value():
  # docs/theory.md#ref-ufm-balanced: 20 log(4 + 15 e^{-4/3}) = 41.473391
  sizes = [5, 5, 5, 5]
  value = frames.collapsed_scl_loss(sizes, frames.etf_gram(4), 1.0)
  assert value == pytest.approx(20 * math.log(4 + 15 * math.exp(-4 / 3)), rel=1e-14)
  assert value == pytest.approx(41.473391, abs=5e-7)
  h = frames.frame_embeddings(frames.simplex_etf(4, 3), labels_for(sizes))
  got = float(losses.supcon_loss(h, labels_for(sizes), temperature=1.0, reduction="sum"))
  assert got == pytest.approx(41.473391, abs=5e-7)


@pytest.mark.parametrize("kind,ratio,expected", [
    ("step", 1, 8.517402), ("step", 10, 8.307912), ("step", 100, 8.471610),
    ("exp", 10, 7.854199), ("exp", 100, 7.781810)])
def test_cifar_sized_optimum_per_example(kind, ratio, expected):
  sizes = imbalance.class_sizes(10, kind, ratio, 5000)
  assert frames.scl_optimal_loss(sizes, 0.1) / sum(sizes) == pytest.approx(expected, abs=5e-7)


def three_class_examples():
  # a0..a3 = 0..3, b0..b3 = 4..7, c0..c3 = 8..11
  return np.repeat(np.arange(3), 4)


def test_c1_violation_bound():
  y = three_class_examples()
  batches = [[0, 1, 4, 5], [6, 7, 8, 9], [2, 3, 10, 11]]
  assert frames.scl_batch_bound(y, batches, 1.0) == pytest.approx(6.617337, abs=5e-7)


def test_binding_bound_is_same_for_copies_and_extra_rows():
  y = three_class_examples()
  batches = [[0, 1, 4, 5], [6, 7, 8, 9], [2, 3, 10, 11]]
  with_copies = [b + [0, 4, 8] for b in batches]
  assert frames.scl_batch_bound(y, with_copies, 1.0) == pytest.approx(22.402654, abs=5e-7)
  # Binding rows as extra free vectors: labels extended by one example per class.
  y_extra = np.concatenate([y, [0, 1, 2]])
  with_extra = [b + [12, 13, 14] for b in batches]
  assert frames.scl_batch_bound(y_extra, with_extra, 1.0) == pytest.approx(22.402654, abs=5e-7)


def test_c2_violation_bound():
  y = three_class_examples()
  batches = [list(range(0, 8)), list(range(0, 4)) + list(range(8, 12))]
  assert frames.scl_batch_bound(y, batches, 1.0) == pytest.approx(23.963646, abs=5e-7)


def test_batch_bound_equals_of_loss_in_every_batch():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 4, 30)
  batches = [rng.choice(30, 9, replace=False) for _ in range(5)]
  h = frames.frame_embeddings(frames.orthogonal_frame(4, 6), y)
  total = sum(float(losses.supcon_loss(h[b], y[b], temperature=0.3, reduction="sum"))
              for b in batches)
  assert frames.scl_batch_bound(y, batches, 0.3) == pytest.approx(total, rel=1e-12)
  mean = np.mean([float(losses.supcon_loss(h[b], y[b], temperature=0.3)) for b in batches])
  assert frames.scl_batch_bound(y, batches, 0.3, reduction="mean") == pytest.approx(mean,
                                                                                    rel=1e-12)


@pytest.mark.parametrize("per_class,expected", [
    ([5] * 10, 3.139541), ([13] * 8 + [12] * 2, 4.576667)])
def test_code_style_floor(per_class, expected):
  # docs/theory.md#ref-code-floor: mean over the N = 2|B| anchors, times 0.1/0.07, two views.
  y = labels_for(per_class)
  floor = frames.scl_batch_bound(y, [np.arange(len(y))], 0.1, reduction="mean", views=2)
  assert floor * (0.1 / 0.07) == pytest.approx(expected, abs=5e-7)


def test_frames_geometry():
  of = frames.orthogonal_frame(5, 7)
  np.testing.assert_allclose(of @ of.T, np.eye(5))
  assert (of >= 0).all()
  for dim in (4, 5, 9):
    etf = frames.simplex_etf(5, dim)
    assert etf.shape == (5, dim)
    np.testing.assert_allclose(etf @ etf.T, frames.etf_gram(5), atol=1e-12)
  with pytest.raises(ValueError):
    frames.orthogonal_frame(5, 4)
  with pytest.raises(ValueError):
    frames.simplex_etf(5, 3)


def test_class_sizes_recipes():
  assert imbalance.class_sizes(10, "exp", 10, 5000) == [5000, 3871, 2997, 2320, 1796, 1391,
                                                         1077, 834, 645, 500]
  assert imbalance.class_sizes(10, "exp", 100, 5000) == [5000, 2997, 1796, 1077, 645, 387,
                                                          232, 139, 83, 50]
  assert imbalance.class_sizes(10, "step", 10, 5000) == [5000] * 5 + [500] * 5
  assert imbalance.class_sizes(10, "step", 100, 5000) == [5000] * 5 + [50] * 5
  assert imbalance.majority_classes(10, "step", 0.3) == [0, 1, 2]
  assert imbalance.majority_classes(10, "exp") == [0, 1, 2, 3, 4]
  with pytest.raises(ValueError):
    imbalance.class_sizes(4, "step", 100, 50)  # minority of size 0


def test_subsample_indices_counts_and_order():
  labels = np.random.default_rng(0).integers(0, 3, 200)
  idx = imbalance.subsample_indices(labels, [10, 5, 2], seed=1)
  assert np.array_equal(np.bincount(labels[idx], minlength=3), [10, 5, 2])
  assert np.array_equal(labels[idx], np.repeat(np.arange(3), [10, 5, 2]))
  assert np.array_equal(idx, imbalance.subsample_indices(labels, [10, 5, 2], seed=1))
  assert not np.array_equal(idx, imbalance.subsample_indices(labels, [10, 5, 2], seed=2))
