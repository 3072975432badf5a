"""`supcon_loss` rejects what it cannot compute with a ValueError naming the problem (at trace
time), ignores the weights of masked rows, and gives the empty sum for an empty batch."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geometry import losses


def _batch(n=6, d=3, seed=0):
  rng = np.random.default_rng(seed)
  h = rng.normal(size=(n, d))
  h /= np.linalg.norm(h, axis=1, keepdims=True)
  return h.astype(np.float32), np.array([0, 0, 1, 1, 2, 2])[:n]


def _weighted_sum(h, y, tau, weights, keep):
  """sum_i w_i l_i over kept anchors with a positive, a literal loop over the kept rows."""
  idx = [i for i in range(len(y)) if keep[i]]
  total = 0.0
  for i in idx:
    pos = [j for j in idx if j != i and y[j] == y[i]]
    if not pos:
      continue
    denom = sum(math.exp(float(h[i] @ h[l]) / tau) for l in idx if l != i)
    total += weights[i] * sum(-math.log(math.exp(float(h[i] @ h[j]) / tau) / denom)
                              for j in pos) / len(pos)
  return total


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), float("inf"), -float("inf")])
def test_temperature_must_be_finite_and_positive(tau):
  h, y = _batch()
  with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
    losses.supcon_loss(h, y, temperature=tau)
  with pytest.raises(ValueError, match="temperature"):
    losses.supcon_loss(h, y, temperature=jnp.asarray(tau))


@pytest.mark.parametrize("field, value, shown", [
    ("embeddings", np.zeros((6,), np.float32), r"embeddings must be \[N, d\], got shape \(6,\)"),
    ("labels", np.zeros((5,), np.int32), r"labels.*\(5,\).*embeddings.*\(6, 3\)"),
    ("labels", np.zeros((6, 1), np.int32), r"labels.*\(6, 1\)"),
    ("where", np.ones((7,), bool), r"where.*\(7,\).*\(6, 3\)"),
    ("weights", np.ones((2, 3), np.float32), r"weights.*\(2, 3\).*\(6, 3\)"),
    ("labels", np.zeros((6,), np.float32), r"labels must be integers, got float32"),
])
def test_shape_mismatches_name_the_shapes_at_trace_time(field, value, shown):
  h, y = _batch()
  args = {"embeddings": h, "labels": y, "where": None, "weights": None}
  args[field] = value

  def loss(embeddings, labels, where, weights):
    return losses.supcon_loss(embeddings, labels, where=where, weights=weights,
                              reduction="sum")

  with pytest.raises(ValueError, match=shown):
    loss(**args)
  with pytest.raises(ValueError, match=shown):      # raised while tracing, not per step
    jax.jit(loss).lower(**args)


def test_nan_weights_of_masked_rows_are_ignored():
  h, y = _batch()
  keep = np.array([True, True, False, True, True, True])
  weights = np.array([1.0, 2.0, np.nan, 0.5, 1.0, 3.0], np.float32)
  h_bad = h.copy()
  h_bad[2] = np.nan                                  # a masked row may hold anything
  expected = _weighted_sum(h.astype(np.float64), y, 0.5, weights, keep)
  for block_size in (None, 2):
    value, grad = jax.value_and_grad(lambda e: losses.supcon_loss(
        e, y, temperature=0.5, where=keep, weights=weights, reduction="sum",
        block_size=block_size))(h_bad)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.all(np.asarray(grad)[2] == 0.0)


def test_an_empty_batch_is_the_empty_sum():
  h = np.zeros((0, 4), np.float32)
  y = np.zeros((0,), np.int32)
  assert float(losses.supcon_loss(h, y, reduction="sum")) == 0.0
  assert float(losses.supcon_loss(h, y, reduction="mean")) == 0.0
  assert losses.supcon_loss(h, y, reduction="none").shape == (0,)
  grad = jax.grad(lambda e: losses.supcon_loss(e, y, reduction="sum"))(h)
  assert grad.shape == (0, 4)


def test_a_traced_temperature_is_accepted():
  # Under jit the value is unknown while tracing; the solver passes its temperature this way.
  h, y = _batch()
  value = jax.jit(lambda t: losses.supcon_loss(h, y, temperature=t, reduction="sum"))(0.5)
  keep = np.ones(6, bool)
  assert float(value) == pytest.approx(_weighted_sum(h.astype(np.float64), y, 0.5,
                                                     np.ones(6), keep), rel=1e-5)
