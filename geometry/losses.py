"""The one supervised-contrastive loss and the one cross-entropy loss of the project.

Both the UFM solver (`ufm`) and the trainer (`deepnet`) call these functions, so theory and
practice are measured with the same code. The semantics are those of docs/theory.md#scl-loss.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from geometry import memory

_REDUCTIONS = ("mean", "sum", "none")


def _compute_dtype(dtype) -> jnp.dtype:
  """float32 or better whatever the input: bf16/fp16 similarities are too coarse at tau=0.1."""
  return jnp.promote_types(dtype, jnp.float32)


# How the loss and its gradient are computed (one implementation for the dense and the
# streaming path; the dense path is one block of N rows).
#
# Every block B of b anchors sees all N contrast rows at once ([b, N]), so its log-sum-exp is
# complete inside the block and the derivative of the block's terms with respect to its logits
# z = H_B H^T / tau is known there and then. For per-anchor weights w_i (1 for "sum"; the
# cotangent for "none"),
#
#   G_il = w_i (softmax_A(i)(z_i)_l - [l in P(i)] / |P(i)|)   (0 for anchors without a positive
#                                                              and for masked rows),
#   dL/dH = (G + G^T) H / tau:   rows of B get G_B H, every row gets G_B^T H_B,
#
# so a block costs the unavoidable work only: three matmuls and b N exponentials. For "sum" and
# "mean" a custom VJP computes the gradient during the forward sweep (one sweep in all); for
# "none" the backward rule sweeps again with the cotangent as weights. Masks (self, padding,
# positives) are iota and label comparisons fused by XLA, so no [b, N] mask arrays are stored,
# and memory is O(N b + N d).
#
# The log-sum-exp shift. Any m_i >= max_l z_il avoids overflow; the row maximum costs one more
# pass over [b, N] (about 15% of the whole at N = 4096, d = 128 on a CPU). Cauchy-Schwarz gives
# one for free, m_i = |h_i| max_l |h_l| / tau, which overshoots the row maximum by at most
# s = 2 max_l |h_l|^2 / tau. While s <= _SHIFT_SLACK (unit rows: tau >= 1/32 in float32), the
# row sums stay far above the smallest normal number and no entry that matters underflows, so
# the bound is used; otherwise (small tau, large norms) the exact row maximum.
#
# G_B is formed entry by entry, so near collapse, where the softmax and positive parts nearly
# cancel, float32 gradients stay accurate. Positive counts and the mean positive logit come from
# per-class sums (a sort of the labels), not [b, N] reductions.


# Largest overshoot of the Cauchy-Schwarz shift that keeps every entry exp(z_il - m_i) above
# e^-17 of its row sum (float32's resolution) from underflowing (smallest normal ~ e^-87 in
# float32, e^-708 in float64).
_SHIFT_SLACK = {4: 64.0, 8: 640.0}


def _per_class_sum(values, labels):
  """For each row i, the sum of `values` over the rows with label y_i (self included).

  A sort of the labels turns arbitrary integer labels into segment ids 0..K-1, so this is
  O(N log N + N k) and never builds an N x N comparison.
  """
  n = labels.shape[0]
  order = jnp.argsort(labels)
  sorted_labels = labels[order]
  starts = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                            (sorted_labels[1:] != sorted_labels[:-1]).astype(jnp.int32)])
  segment = jnp.zeros((n,), jnp.int32).at[order].set(jnp.cumsum(starts))
  return jax.ops.segment_sum(values, segment, num_segments=n)[segment]


def _blocks(arrays, block_size):
  """Pads the leading axis to a multiple of block_size and reshapes to [blocks, b, ...]."""
  n = arrays[0].shape[0]
  num_blocks = -(-n // block_size)
  pad = num_blocks * block_size - n
  return tuple(jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)).reshape(
      (num_blocks, block_size) + a.shape[1:]) for a in arrays)


def _sweep(embeddings, labels, valid, weights, temperature, block_size, with_grad):
  """Per-anchor terms, has_pos and (with_grad) d(sum_i weights_i terms_i)/d embeddings."""
  n, d = embeddings.shape
  dtype = embeddings.dtype
  vf = valid.astype(dtype)
  # Masked rows are zeroed so that garbage (even inf/nan) in padding cannot leak through the
  # matmuls; they are also excluded from every contrast set below.
  embeddings = jnp.where(valid[:, None], embeddings, 0.0)
  num_pos = _per_class_sum(vf, labels) - vf
  has_pos = valid & (num_pos > 0)
  inv_pos = jnp.where(has_pos, 1.0 / jnp.maximum(num_pos, 1.0), 0.0)
  pos_vec = _per_class_sum(embeddings, labels) - embeddings          # sum_{j in P(i)} h_j
  pos_logit_mean = jnp.sum(embeddings * pos_vec, axis=1) * inv_pos / temperature
  # Padded anchors get indices n.. (never "self" of a real column) and has_pos False.
  xs = _blocks((embeddings / temperature, jnp.arange(n, dtype=jnp.int32), labels, has_pos,
                inv_pos, pos_logit_mean, weights), block_size)
  xs = (xs[0], jnp.arange(xs[1].size, dtype=jnp.int32).reshape(xs[1].shape)) + xs[2:]

  norms = jnp.sqrt(jnp.sum(embeddings * embeddings, axis=1))
  top = jnp.max(norms)
  use_bound = 2.0 * top * top / temperature <= _SHIFT_SLACK[jnp.dtype(dtype).itemsize]

  def exp_block(anchors, index):
    """E_B = [exp(z_il - m_i)] on the contrast set (0 elsewhere), E_B's support, m."""
    logits = anchors @ embeddings.T                                  # [b, N], already / tau
    column = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 1)
    contrast = (index[:, None] != column) & valid[None, :]

    def row_max(logits):
      top_row = jnp.max(jnp.where(contrast, logits, -jnp.inf), axis=1)
      return jnp.where(jnp.isfinite(top_row), top_row, 0.0)

    bound = jnp.sqrt(jnp.sum(anchors * anchors, axis=1)) * top       # |h_i| max|h_l| / tau
    shift = jax.lax.cond(use_bound, lambda _: bound, row_max, logits)
    exp = jnp.where(contrast, jnp.exp(logits - shift[:, None]), 0.0)
    return exp, contrast, shift

  def terms_of(sum_exp, row_max, block_has_pos, block_pos_mean):
    sum_exp = jnp.where(block_has_pos, sum_exp, 1.0)
    return jnp.where(block_has_pos, jnp.log(sum_exp) + row_max - block_pos_mean, 0.0)

  if not with_grad:
    def value_body(args):
      anchors, index, _, block_has_pos, _, block_pos_mean, _ = args
      exp, _, row_max = exp_block(anchors, index)
      return terms_of(exp.sum(axis=1), row_max, block_has_pos, block_pos_mean)
    return jax.lax.map(value_body, xs).reshape(-1)[:n], has_pos, None

  def body(grad_all, args):
    anchors, index, block_labels, block_has_pos, block_inv_pos, block_pos_mean, w = args
    exp, contrast, row_max = exp_block(anchors, index)
    sum_exp = exp.sum(axis=1)
    terms = terms_of(sum_exp, row_max, block_has_pos, block_pos_mean)
    # G_B = a E_B - w [positive] / |P| entry by entry, so that the near-cancellation of the
    # two parts close to collapse happens per entry, as in the dense autodiff path.
    scale = jnp.where(block_has_pos, w / jnp.where(block_has_pos, sum_exp, 1.0), 0.0)
    positive = contrast & (block_labels[:, None] == labels[None, :])
    grad_logits = (exp * scale[:, None]
                   - jnp.where(positive, (w * block_inv_pos)[:, None], 0.0))
    grad_all = grad_all + grad_logits.T @ (anchors * temperature)       # G_B^T H_B
    return grad_all, (terms, grad_logits @ embeddings)                  # G_B H

  grad_cols, (terms, grad_rows) = jax.lax.scan(body, jnp.zeros((n, d), dtype), xs)
  grad = grad_rows.reshape(-1, d)[:n] + grad_cols
  return terms.reshape(-1)[:n], has_pos, grad * (vf / temperature)[:, None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _weighted_total(embeddings, labels, valid, weights, temperature, block_size):
  """(sum_i weights_i terms_i, number of anchors with a positive)."""
  terms, has_pos, _ = _sweep(embeddings, labels, valid, weights, temperature, block_size, False)
  return jnp.sum(weights * terms), has_pos.sum()


def _weighted_total_fwd(embeddings, labels, valid, weights, temperature, block_size):
  terms, has_pos, grad = _sweep(embeddings, labels, valid, weights, temperature, block_size,
                                True)
  total = jnp.sum(weights * terms)
  return (total, has_pos.sum()), (embeddings, grad, terms, temperature)


def _weighted_total_bwd(block_size, residuals, cotangents):
  del block_size
  embeddings, grad, terms, temperature = residuals
  g_total, _ = cotangents   # the count is piecewise constant in the inputs: no gradient
  # Every logit is h_i.h_l / tau, so dL/dtau = -(1 / tau) sum_il G_il z_il
  # = -(1 / (2 tau)) sum_i h_i . dL/dh_i.
  g_temperature = -g_total * jnp.sum(embeddings * grad) / (2.0 * temperature)
  return g_total * grad, None, None, g_total * terms, g_temperature


_weighted_total.defvjp(_weighted_total_fwd, _weighted_total_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _terms(embeddings, labels, valid, temperature, block_size):
  ones = jnp.ones(labels.shape, embeddings.dtype)
  return _sweep(embeddings, labels, valid, ones, temperature, block_size, False)[0]


def _terms_fwd(embeddings, labels, valid, temperature, block_size):
  return _terms(embeddings, labels, valid, temperature, block_size), (
      embeddings, labels, valid, temperature)


def _terms_bwd(block_size, residuals, cotangent):
  embeddings, labels, valid, temperature = residuals
  _, _, grad = _sweep(embeddings, labels, valid, cotangent, temperature, block_size, True)
  g_temperature = -jnp.sum(embeddings * grad) / (2.0 * temperature)
  return grad, None, None, g_temperature


_terms.defvjp(_terms_fwd, _terms_bwd)



def _check_inputs(embeddings, labels, where, weights, temperature) -> None:
  """Shapes and the temperature, checked while tracing (static facts only: no cost per step).

  A temperature that is a tracer (passed into a jitted function) has no value yet and is not
  checked; a Python number or a concrete array is.
  """
  if embeddings.ndim != 2:
    raise ValueError(f"supcon_loss: embeddings must be [N, d], got shape {embeddings.shape}")
  n = embeddings.shape[0]

  def same_rows(name, value):
    shape = jnp.shape(value)
    if shape != (n,):
      raise ValueError(f"supcon_loss: {name} has shape {shape}, but embeddings of shape "
                       f"{embeddings.shape} need one entry per row: shape ({n},)")

  same_rows("labels", labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"supcon_loss: labels must be integers, got {labels.dtype}")
  if where is not None:
    same_rows("where", where)
  if weights is not None:
    same_rows("weights", weights)
  if jnp.ndim(temperature) != 0:
    raise ValueError(f"supcon_loss: temperature must be a scalar, got shape "
                     f"{jnp.shape(temperature)}")
  if not isinstance(temperature, jax.core.Tracer):
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
      raise ValueError(f"supcon_loss: temperature must be a finite number > 0, got {value}")


def supcon_loss(embeddings, labels, *, temperature=0.1, where=None, reduction="mean",
                block_size=None, weights=None):
  r"""Supervised contrastive loss (SupCon "L_out") of one batch, docs/theory.md#scl-loss.

  For a batch of N rows h_i (the caller L2-normalises them) with labels y_i,

  .. math::
    L = \sum_{i:\,|P(i)|>0} \frac{1}{|P(i)|} \sum_{j \in P(i)}
        -\log \frac{\exp(h_i^\top h_j/\tau)}{\sum_{\ell \ne i} \exp(h_i^\top h_\ell/\tau)},
    \qquad P(i) = \{j \ne i : y_j = y_i\}.

  The anchor is excluded from its own denominator, positives stay in it, and anchors without
  a positive contribute exactly 0. Multi-view batches are passed concatenated along the batch
  axis with repeated labels: a second view is just another positive.

  Args:
    embeddings: `[N, d]` embeddings (any float dtype; computed in float32 or better).
    labels: `[N]` integer labels.
    temperature: tau > 0.
    where: optional `[N]` bool mask; masked rows are removed entirely (neither anchors nor
      contrast rows), so a padded batch gives the same value as the sliced batch.
    reduction: `"sum"` (the paper's per-batch sum), `"mean"` (average over the anchors that
      have at least one positive; 0 if there are none) or `"none"` (per-anchor terms `[N]`).
    block_size: `None` for the dense path (an N x N similarity matrix); an integer for the
      streaming path, with memory O(N * block_size) and the same value and gradient. A dense
      call that cannot fit in the device's free memory raises ValueError naming a block size
      that does (`geometry.memory.check_dense_scl`).
    weights: optional `[N]` per-anchor weights w_i for `"sum"` (sum_i w_i term_i) and
      `"mean"` (the same divided by the number of anchors with a positive); the same as
      weighting the `"none"` terms, in one sweep instead of two.

  Returns:
    A scalar (or `[N]` for `reduction="none"`) in the compute dtype. An empty batch (N = 0)
    gives the empty sum, 0 (and `[0]` for `"none"`).

  Raises:
    ValueError: while tracing, when the shapes disagree (embeddings not `[N, d]`; labels,
      `where` or `weights` not `[N]`), the labels are not integers, or the temperature is
      not a finite number > 0 (checked when it is concrete: a Python number or an array,
      not a tracer). The weights of masked rows are ignored, NaN included.

  Example:
    >>> import jax.numpy as jnp
    >>> h = jnp.eye(2)[jnp.array([0, 0, 1, 1])]   # an orthogonal frame, two per class
    >>> loss = supcon_loss(h, jnp.array([0, 0, 1, 1]), temperature=1.0, reduction="sum")
    >>> # equals 4 * log(1 + 2 / e), Theorem 1's value for class sizes (2, 2)
  """
  if reduction not in _REDUCTIONS:
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
  embeddings = jnp.asarray(embeddings)
  labels = jnp.asarray(labels)
  _check_inputs(embeddings, labels, where, weights, temperature)
  dtype = _compute_dtype(embeddings.dtype)
  embeddings = embeddings.astype(dtype)
  n = embeddings.shape[0]
  valid = jnp.ones((n,), bool) if where is None else jnp.asarray(where, bool)
  temperature = jnp.asarray(temperature, dtype)
  if block_size is None:
    memory.check_dense_scl(n, jnp.dtype(dtype).itemsize)
  if n == 0:
    # The empty sum: no anchor, no term (and the mean over no anchor is 0, as documented).
    empty = jnp.sum(embeddings) * 0.0
    return jnp.zeros((0,), dtype) if reduction == "none" else empty
  block_size = n if block_size is None else max(1, min(int(block_size), n))
  if reduction == "none":
    if weights is not None:
      raise ValueError("weights apply to reduction 'sum' or 'mean'; weight the 'none' terms")
    return _terms(embeddings, labels, valid, temperature, block_size)
  weights = jnp.ones((n,), dtype) if weights is None else jnp.asarray(weights, dtype)
  # A masked row is removed entirely, its weight included (NaN * 0 would still be NaN).
  weights = jnp.where(valid, weights, 0.0)
  total, count = _weighted_total(embeddings, labels, valid, weights, temperature, block_size)
  if reduction == "sum":
    return total
  return total / jnp.maximum(count, 1).astype(dtype)


def cross_entropy_loss(logits, labels, *, where=None, reduction="mean"):
  r"""Softmax cross-entropy :math:`-\log \mathrm{softmax}(z_i)_{y_i}`, docs/theory.md#ce-ufm
  (``optax.softmax_cross_entropy_with_integer_labels`` per row, with a row mask).

  Args:
    logits: `[N, K]` logits (computed in float32 or better).
    labels: `[N]` integer labels.
    where: optional `[N]` bool mask of rows to keep.
    reduction: `"mean"` over kept rows, `"sum"`, or `"none"` (`[N]`, masked rows 0).
  """
  if reduction not in _REDUCTIONS:
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
  logits = jnp.asarray(logits)
  logits = logits.astype(_compute_dtype(logits.dtype))
  labels = jnp.asarray(labels)
  valid = jnp.ones(logits.shape[:1], bool) if where is None else jnp.asarray(where, bool)
  # optax's `where` masks classes, not rows: rows are masked here.
  nll = jnp.where(valid, optax.softmax_cross_entropy_with_integer_labels(logits, labels), 0.0)
  if reduction == "none":
    return nll
  if reduction == "sum":
    return nll.sum()
  return nll.sum() / jnp.maximum(valid.sum(), 1).astype(nll.dtype)

