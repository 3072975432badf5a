r"""The UFM solver's compiled functions: one optimiser chunk, the objective, the noise, the
per-class excess and the float64 measurement, each jitted and vmapped over seeds.

One step (docs/solver.md "One step"):

1. the Euclidean gradient G of the current batch's sum-form loss (`geometry.losses`);
2. for SCL its tangent part R = G - diag(G H^T) H on the product of spheres (the radial part is
   annihilated by the normalisation and would only perturb Adam's second moments);
3. an optax Adam direction U, scaled by the per-seed step size;
4. the projection: UFM+ rows become normalise(max(h + u, 0)), UFM rows normalise(h + u); a row
   that the projection zeroes keeps its previous value.

The labels (and every n-long array) are arguments of the jitted functions, never closed-over
constants: XLA would otherwise embed and fold an n-long literal (minutes of compilation at
n = 10^7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from geometry import losses
from geometry import memory as geometry_memory
from ufm.problem import Problem

# On a CPU the dense path stops paying once one N x N array outgrows the caches: at N = 2020,
# d = 10 in float64 blocks of 512 rows ran 2.1x faster than dense, at N = 5050 (float32) 2.6x,
# and at N = 4096, d = 128 (float32) 1.6x; below about 16 MiB the two were within 10%.
CPU_DENSE_BYTES = 16 << 20
CPU_BLOCK = 512


def auto_block_size(rows: int, itemsize: int, seeds: int, memory: int | None = None,
                    platform: str | None = None) -> int | None:
  """The SCL block size for `rows` rows per batch: None (dense) or a block size b.

  Memory: dense needs ~6 N x N arrays per seed; when they would exceed half the memory, b is
  chosen so that the streaming path's ~6 N x b arrays per seed take at most a quarter of it.
  Speed: on a CPU, an N x N array above `CPU_DENSE_BYTES` streams in blocks of `CPU_BLOCK`
  rows, which keeps each [b, N] block in cache.
  """
  memory = geometry_memory.host_available_bytes() if memory is None else memory
  platform = jax.default_backend() if platform is None else platform
  fits = 6 * rows * rows * itemsize * seeds <= memory // 2
  if fits and not (platform == "cpu" and rows * rows * itemsize > CPU_DENSE_BYTES):
    return None
  block = (memory // 4) // max(6 * rows * itemsize * seeds, 1)
  if platform == "cpu":
    block = min(block, CPU_BLOCK)
  return int(max(16, min(rows, block)))


def key(seed):
  """The solver's PRNG key: XLA's RngBitGenerator ("rbg") compiles in a fraction of the
  time of the default threefry on a CPU (a normal draw of [5050, 10]: 0.9 s instead of 5.3 s,
  under load), and a solve compiles several programs that draw noise."""
  return jax.random.key(seed, impl="rbg")


# ------------------------------------------------------------------------------------------
# Objective, projections and the projected gradient (pure functions of one seed's arrays).


def scl_batch_loss(h_all, labels, idx, mask, temperature, class_weights, sparsity, block_size):
  """Weighted sum-form SCL of one batch (all rows when idx is None), minus the warm-up's
  sparsity reward  sparsity * sum_i w_{y_i} ||h_i||_4^4 / tau."""
  if idx is None:
    h, y, where = h_all, labels, jnp.ones(labels.shape, bool)
  else:
    h, y, where = h_all[idx], labels[idx], mask
  weights = class_weights[y]
  scl = losses.supcon_loss(h, y, temperature=temperature, where=where, reduction="sum",
                           block_size=block_size, weights=weights)
  peaky = jnp.where(where, jnp.sum(h ** 4, axis=1), 0.0)
  return scl - sparsity / temperature * jnp.sum(peaky * weights)


def ce_batch_loss(params, labels, idx, mask, lambda_h, lambda_w, num_batches):
  """Sum-form CE of one batch plus 1/num_batches of the ridge penalty (sums to the objective)."""
  h_all, w = params["H"], params["W"]
  if idx is None:
    h, y, where = h_all, labels, None
  else:
    h, y, where = h_all[idx], labels[idx], mask
  ce = losses.cross_entropy_loss(h @ w.T, y, where=where, reduction="sum")
  ridge = 0.5 * (lambda_h * jnp.sum(h_all ** 2) + lambda_w * jnp.sum(w ** 2))
  return ce + ridge / num_batches


def project_rows(new, old, final_relu):
  """Rows onto the unit sphere (and the orthant under ReLU); rows with no projection stay."""
  if final_relu:
    new = jnp.maximum(new, 0.0)
  norm = jnp.linalg.norm(new, axis=1, keepdims=True)
  ok = norm > jnp.finfo(new.dtype).tiny * 1e4
  return jnp.where(ok, new / jnp.where(ok, norm, 1.0), old)


def tangent(grad, h):
  """Tangent part of a row-wise gradient on the unit sphere."""
  return grad - jnp.sum(grad * h, axis=1, keepdims=True) * h


def cone_clip(direction_grad, x):
  """Keeps, at zero coordinates of x >= 0, only gradient components that point out of the
  orthant's interior (negative ones): a positive component there is blocked by x >= 0."""
  return jnp.where(x > 0, direction_grad, jnp.minimum(direction_grad, 0.0))


