r"""A jitted first-order solver for the UFM / UFM+ with SCL, and for the ridge-regularised CE-UFM.

The variables are the free embeddings H (`[n, d]`, one row per example) and, for CE, the
classifier W (`[K, d]`). For SCL the feasible set is the product of unit spheres (UFM), or its
intersection with the non-negative orthant (UFM+, docs/theory.md#ufm). Each optimiser step:

1. takes the Euclidean gradient G of the current batch's loss (sum form, `geometry.losses`);
2. for SCL, keeps only its tangent part R = G - diag(G H^T) H (a Riemannian gradient on the
   sphere: the radial part is annihilated by the normalisation anyway and only perturbs Adam's
   second-moment estimates);
3. applies an optax Adam update U;
4. projects back: UFM+ rows become normalise(max(h + u, 0)); UFM rows normalise(h + u). A row
   that the projection zeroes (all entries <= 0) has no projection and keeps its previous value.

Steps run in `lax.scan` chunks inside one jitted function, vmapped over seeds; between chunks a
host loop checks convergence on the true objective (the full epoch for mini-batches):

* the projected-gradient norm, the RMS over rows of the gradient projected onto the tangent
  cone of the feasible set (for UFM+, at a zero coordinate only the component pointing into
  the orthant counts), and
* the relative change of the objective over the chunk,

must both be below `tol`. For UFM+ with SCL a stall also needs a certificate to stop: the
objective within a relative tolerance of its closed-form lower bound (Theorem 1, or the per-batch
bound), which only global minimizers reach (`ufm.policy`). dist_of is never used to stop.

Finding the global minimizer (UFM+ with SCL). docs/theory.md#ufm records that plain projected
first-order methods stall at spurious stationary points (K = d = 10, R = 100, tau = 0.1). The
mechanisms seen here: (i) a class spreads over several coordinates (a flat direction of the
loss), leaving two other classes to share one coordinate; (ii) a class straddles coordinates
held by other classes, or sits on another class's coordinate, while a coordinate is free: the
projection keeps the free coordinate at exactly zero with exactly zero gradient, and the push
towards it is second order (docs/solver.md). The solver therefore
1. starts with a warm-up phase on a problem with the same global minimizers (Theorems 1-2 do
   not depend on class sizes): balanced anchor weights, a reward for peaky rows that the
   canonical OF maximizes, and decaying class-coherent noise (`continuation_phases`);
2. then runs the true objective at the target tau; a stall at a point that is not certified
   triggers a kick: class-coherent random noise with fresh Adam moments. Full batch, the kick
   moves only the classes whose anchors lie furthest above their per-anchor bounds (the
   bound holds anchor by anchor), without the peaky-rows reward; every third kick moves all
   classes with the reward. A kick that ends in a higher stall is undone. Kicks go on until a
   certified point or the end of the budget.
The final phase is always the true problem and is where convergence is checked. The point
returned per seed is the lowest objective measured in it. Starts are random (non-negative for
UFM+); nothing is initialised at, steered toward or snapped to a frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from geometry import losses
from geometry import memory as geometry_memory
from geometry import metrics
from ufm import policy as policy_lib
from ufm.problem import Problem


def _by_dtype(value: float | None, dtype: str, *, float64: float, float32: float) -> float:
  """``value`` when given, else the default of the problem's precision."""
  if value is not None:
    return float(value)
  return float64 if dtype == "float64" else float32


