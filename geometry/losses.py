"""The one supervised-contrastive loss and the one cross-entropy loss of the project.

Both the UFM solver (`ufm`) and the trainer (`deepnet`) call these functions, so theory and
practice are measured with the same code. The semantics are those of PAPER.md section 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_REDUCTIONS = ("mean", "sum", "none")


def _compute_dtype(dtype) -> jnp.dtype:
  """float32 or better whatever the input: bf16/fp16 similarities are too coarse at tau=0.1."""
  return jnp.promote_types(dtype, jnp.float32)


def _anchor_terms(anchors, anchor_labels, anchor_index, anchor_valid,
                  embeddings, labels, valid, temperature):
  """Per-anchor SCL terms and positive counts for a block of anchors against all rows.

  For anchor i with positives P(i) and contrast set A(i) = {l valid, l != i}:
    term_i = log sum_{l in A(i)} exp(z_il) - (1/|P(i)|) sum_{j in P(i)} z_il,   z = h_i.h_l / tau,
  which equals the mean over j in P(i) of -log softmax_A(i)(z_i)_j (PAPER.md 1.1, items 1-3).
  Anchors without a positive (or masked) get term 0 (item 4).
  """
  logits = (anchors @ embeddings.T) / temperature                        # [b, N]
  not_self = anchor_index[:, None] != jnp.arange(embeddings.shape[0])[None, :]
  contrast = not_self & valid[None, :]
  positive = contrast & (anchor_labels[:, None] == labels[None, :])
  num_pos = positive.sum(axis=1)
  has_pos = (num_pos > 0) & anchor_valid
  # Row max over the contrast set for a stable log-sum-exp; the shift is an exact identity,
  # so no gradient needs to flow through it.
  row_max = jax.lax.stop_gradient(
      jnp.max(jnp.where(contrast, logits, -jnp.inf), axis=1))
  row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
  exp = jnp.where(contrast, jnp.exp(logits - row_max[:, None]), 0.0)
  # Rows with no positive would take log(0); give them a dummy 1 so the gradient stays finite.
  sum_exp = jnp.where(has_pos, exp.sum(axis=1), 1.0)
  log_denominator = jnp.log(sum_exp) + row_max
  pos_sum = jnp.where(positive, logits, 0.0).sum(axis=1)
  pos_mean = pos_sum / jnp.maximum(num_pos, 1)
  terms = jnp.where(has_pos, log_denominator - pos_mean, 0.0)
  return terms, has_pos


def _streaming_terms(embeddings, labels, valid, temperature, block_size):
  """Per-anchor terms computed block by block; the backward pass recomputes each block.

  Memory is O(N * block_size + N * d): `jax.checkpoint` keeps only the block's inputs for the
  backward pass, and `lax.map` runs the blocks sequentially.
  """
  n = embeddings.shape[0]
  num_blocks = -(-n // block_size)
  pad = num_blocks * block_size - n
  index = jnp.arange(num_blocks * block_size)
  anchors = jnp.pad(embeddings, ((0, pad), (0, 0)))
  anchor_labels = jnp.pad(labels, (0, pad))
  anchor_valid = jnp.pad(valid, (0, pad))  # padded anchors are invalid, so contribute 0

  @jax.checkpoint
  def block(args):
    block_anchors, block_labels, block_index, block_valid = args
    return _anchor_terms(block_anchors, block_labels, block_index, block_valid,
                         embeddings, labels, valid, temperature)

  reshape = lambda a: a.reshape((num_blocks, block_size) + a.shape[1:])
  terms, has_pos = jax.lax.map(
      block, (reshape(anchors), reshape(anchor_labels), reshape(index), reshape(anchor_valid)))
  return terms.reshape(-1)[:n], has_pos.reshape(-1)[:n]


def supcon_loss(embeddings, labels, *, temperature=0.1, where=None, reduction="mean",
                block_size=None):
  r"""Supervised contrastive loss (SupCon "L_out") of one batch, PAPER.md section 1.

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
      streaming path, with memory O(N * block_size) and the same value and gradient.

  Returns:
    A scalar (or `[N]` for `reduction="none"`) in the compute dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> h = jnp.eye(2)[jnp.array([0, 0, 1, 1])]   # an orthogonal frame, two per class
    >>> loss = supcon_loss(h, jnp.array([0, 0, 1, 1]), temperature=1.0, reduction="sum")
    >>> # equals 4 * log(1 + 2 / e), Theorem 1's value for class sizes (2, 2)
  """
  if reduction not in _REDUCTIONS:
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
  embeddings = jnp.asarray(embeddings)
  dtype = _compute_dtype(embeddings.dtype)
  embeddings = embeddings.astype(dtype)
  labels = jnp.asarray(labels)
  n = embeddings.shape[0]
  valid = jnp.ones((n,), bool) if where is None else jnp.asarray(where, bool)
  temperature = jnp.asarray(temperature, dtype)
  if block_size is None or block_size >= n:
    terms, has_pos = _anchor_terms(embeddings, labels, jnp.arange(n), valid,
                                   embeddings, labels, valid, temperature)
  else:
    terms, has_pos = _streaming_terms(embeddings, labels, valid, temperature, int(block_size))
  if reduction == "none":
    return terms
  total = terms.sum()
  if reduction == "sum":
    return total
  return total / jnp.maximum(has_pos.sum(), 1).astype(dtype)


def cross_entropy_loss(logits, labels, *, where=None, reduction="mean"):
  r"""Softmax cross-entropy :math:`-\log \mathrm{softmax}(z_i)_{y_i}`, PAPER.md section 2.

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
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  nll = jnp.where(valid, nll, 0.0)
  if reduction == "none":
    return nll
  if reduction == "sum":
    return nll.sum()
  return nll.sum() / jnp.maximum(valid.sum(), 1).astype(nll.dtype)


supcon_loss_jit = jax.jit(supcon_loss, static_argnames=("reduction", "block_size"))