def over_seeds(fn, num_seeds: int, in_axes=0):
  """jax.vmap over the leading seed axis; for one seed, a squeeze instead (a batch axis of one
  makes the blocked SCL step about 25% slower on a CPU: batched matmuls of batch 1)."""
  if num_seeds > 1:
    return jax.vmap(fn, in_axes=in_axes)
  axes = in_axes if isinstance(in_axes, (tuple, list)) else None

  def single(*args):
    args = [a if (axes is not None and axes[i] is None) else jax.tree.map(lambda x: x[0], a)
            for i, a in enumerate(args)]
    return jax.tree.map(lambda x: x[None], fn(*args))
  return single


def select(flags, on_true, on_false):
  """Per-seed choice between two pytrees with a leading seed axis."""
  flags = jnp.asarray(flags)
  return jax.tree.map(
      lambda a, b: jnp.where(flags.reshape(flags.shape + (1,) * (a.ndim - 1)), a, b),
      on_true, on_false)


# ------------------------------------------------------------------------------------------
# The compiled functions of one problem.


class Kernels:
  """The jitted functions of one solve of `problem`, vmapped over `num_seeds` seeds.

  State is `(params, adam_state)` with a leading seed axis; params is {"H"} for SCL and
  {"H", "W"} for CE.
  """

  def __init__(self, problem: Problem, num_seeds: int, block_size: int | None,
               num_batches: int):
    self.opt = opt = optax.scale_by_adam()   # the step size is applied per seed outside
    dtype = jnp.float64 if problem.dtype == "float64" else jnp.float32
    n, d, k = problem.num_examples, problem.dim, problem.num_classes
    is_scl, final_relu = problem.loss_kind == "scl", problem.final_relu
    temperature = problem.temperature
    self.num_seeds, self.dtype = num_seeds, dtype

    def init(rng):
      kh, kw = jax.random.split(rng)
      h = jax.random.normal(kh, (n, d), dtype)
      if is_scl:
        h = jnp.abs(h) if final_relu else h
        params = {"H": h / jnp.linalg.norm(h, axis=1, keepdims=True)}
      else:
        h = 0.1 * h
        params = {"H": jnp.abs(h) if final_relu else h,
                  "W": 0.1 * jax.random.normal(kw, (k, d), dtype)}
      return params, opt.init(params)

    def batch_loss(params, labels, idx, mask, temperature, weights, sparsity):
      if is_scl:
        return scl_batch_loss(params["H"], labels, idx, mask, temperature, weights, sparsity,
                              block_size)
      return ce_batch_loss(params, labels, idx, mask, problem.lambda_h, problem.lambda_w,
                           num_batches)

    def project(new, old):
      if is_scl:
        return {"H": project_rows(new["H"], old["H"], final_relu)}
      return {"H": jnp.maximum(new["H"], 0.0) if final_relu else new["H"], "W": new["W"]}

    def one_step(carry, xs, labels, temperature, weights, sparsity, lr):
      params, opt_state = carry
      idx, mask = xs if xs is not None else (None, None)
      grads = jax.grad(batch_loss)(params, labels, idx, mask, temperature, weights, sparsity)
      if is_scl:
        grads = {"H": tangent(grads["H"], params["H"])}
      updates, opt_state = opt.update(grads, opt_state, params)
      updates = jax.tree.map(lambda u: -lr * u, updates)
      return (project(optax.apply_updates(params, updates), params), opt_state), None

    def run_chunk(state, active, xs, labels, temperature, weights, sparsity, lr, length):
      def per_seed(state, active, lr, sparsity):
        body = lambda c, x: one_step(c, x, labels, temperature, weights, sparsity, lr)
        new, _ = jax.lax.scan(body, state, xs, length=length)
        return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
      return over_seeds(per_seed, num_seeds)(state, active, lr, sparsity)

    def objective(params, e_idx, e_mask, labels, temperature, weights):
      """Objective of one epoch (no peaky-rows reward) and its projected-gradient RMS."""
      def total(params):
        if e_idx is None:
          return batch_loss(params, labels, None, None, temperature, weights, 0.0)
        def body(acc, xs):
          return acc + batch_loss(params, labels, xs[0], xs[1], temperature, weights, 0.0), None
        return jax.lax.scan(body, jnp.zeros((), dtype), (e_idx, e_mask))[0]
      value, grads = jax.value_and_grad(total)(params)
      if is_scl:
        g = tangent(grads["H"], params["H"])
        g = cone_clip(g, params["H"]) if final_relu else g
        sq, count = jnp.sum(g ** 2), g.shape[0]
      else:
        gh = cone_clip(grads["H"], params["H"]) if final_relu else grads["H"]
        sq = jnp.sum(gh ** 2) + jnp.sum(grads["W"] ** 2)
        count = gh.shape[0] + grads["W"].shape[0]
      return value, jnp.sqrt(sq / count)

    def perturb_one(state, flag, rng, scale, reset, classes, labels):
      params, opt_state = state
      h = params["H"]
      # Class-coherent noise (one random direction per class, plus a per-example part): the
      # escape direction from a saddle where two classes sit on the same coordinates moves a
      # whole class together, which independent per-example noise barely excites. Only the
      # rows of `classes` move.
      k_class, k_row = jax.random.split(rng)
      per_class = jax.random.normal(k_class, (k, h.shape[1]), h.dtype)[labels]
      noise = scale * (per_class + jax.random.normal(k_row, h.shape, h.dtype))
      moved = project_rows(h + (jnp.abs(noise) if final_relu else noise), h, final_relu)
      new = {**params, "H": jnp.where(flag & classes[labels][:, None], moved, h)}
      # Fresh Adam moments: the old second moments are tuned to the gradients before the
      # move and would damp the (small) escape gradients for ~1/(1 - b2) steps.
      fresh = opt.init(new)
      return new, jax.tree.map(lambda a, b: jnp.where(flag & reset, a, b), fresh, opt_state)

    def class_excess_one(h, labels, anchor_bound):
      terms = losses.supcon_loss(h, labels, temperature=temperature, reduction="none",
                                 block_size=block_size)
      return jax.ops.segment_sum(terms - anchor_bound, labels, num_segments=k)

    def shapes_one(params, labels):
      """CE: the normalised Gram matrices G / ||G||_F of the class means of H and of W."""
      means = jax.ops.segment_sum(params["H"], labels, num_segments=k)
      grams = [x @ x.T for x in (means, params["W"])]
      return jnp.stack([g / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(dtype).tiny)
                        for g in grams])

    def scl_float64_one(h, e_idx, e_mask, labels):
      """The true SCL objective in float64 of the rows renormalised in float64."""
      h = h / jnp.linalg.norm(h, axis=1, keepdims=True)
      ones = jnp.ones((k,), h.dtype)
      if e_idx is None:
        return scl_batch_loss(h, labels, None, None, temperature, ones, 0.0, block_size)
      return jax.lax.scan(lambda acc, xs: (acc + scl_batch_loss(
          h, labels, xs[0], xs[1], temperature, ones, 0.0, block_size), None),
          jnp.zeros((), h.dtype), (e_idx, e_mask))[0]

    self.init = jax.vmap(init)
    self.run_chunk = jax.jit(run_chunk, static_argnums=(8,))
    self.evaluate = jax.jit(over_seeds(objective, num_seeds,
                                       in_axes=(0, None, None, None, None, None)))
    self._perturb = jax.jit(lambda state, flags, rng, scale, reset, classes, labels: over_seeds(
        perturb_one, num_seeds, in_axes=(0, 0, 0, 0, 0, 0, None))(
            state, flags, jax.random.split(rng, flags.shape[0]), scale, reset, classes, labels))
    self.class_excess = jax.jit(over_seeds(class_excess_one, num_seeds, in_axes=(0, None, None)))
    self.shapes = jax.jit(over_seeds(shapes_one, num_seeds, in_axes=(0, None)))
    self._scl_float64 = jax.jit(over_seeds(scl_float64_one, num_seeds,
                                           in_axes=(0, None, None, None)))
    self._labels = np.asarray(problem.labels, np.int32)

  def perturb(self, state, flags, rng, scale, reset, classes, labels):
    """Class-coherent noise of per-seed `scale` on the rows of `classes` of the seeds in
    `flags`; fresh Adam moments where `reset`."""
    dtype = self.dtype
    return self._perturb(state, jnp.asarray(flags), rng, jnp.asarray(scale, dtype),
                         jnp.asarray(reset), jnp.asarray(classes), labels)

  def measure_float64(self, h, e_idx, e_mask):
    """SCL in float32: the objective the final phase reports and certifies, in float64. The
    float32 arithmetic errs by about eps / tau per anchor, as much as the gap of some
    spurious stationary points (K = 20, classes of 10 and 2 rows: 2.9e-4 at dist_of 7e-3)."""
    with jax.enable_x64(True):
      args = [None if a is None else np.asarray(a) for a in (e_idx, e_mask)]
      return np.asarray(self._scl_float64(np.asarray(h, np.float64), *args, self._labels),
                        np.float64)
