"""SCL and CE against brute-force NumPy loops written from docs/theory.md#scl-loss."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from geometry import losses


def brute_force_supcon(h, y, tau, where=None, reduction="mean"):
  """A literal double loop over anchors and positives (docs/theory.md#scl-loss, #scl-semantics)."""
  h = np.asarray(h, np.float64)
  y = np.asarray(y)
  keep = np.ones(len(y), bool) if where is None else np.asarray(where, bool)
  idx = np.flatnonzero(keep)
  total, anchors = 0.0, 0
  for i in idx:
    positives = [j for j in idx if j != i and y[j] == y[i]]
    if not positives:
      continue
    denom = sum(math.exp(h[i] @ h[l] / tau) for l in idx if l != i)
    term = 0.0
    for j in positives:
      term += -math.log(math.exp(h[i] @ h[j] / tau) / denom)
    total += term / len(positives)
    anchors += 1
  if reduction == "sum":
    return total
  return total / max(anchors, 1)


def random_batch(seed, n=13, d=5, k=4, normalise=True):
  rng = np.random.default_rng(seed)
  h = rng.normal(size=(n, d))
  if normalise:
    h /= np.linalg.norm(h, axis=1, keepdims=True)
  y = rng.choice(k, size=n, p=[0.5, 0.3, 0.15, 0.05][:k])
  return h, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_matches_brute_force(seed, reduction, tau):
  h, y = random_batch(seed)
  # Force one label to be a singleton: an anchor without positives (contributes 0).
  y[0] = 7
  got = losses.supcon_loss(h, y, temperature=tau, reduction=reduction)
  np.testing.assert_allclose(float(got), brute_force_supcon(h, y, tau, reduction=reduction),
                             rtol=1e-12)


@pytest.mark.parametrize("block_size", [None, 4])
def test_masked_equals_sliced_and_brute_force(block_size):
  h, y = random_batch(3, n=16)
  where = np.ones(16, bool)
  where[[2, 5, 11, 15]] = False
  for reduction in ("sum", "mean"):
    masked = losses.supcon_loss(h, y, temperature=0.2, where=where, reduction=reduction,
                                block_size=block_size)
    sliced = losses.supcon_loss(h[where], y[where], temperature=0.2, reduction=reduction)
    np.testing.assert_allclose(float(masked), float(sliced), rtol=1e-12)
    np.testing.assert_allclose(float(masked),
                               brute_force_supcon(h, y, 0.2, where=where, reduction=reduction),
                               rtol=1e-12)


def test_masked_rows_get_no_gradient_and_padding_values_do_not_matter():
  h, y = random_batch(5, n=10)
  where = np.arange(10) < 8
  grad = jax.grad(lambda e: losses.supcon_loss(e, y, temperature=0.1, where=where))(h)
  chex.assert_trees_all_equal(np.asarray(grad[8:]), np.zeros((2, h.shape[1])))
  h2 = h.copy()
  h2[8:] = 1e3  # garbage in padded rows
  np.testing.assert_allclose(float(losses.supcon_loss(h2, y, temperature=0.1, where=where)),
                             float(losses.supcon_loss(h, y, temperature=0.1, where=where)),
                             rtol=1e-12)


def test_permutation_invariance():
  h, y = random_batch(7, n=12)
  perm = np.random.default_rng(0).permutation(12)
  a = losses.supcon_loss(h, y, temperature=0.1, reduction="sum")
  b = losses.supcon_loss(h[perm], y[perm], temperature=0.1, reduction="sum")
  np.testing.assert_allclose(float(a), float(b), rtol=1e-12)


def test_gradients_match_finite_differences():
  h, y = random_batch(11, n=9, d=4)
  y[0] = 9  # an anchor without positives must not break the gradient
  for block_size in (None, 4):
    check_grads(lambda e: losses.supcon_loss(e, y, temperature=0.5, block_size=block_size),
                (jnp.asarray(h),), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_streaming_equals_dense_value_and_gradient(dtype):
  h, y = random_batch(2, n=37, d=6)
  h = jnp.asarray(h, dtype)
  where = jnp.arange(37) % 9 != 4
  rtol = 1e-10 if dtype == jnp.float64 else 1e-5

  def value_and_grad(block_size):
    return jax.value_and_grad(lambda e: losses.supcon_loss(
        e, y, temperature=0.1, where=where, block_size=block_size))(h)

  dense_value, dense_grad = value_and_grad(None)
  for block_size in (1, 5, 16, 36):
    value, grad = value_and_grad(block_size)
    np.testing.assert_allclose(float(value), float(dense_value), rtol=rtol)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(dense_grad), rtol=rtol,
                               atol=rtol * float(jnp.abs(dense_grad).max()))


def test_small_temperature_float32_and_duplicates_are_finite():
  h, y = random_batch(4, n=12)
  h = np.concatenate([h, h[:4]])  # exact duplicates
  y = np.concatenate([y, y[:4]])
  h32 = jnp.asarray(h, jnp.float32)
  value, grad = jax.value_and_grad(
      lambda e: losses.supcon_loss(e, y, temperature=0.01))(h32)
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
  np.testing.assert_allclose(float(value), brute_force_supcon(h, y, 0.01), rtol=1e-4)


def test_bfloat16_input_is_computed_in_float32():
  h, y = random_batch(6, n=10)
  h16 = jnp.asarray(h, jnp.bfloat16)
  value = losses.supcon_loss(h16, y, temperature=0.1)
  assert value.dtype == jnp.float32
  # Reference: the same bf16-rounded inputs in float64.
  ref = brute_force_supcon(np.asarray(h16.astype(jnp.float32)), y, 0.1)
  np.testing.assert_allclose(float(value), ref, rtol=1e-5)


def test_all_singletons_gives_zero_with_zero_gradient():
  h, _ = random_batch(1, n=4)
  y = np.arange(4)
  value, grad = jax.value_and_grad(lambda e: losses.supcon_loss(e, y))(jnp.asarray(h))
  assert float(value) == 0.0
  assert np.all(np.asarray(grad) == 0.0)


def test_two_views_hand_value():
  # Two examples of different classes, two views each, at an orthogonal frame, tau = 1:
  # each of the 4 anchors has 1 positive (sim 1) and 2 negatives (sim 0):
  # term = -log(e / (e + 2)) = log(1 + 2/e).
  h = np.array([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
  y = np.array([0, 1, 0, 1])
  expected = 4 * math.log(1 + 2 / math.e)
  got = losses.supcon_loss(h, y, temperature=1.0, reduction="sum")
  np.testing.assert_allclose(float(got), expected, rtol=1e-12)


def test_compiles_once():
  h, y = random_batch(0, n=8)
  traces = []

  @jax.jit
  def f(e, labels):
    traces.append(1)
    return losses.supcon_loss(e, labels, temperature=0.1)

  for seed in range(3):
    f(jnp.asarray(random_batch(seed, n=8)[0]), jnp.asarray(y))
  assert len(traces) == 1


def test_bad_reduction():
  with pytest.raises(ValueError):
    losses.supcon_loss(np.eye(2), np.array([0, 0]), reduction="avg")


def test_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(7, 3)) * 3
  y = rng.integers(0, 3, 7)
  where = np.array([1, 1, 0, 1, 1, 0, 1], bool)
  nll = np.array([-(logits[i, y[i]] - np.log(np.exp(logits[i]).sum())) for i in range(7)])
  np.testing.assert_allclose(float(losses.cross_entropy_loss(logits, y, where=where)),
                             nll[where].mean(), rtol=1e-12)
  np.testing.assert_allclose(float(losses.cross_entropy_loss(logits, y, reduction="sum")),
                             nll.sum(), rtol=1e-12)


def brute_force_terms(h, y, tau, where):
  """Per-anchor terms of docs/theory.md#scl-loss by a literal loop (0 for anchors without positives)."""
  idx = np.flatnonzero(where)
  terms = np.zeros(len(y))
  for i in idx:
    positives = [j for j in idx if j != i and y[j] == y[i]]
    if positives:
      denom = sum(math.exp(h[i] @ h[l] / tau) for l in idx if l != i)
      terms[i] = np.mean([-math.log(math.exp(h[i] @ h[j] / tau) / denom) for j in positives])
  return terms


@pytest.mark.parametrize("block_size", [None, 3])
def test_weights_equal_weighted_none_terms(block_size):
  h, y = random_batch(8, n=11)
  w = np.linspace(0.2, 3.0, 11)
  where = np.arange(11) != 4

  def weighted_sum(e):
    return losses.supcon_loss(e, y, temperature=0.3, where=where, reduction="sum",
                              weights=w, block_size=block_size)

  def weighted_none(e):
    return jnp.sum(w * losses.supcon_loss(e, y, temperature=0.3, where=where, reduction="none",
                                          block_size=block_size))

  value, grad = jax.value_and_grad(weighted_sum)(jnp.asarray(h))
  ref_value, ref_grad = jax.value_and_grad(weighted_none)(jnp.asarray(h))
  np.testing.assert_allclose(float(value), np.sum(w * brute_force_terms(h, y, 0.3, where)),
                             rtol=1e-12)
  np.testing.assert_allclose(float(ref_value), float(value), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-10, atol=1e-12)
  with pytest.raises(ValueError):
    losses.supcon_loss(h, y, reduction="none", weights=w)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_shift_bound_agrees_with_row_max_at_its_largest_overshoot(dtype, monkeypatch):
  # Rows at 0, 90, 180 and 270 degrees, classes {0, 180} and {90, 270}: every anchor's best
  # contrast logit is 0 while the Cauchy-Schwarz shift is 1/tau, the largest overshoot the
  # bound path allows in float32 (2 / tau = 62.5 <= 64).
  tau = 0.032
  angles = np.deg2rad([0.0, 180.0, 90.0, 270.0, 10.0, 190.0])
  h = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  y = np.array([0, 0, 1, 1, 2, 2])
  loss = lambda e: losses.supcon_loss(e, y, temperature=tau, reduction="sum")
  value, grad = jax.value_and_grad(loss)(jnp.asarray(h, dtype))
  np.testing.assert_allclose(float(value), brute_force_supcon(h, y, tau, reduction="sum"),
                             rtol=1e-5)
  monkeypatch.setattr(losses, "_SHIFT_SLACK", {4: -1.0, 8: -1.0})   # force the row maximum
  value_max, grad_max = jax.value_and_grad(loss)(jnp.asarray(h, dtype))
  np.testing.assert_allclose(float(value), float(value_max), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(grad_max), rtol=1e-5,
                             atol=1e-6 * float(jnp.abs(grad_max).max()))


def test_large_norms_take_the_row_maximum_and_stay_exact():
  # Norms 4 at tau = 0.1: the shift bound would overshoot by up to 320, so the row maximum is
  # used; the value must still be the brute-force one (in float32, no overflow or underflow).
  h, y = random_batch(5, n=12)
  h = 4.0 * h
  value = losses.supcon_loss(jnp.asarray(h, jnp.float32), y, temperature=0.1, reduction="sum")
  assert np.isfinite(float(value))
  np.testing.assert_allclose(float(value), brute_force_supcon(h, y, 0.1, reduction="sum"),
                             rtol=1e-5)