@dataclasses.dataclass(frozen=True)
class SolverOptions:
  """Solver knobs.

  Attributes:
    steps: the step budget per seed (all phases together).
    tol: convergence tolerance for the projected-gradient RMS and the relative objective change;
      None picks 1e-9 (float64) or 1e-5 (float32).
    learning_rate: Adam's initial step size (halved whenever a chunk increases the objective);
      None picks 1e-2 for SCL and 5e-2 for CE (whose norms must grow to the ridge balance).
    chunk: optimiser steps per compiled call between host-side convergence checks.
    block_size: the streaming SCL path's block size; None picks it automatically when the
      dense N x N path would not fit in memory.
    continuation: for UFM+ SCL, solve a larger-tau, class-balanced problem first (same
      minimizers, Theorems 1-2) before the true one.
    seeds: number of seeds solved in one vmapped call (seeds problem.seed, +1, ...).
    warmup_steps: UFM+ SCL: steps of the warm-up phase (at most a quarter of the budget).
    sparsity: UFM+ SCL warm-up: weight of the peaky-rows reward.
    kick_chunks: length (in chunks) of a saddle-check kick.
    kick_sparsity: UFM+: peaky-rows reward at the start of a kick, annealed to 0 over it. It
      breaks the flat direction of a class spread over coordinates that no other class uses
      (seen at R = 100, n = 3030: a majority class on (0.73 e_a + 0.69 e_b) while a minority
      class straddled four occupied coordinates); with noise only, 1 of 10 seeds stopped there.
    max_failures: SCL: kicks that fail to lower a stall before it is accepted (3: at R = 100,
      n = 1010 in float64 one seed's minority class straddled three occupied coordinates
      while one was free; the first two kicks ended higher, the third reached the OF).
    max_checks: SCL: at most this many saddle checks (perturb a stationary point and
      re-converge) per seed.
    perturbation: the saddle check's noise scale (per entry, rows of norm 1).
    geometry_tol: CE: the geometry has settled when the normalised Gram matrices of the class
      means and of W change by at most this (Frobenius) over a chunk; None picks 1e-6
      (float64) or 1e-4 (float32). A stall with settled geometry is converged.
    certificate_rtol: UFM+ SCL: a point is certified when its objective L is within
      rtol * (|L*| + anchors / tau) of the bound L* (Theorem 1, or the per-batch bound;
      `ufm.policy`); None picks 1e-9 (float64) or 1e-8 (float32 solves, whose objective is
      measured in float64: a float32 OF has exact zeros and ones, and read 3e-16 |L*| off).
  """
  steps: int = 20000
  tol: float | None = None
  learning_rate: float | None = None
  chunk: int = 100
  block_size: int | None = None
  continuation: bool = True
  seeds: int = 1
  max_checks: int = 8
  warmup_steps: int = 1500
  sparsity: float = 0.3
  kick_chunks: int = 3
  kick_sparsity: float = 0.3
  max_failures: int = 3
  perturbation: float = 1e-2
  certificate_rtol: float | None = None
  geometry_tol: float | None = None

  def resolved_lr(self, loss: str) -> float:
    if self.learning_rate is not None:
      return float(self.learning_rate)
    return 5e-2 if loss == "ce" else 1e-2

  def resolved_tol(self, dtype: str) -> float:
    return _by_dtype(self.tol, dtype, float64=1e-9, float32=1e-5)

  def resolved_geometry_tol(self, dtype: str) -> float:
    return _by_dtype(self.geometry_tol, dtype, float64=1e-6, float32=1e-4)

  def resolved_rtol(self, dtype: str) -> float:
    return _by_dtype(self.certificate_rtol, dtype, float64=1e-9, float32=1e-8)


@dataclasses.dataclass(frozen=True)
class Phase:
  """One continuation phase: temperature, anchor-weight mix (0 = balanced, 1 = true), steps."""
  tau: float
  mix: float
  steps: int
  sparsity: float = 0.0
  noise: float = 0.0
  final: bool = False


def continuation_phases(problem: Problem, options: SolverOptions) -> list[Phase]:
  """The phase plan; the last phase is always the true problem and takes the remaining budget."""
  plan = []
  if options.continuation and problem.loss == "scl" and problem.relu:
    # Warm-up on a problem with the same global minimizers as the true one but a kinder
    # landscape (Theorems 1-2: UFM+ minimizers do not depend on the class sizes):
    # - balanced anchor weights (n_max / n_c), so minority classes push as hard as majority
    #   ones and claim their own coordinates early;
    # - a reward sparsity * ||h_i||_4^4 / tau for peaky rows. The canonical OF (rows e_c) maximizes
    #   it for every row while minimizing the loss, so it stays a global minimizer, but a
    #   class spread over several coordinates (a flat direction of the true loss, which
    #   strands other classes on shared coordinates) now concentrates and frees them;
    # - decaying class-coherent noise, so no coordinate is abandoned at exactly zero.
    warmup = min(options.warmup_steps, options.steps // 4)
    if warmup > 0:
      plan.append(Phase(problem.tau, 0.0, warmup, sparsity=options.sparsity,
                        noise=options.perturbation))
  used = sum(p.steps for p in plan)
  plan.append(Phase(problem.tau, 1.0, max(options.steps - used, 1), final=True))
  return plan


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


# ------------------------------------------------------------------------------------------
# Objective, projections and the projected gradient.


def _scl_batch_loss(h_all, labels, idx, mask, tau, class_weights, sparsity, block_size):
  """Weighted sum-form SCL of one batch (all rows when idx is None), minus the warm-up's
  sparsity reward  sparsity * sum_i w_{y_i} ||h_i||_4^4 / tau."""
  if idx is None:
    h, y, where = h_all, labels, jnp.ones(labels.shape, bool)
  else:
    h, y, where = h_all[idx], labels[idx], mask
  weights = class_weights[y]
  scl = losses.supcon_loss(h, y, temperature=tau, where=where, reduction="sum",
                           block_size=block_size, weights=weights)
  peaky = jnp.where(where, jnp.sum(h ** 4, axis=1), 0.0)
  return scl - sparsity / tau * jnp.sum(peaky * weights)


def _ce_batch_loss(params, labels, idx, mask, lambda_h, lambda_w, num_batches):
  """Sum-form CE of one batch plus 1/num_batches of the ridge penalty (sums to the objective)."""
  h_all, w = params["H"], params["W"]
  if idx is None:
    h, y, where = h_all, labels, None
  else:
    h, y, where = h_all[idx], labels[idx], mask
  ce = losses.cross_entropy_loss(h @ w.T, y, where=where, reduction="sum")
  ridge = 0.5 * (lambda_h * jnp.sum(h_all ** 2) + lambda_w * jnp.sum(w ** 2))
  return ce + ridge / num_batches


def _project_rows(new, old, relu):
  """Rows onto the unit sphere (and the orthant under relu); rows with no projection stay."""
  if relu:
    new = jnp.maximum(new, 0.0)
  norm = jnp.linalg.norm(new, axis=1, keepdims=True)
  ok = norm > jnp.finfo(new.dtype).tiny * 1e4
  return jnp.where(ok, new / jnp.where(ok, norm, 1.0), old)


def _tangent(grad, h):
  """Tangent part of a row-wise gradient on the unit sphere."""
  return grad - jnp.sum(grad * h, axis=1, keepdims=True) * h


def _cone_clip(direction_grad, x):
  """Keeps, at zero coordinates of x >= 0, only gradient components that point out of the
  orthant's interior (negative ones): a positive component there is blocked by x >= 0."""
  return jnp.where(x > 0, direction_grad, jnp.minimum(direction_grad, 0.0))


# ------------------------------------------------------------------------------------------
# The solver.


@dataclasses.dataclass
class SolveResult:
  """Per-seed outputs (leading axis = seed)."""
  embeddings: np.ndarray           # [S, n, d]
  classifier: np.ndarray | None    # [S, K, d] for CE
  loss: np.ndarray                 # [S] objective (sum form, one epoch)
  pg_norm: np.ndarray              # [S] projected-gradient RMS at the end
  rel_change: np.ndarray           # [S] relative objective change over the last chunk
  converged: np.ndarray            # [S] bool
  certified: np.ndarray | None     # [S] bool: within certificate_tol of the bound (UFM+ SCL)
  certificate_rtol: float | None
  certificate_tol: float | None    # rtol * (|bound| + anchors / tau), `ufm.policy`
  steps: np.ndarray                # [S] steps taken
  seconds: float
  seeds: list[int]
  block_size: int | None
  phases: list[Phase]
  final_epoch: int                 # the epoch whose schedule defines the reported objective


def _select(flags, on_true, on_false):
  """Per-seed choice between two pytrees with a leading seed axis."""
  flags = jnp.asarray(flags)
  return jax.tree.map(
      lambda a, b: jnp.where(flags.reshape(flags.shape + (1,) * (a.ndim - 1)), a, b),
      on_true, on_false)


def _over_seeds(fn, num_seeds: int, in_axes=0):
  """jax.vmap over the leading seed axis; for one seed, a squeeze instead (a batch axis of one
  made the blocked SCL step 25% slower on a CPU: batched matmuls of batch 1)."""
  if num_seeds > 1:
    return jax.vmap(fn, in_axes=in_axes)
  axes = in_axes if isinstance(in_axes, (tuple, list)) else None

  def single(*args):
    args = [a if (axes is not None and axes[i] is None) else jax.tree.map(lambda x: x[0], a)
            for i, a in enumerate(args)]
    return jax.tree.map(lambda x: x[None], fn(*args))
  return single


def _padded(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """A ragged list of batches -> `[num_batches, Bmax]` indices (pad 0) and a mask."""
  width = max(len(b) for b in batches)
  idx = np.zeros((len(batches), width), np.int32)
  mask = np.zeros((len(batches), width), bool)
  for i, b in enumerate(batches):
    idx[i, : len(b)] = b
    mask[i, : len(b)] = True
  return idx, mask


class _Schedule:
  """Per-step batches: one batch per step in schedule order, an epoch being one pass."""

  def __init__(self, problem: Problem):
    self.problem = problem
    self.full = problem.full_batch
    if not self.full:
      first = problem.epoch_batches(0)
      self.num_batches = len(first)
      self.width = max(len(b) for b in first)
      self._cache = {0: _padded(first)}
    else:
      self.num_batches = 1

  def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    if not self.problem.reshuffled:
      epoch = 0
    if epoch not in self._cache:
      if len(self._cache) > 4:
        self._cache.pop(min(self._cache))
      self._cache[epoch] = _padded(self.problem.epoch_batches(epoch))
    return self._cache[epoch]

  def steps(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and masks `[count, Bmax]` for steps start .. start+count-1."""
    idx = np.zeros((count, self.width), np.int32)
    mask = np.zeros((count, self.width), bool)
    for k in range(count):
      t = start + k
      e_idx, e_mask = self.epoch(t // self.num_batches)
      idx[k], mask[k] = e_idx[t % self.num_batches], e_mask[t % self.num_batches]
    return idx, mask


def _anchors(problem: Problem, epoch: int) -> int:
  """Anchor terms of one epoch's objective: rows with a positive in their batch."""
  batches = [problem.labels] if problem.full_batch else [
      problem.labels[b] for b in problem.epoch_batches(epoch)]
  return int(sum(np.sum(np.bincount(y)[y] >= 2) for y in batches))


def solve(problem: Problem, options: SolverOptions = SolverOptions(),
          progress: Callable[[dict], None] | None = None) -> SolveResult:
  """Solves `problem` for `options.seeds` seeds in one vmapped, jitted loop.

  Args:
    problem: the validated problem.
    options: solver options.
    progress: optional callback, called after every chunk with a dict of `step`, `phase`,
      `loss`, `gap`, `dist_of` (of the seed with the lowest loss).

  Returns:
    A `SolveResult`.
  """
  # float64 needs x64 only inside the solve: a context, so the caller's JAX stays as it was.
  x64 = jax.enable_x64(True) if problem.dtype == "float64" else contextlib.nullcontext()
  with x64:
    return _solve(problem, options, progress)


def _solve(problem, options, progress):
  dtype = jnp.float64 if problem.dtype == "float64" else jnp.float32
  tol = options.resolved_tol(problem.dtype)
  base_lr = options.resolved_lr(problem.loss)
  n, d, k = problem.num_examples, problem.dim, problem.num_classes
  labels = jnp.asarray(problem.labels, jnp.int32)
  schedule = _Schedule(problem)
  rows = n if schedule.full else schedule.width
  block_size = options.block_size
  if block_size is None and problem.loss == "scl":
    block_size = auto_block_size(rows, np.dtype(problem.dtype).itemsize, options.seeds)
  if block_size is not None and block_size >= rows:
    block_size = None
  is_scl = problem.loss == "scl"
  relu = problem.relu
  sizes = np.asarray(problem.sizes, np.float64)
  # Anchor weights of the balanced problem: every class's anchors weigh as much in total as
  # the largest class's (n_max / n_c per anchor); the OF minimizes every such weighted sum
  # too (each anchor term is bounded separately in docs/theory.md#batch-bound).
  balanced_weights = sizes.max() / sizes
  seeds = [problem.seed + s for s in range(options.seeds)]
  num_seeds = len(seeds)
  phases = continuation_phases(problem, options)

  # Adam's direction; the step size is applied outside so that the host can halve it per seed.
  opt = optax.scale_by_adam()

  def init(key):
    kh, kw = jax.random.split(key)
    h = jax.random.normal(kh, (n, d), dtype)
    if is_scl:
      if relu:
        h = jnp.abs(h)
      params = {"H": h / jnp.linalg.norm(h, axis=1, keepdims=True)}
    else:
      h = 0.1 * h
      params = {"H": jnp.abs(h) if relu else h,
                "W": 0.1 * jax.random.normal(kw, (k, d), dtype)}
    return params, opt.init(params)

  # The labels (and every n-long array) are arguments of the jitted functions, never
  # closed-over constants: XLA would otherwise embed and fold an n-long literal, minutes of
  # compilation at n = 10^7.
  def batch_loss(params, labels, idx, mask, tau, weights, sparsity):
    if is_scl:
      return _scl_batch_loss(params["H"], labels, idx, mask, tau, weights, sparsity,
                             block_size)
    return _ce_batch_loss(params, labels, idx, mask, problem.lambda_h, problem.lambda_w,
                          schedule.num_batches)

  def riemannian(grads, params):
    if is_scl:
      return {"H": _tangent(grads["H"], params["H"])}
    return grads

  def project(new, old):
    if is_scl:
      return {"H": _project_rows(new["H"], old["H"], relu)}
    h = jnp.maximum(new["H"], 0.0) if relu else new["H"]
    return {"H": h, "W": new["W"]}

  def one_step(carry, xs, labels, tau, weights, sparsity, lr):
    params, opt_state = carry
    idx, mask = xs if xs is not None else (None, None)
    grads = jax.grad(batch_loss)(params, labels, idx, mask, tau, weights, sparsity)
    grads = riemannian(grads, params)
    updates, opt_state = opt.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    new = project(optax.apply_updates(params, updates), params)
    return (new, opt_state), None

  def run_chunk(state, active, xs, labels, tau, weights, sparsity, lr, length):
    def per_seed(state, active, lr, sparsity):
      body = lambda c, x: one_step(c, x, labels, tau, weights, sparsity, lr)
      new, _ = jax.lax.scan(body, state, xs, length=length)
      return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
    return _over_seeds(per_seed, num_seeds)(state, active, lr, sparsity)

  run_chunk = jax.jit(run_chunk, static_argnums=(8,))

  def objective(params, e_idx, e_mask, labels, tau, weights, sparsity):
    """Objective of one epoch and its projected-gradient RMS."""
    def total(params):
      if e_idx is None:
        return batch_loss(params, labels, None, None, tau, weights, sparsity)
      def body(acc, xs):
        return acc + batch_loss(params, labels, xs[0], xs[1], tau, weights, sparsity), None
      return jax.lax.scan(body, jnp.zeros((), dtype), (e_idx, e_mask))[0]
    value, grads = jax.value_and_grad(total)(params)
    if is_scl:
      g = _tangent(grads["H"], params["H"])
      if relu:
        g = _cone_clip(g, params["H"])
      sq, count = jnp.sum(g ** 2), g.shape[0]
    else:
      gh = _cone_clip(grads["H"], params["H"]) if relu else grads["H"]
      sq, count = jnp.sum(gh ** 2) + jnp.sum(grads["W"] ** 2), gh.shape[0] + grads["W"].shape[0]
    return value, jnp.sqrt(sq / count)

  def perturb_one(state, flag, key, scale, reset, classes, labels):
    params, opt_state = state
    h = params["H"]
    # Class-coherent noise (one random direction per class, plus a per-example part): the
    # escape direction from a saddle where two classes sit on the same coordinates moves a
    # whole class together, which independent per-example noise barely excites. Only the
    # rows of `classes` move.
    k_class, k_row = jax.random.split(key)
    per_class = jax.random.normal(k_class, (k, h.shape[1]), h.dtype)[labels]
    noise = scale * (per_class + jax.random.normal(k_row, h.shape, h.dtype))
    moved = _project_rows(h + (jnp.abs(noise) if relu else noise), h, relu)
    new = {**params, "H": jnp.where(flag & classes[labels][:, None], moved, h)}
    # Fresh Adam moments: the old second moments are tuned to the gradients before the move
    # and would damp the (small) escape gradients for ~1/(1 - b2) steps.
    fresh = opt.init(new)
    return new, jax.tree.map(lambda a, b: jnp.where(flag & reset, a, b), fresh, opt_state)

  perturb = jax.jit(lambda state, flags, key, scale, reset, classes, labels: _over_seeds(
      perturb_one, num_seeds, in_axes=(0, 0, 0, 0, 0, 0, None))(
          state, flags, jax.random.split(key, flags.shape[0]), scale, reset, classes, labels))

  # Per-anchor certificate (full-batch UFM+ SCL): every anchor term is at least its value at
  # an OF, log(n_c - 1 + (n - n_c) e^{-1/tau}) in the loss's shifted form (the proof of
  # Theorem 1 bounds each anchor separately), so the excess of a class's anchors over their
  # bounds says which classes hold a spurious stationary point up.
  anchor_bound = jnp.asarray(np.log(np.maximum(sizes - 1, 1e-300) + (n - sizes) * np.exp(
      -1.0 / problem.tau))[problem.labels] * (sizes[problem.labels] >= 2), dtype)

  def class_excess_one(h, labels, anchor_bound):
    terms = losses.supcon_loss(h, labels, temperature=problem.tau, reduction="none",
                               block_size=block_size)
    return jax.ops.segment_sum(terms - anchor_bound, labels, num_segments=k)

  class_excess = jax.jit(_over_seeds(class_excess_one, num_seeds, in_axes=(0, None, None)))

  def shapes_one(params, labels):
    """CE: the normalised Gram matrices G / ||G||_F of the class means of H and of W."""
    means = jax.ops.segment_sum(params["H"], labels, num_segments=k)
    grams = [x @ x.T for x in (means, params["W"])]
    return jnp.stack([g / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(dtype).tiny)
                      for g in grams])

  shapes = jax.jit(_over_seeds(shapes_one, num_seeds, in_axes=(0, None)))
  geometry_tol = options.resolved_geometry_tol(problem.dtype)
  previous_shapes = None

  evaluate = jax.jit(_over_seeds(objective, num_seeds,
                                 in_axes=(0, None, None, None, None, None, None)))

  def scl_float64_one(h, e_idx, e_mask, labels):
    """The true SCL objective in float64 of the rows renormalised in float64."""
    h = h / jnp.linalg.norm(h, axis=1, keepdims=True)
    ones = jnp.ones((k,), h.dtype)
    if e_idx is None:
      return _scl_batch_loss(h, labels, None, None, problem.tau, ones, 0.0, block_size)
    return jax.lax.scan(lambda acc, xs: (acc + _scl_batch_loss(
        h, labels, xs[0], xs[1], problem.tau, ones, 0.0, block_size), None),
        jnp.zeros((), h.dtype), (e_idx, e_mask))[0]

  scl_float64 = jax.jit(_over_seeds(scl_float64_one, num_seeds,
                                    in_axes=(0, None, None, None)))

  def measure_float64(h, e_idx, e_mask):
    """SCL in float32: the objective the final phase reports and certifies, in float64. The
    float32 arithmetic errs by about eps / tau per anchor, as much as the gap of some
    spurious stationary points (K = 20, classes of 10 and 2 rows: 2.9e-4 at dist_of 7e-3)."""
    with jax.enable_x64(True):
      args = [None if a is None else np.asarray(a) for a in (e_idx, e_mask)]
      return np.asarray(scl_float64(np.asarray(h, np.float64), *args, np.asarray(problem.labels,
                                                                              np.int32)),
                        np.float64)

  keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
  state = jax.vmap(init)(keys)
  steps_done = np.zeros(num_seeds, np.int64)
  start = time.perf_counter()
  step = 0
  final_epoch = 0
  key = jax.random.PRNGKey(10_000 + problem.seed)
  certifiable = is_scl and relu
  rtol = options.resolved_rtol(problem.dtype)
  targetable = certifiable and schedule.full
  policy = policy_lib.StallPolicy(
      num_seeds, tol=tol, base_lr=base_lr, kicks=is_scl, certifiable=certifiable,
      max_checks=options.max_checks,
      max_failures=options.max_failures, kick_chunks=options.kick_chunks)
  # Final phase: `best_point` is the point returned per seed (the lowest true objective
  # measured; kicks move the state off it after its measurement), `best_stall` the lowest
  # stall a kick that ends higher goes back to, `kick_classes` the rows a kick moves.
  best_point = best_stall = state
  all_classes = np.ones((num_seeds, k), bool)
  kick_classes = all_classes.copy()
  bounds = {}
  for phase in phases:
    weights = jnp.asarray(phase.mix * np.ones(k) + (1 - phase.mix) * balanced_weights, dtype)
    tau = jnp.asarray(phase.tau, dtype)
    phase_end = step + phase.steps
    lr = np.full(num_seeds, base_lr)
    while step < phase_end and policy.active.any():
      length = min(options.chunk, phase_end - step)
      if phase.final:
        lr = policy.lr
        sparsity = options.kick_sparsity * policy.reward() if relu else np.zeros(num_seeds)
      else:
        sparsity = np.full(num_seeds, phase.sparsity * (phase_end - step) / phase.steps)
      xs = None
      if not schedule.full:
        idx, mask = schedule.steps(step, length)
        xs = (jnp.asarray(idx), jnp.asarray(mask))
      state = run_chunk(state, jnp.asarray(policy.active), xs, labels, tau, weights,
                        jnp.asarray(sparsity, dtype), jnp.asarray(lr, dtype), length)
      step += length
      steps_done[policy.active] = step
      final_epoch = max((step - 1) // schedule.num_batches, 0)
      e_idx = e_mask = None
      if not schedule.full:
        e_idx, e_mask = (jnp.asarray(a) for a in schedule.epoch(final_epoch))
      # Stationarity is judged on the phase's objective without the peaky-rows reward.
      value, grad_rms = evaluate(state[0], e_idx, e_mask, labels, tau, weights,
                                 jnp.zeros((), dtype))
      value, grad_rms = np.asarray(value, np.float64), np.asarray(grad_rms, np.float64)
      measured = state
      if phase.final and is_scl and dtype == jnp.float32:
        value = measure_float64(state[0]["H"], e_idx, e_mask)
      if not phase.final:
        # Warm-up noise, annealed over the phase; fresh Adam moments at its end.
        if phase.noise > 0:
          key, sub = jax.random.split(key)
          ending = step >= phase_end
          scale = 0.0 if ending else phase.noise * (phase_end - step) / phase.steps
          state = perturb(state, jnp.asarray(policy.active), sub,
                          jnp.full(num_seeds, scale, dtype), jnp.full(num_seeds, ending),
                          jnp.asarray(all_classes), labels)
      else:
        noisy, level, ending = policy.noise_plan()
        if noisy.any():
          key, sub = jax.random.split(key)
          state = perturb(state, jnp.asarray(noisy), sub,
                          jnp.asarray(options.perturbation * level, dtype),
                          jnp.asarray(ending), jnp.asarray(kick_classes), labels)
        if certifiable and final_epoch not in bounds:
          bound = problem.of_loss(final_epoch)
          bounds[final_epoch] = (bound, policy_lib.certificate_tolerance(
              bound, _anchors(problem, final_epoch), problem.tau, rtol))
        settled = None
        if not is_scl:
          now = np.asarray(shapes(measured[0], labels), np.float64)
          if previous_shapes is not None:
            change = np.sqrt(np.sum((now - previous_shapes) ** 2, axis=(2, 3))).max(axis=1)
            settled = change <= geometry_tol
          previous_shapes = now
        bound, cert_tol = bounds.get(final_epoch, (None, 0.0))
        decision = policy.update(value, grad_rms, bound, cert_tol, settled)
        if decision.take.any():
          best_point = _select(decision.take, measured, best_point)
        if decision.restore.any():
          state = _select(decision.restore, best_stall, state)
        if decision.save_stall.any():
          best_stall = _select(decision.save_stall, measured, best_stall)
        if decision.kick.any():
          kick_classes = np.where(decision.kick[:, None], all_classes, kick_classes)
          if targetable and decision.targeted.any():
            # A targeted kick moves the classes furthest above their per-anchor bound (at
            # least half the largest excess), the ones a spurious stationary point strands.
            excess = np.asarray(class_excess(state[0]["H"], labels, anchor_bound), np.float64)
            top = excess.max(axis=1, keepdims=True)
            worst = (excess >= 0.5 * top) | (top <= 0)
            kick_classes = np.where((decision.kick & decision.targeted)[:, None], worst,
                                    kick_classes)
          # The kick's first noise comes at once, with fresh Adam moments.
          key, sub = jax.random.split(key)
          state = perturb(state, jnp.asarray(decision.kick), sub,
                          jnp.full(num_seeds, options.perturbation, dtype),
                          jnp.asarray(decision.kick), jnp.asarray(kick_classes), labels)
      if progress is not None:
        best = int(np.nanargmin(value))
        h_best = np.asarray(measured[0]["H"][best])
        means, _ = metrics.class_means(h_best, problem.labels, k)
        progress({"step": step, "phase": phases.index(phase), "final": phase.final,
                  "loss": float(value[best]), "dist_of": metrics.dist_of(means),
                  "pg": float(grad_rms[best])})
  jax.block_until_ready(best_point)
  seconds = time.perf_counter() - start
  params = jax.device_get(best_point[0])
  h = np.asarray(params["H"], np.float64)
  if is_scl:
    # Unit rows in float64: the rows the float64 objective above was measured at.
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
  return SolveResult(
      embeddings=h,
      classifier=None if is_scl else np.asarray(params["W"], np.float64),
      loss=policy.best["loss"], pg_norm=policy.best["pg"], rel_change=policy.best["rel"],
      converged=policy.converged, certified=policy.best["certified"] if certifiable else None,
      certificate_rtol=rtol if certifiable else None,
      certificate_tol=bounds[final_epoch][1] if final_epoch in bounds else None,
      steps=steps_done,
      seconds=seconds, seeds=seeds, block_size=block_size, phases=phases,
      final_epoch=final_epoch)
