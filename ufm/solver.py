r"""A jitted first-order solver for the UFM / UFM+ with SCL, and for the ridge-regularised CE-UFM.

The variables are the free embeddings H (`[n, d]`, one row per example) and, for CE, the
classifier W (`[K, d]`). For SCL the feasible set is the product of unit spheres (UFM), or its
intersection with the non-negative orthant (UFM+, docs/theory.md#ufm). A step is projected
Adam on the tangent part of the gradient (`ufm.kernels`); steps run in `lax.scan` chunks inside
one jitted function, vmapped over seeds, and between chunks this module's host loop measures
the true objective (the full epoch for mini-batches) and its projected-gradient RMS (the
gradient projected onto the tangent cone of the feasible set) and hands them to the stopping
rule `ufm.policy.StallPolicy`. For UFM+ with SCL a stall needs a certificate to stop: the
objective within a relative tolerance of its closed-form lower bound (Theorem 1, or the
per-batch bound), which only global minimizers reach. dist_of is never used to stop.

Finding the global minimizer (UFM+ with SCL). Plain projected first-order methods stall at
spurious stationary points (docs/theory.md#ufm-solver): (i) a class spreads over several
coordinates (a flat direction of the loss), leaving two other classes to share one
coordinate; (ii) a class straddles coordinates held by other classes, or sits on another
class's coordinate, while a coordinate is free: the projection keeps the free coordinate at
exactly zero with exactly zero gradient, and the push towards it is second order
(docs/solver.md). The solver therefore
1. warms up on a problem with the same global minimizers (Theorems 1-2 do not depend on class
   sizes): balanced anchor weights and decaying class-coherent noise
   (`ufm.options.continuation_phases`); by default no term is added to the objective (an
   optional peaky-rows reward, `SolverOptions.sparsity`, would pick the OF among several
   minimizers, docs/solver.md "What the solver optimises"). With many rows per
   class the warm-up is a whole solve of the problem cut to a few rows per class, and every
   row of class c starts the final phase at one of class c's rows of that solve;
2. then runs the true objective; a stall at a point that is not certified triggers a kick:
   class-coherent random noise with fresh Adam moments. Full batch, the kick moves only the
   classes whose anchors lie furthest above their per-anchor bounds (the bound holds anchor by
   anchor); every third kick moves all classes (with the peaky-rows reward only when
   `SolverOptions.kick_sparsity` > 0, 0 by default).
   A kick that ends in a higher stall is undone. Kicks go on until a certified point or the end
   of the budget.
The final phase is always the true problem and is where convergence is checked. The point
returned per seed is the lowest objective measured in it. Starts are random (non-negative for
UFM+); with the default options nothing is initialised at, steered toward or snapped to a
frame, and every phase's objective has the true problem's minimizers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from geometry import metrics
from ufm import kernels as kernels_lib
from ufm import policy as policy_lib
from ufm.kernels import auto_block_size  # noqa: F401  (part of the solver's API)
from ufm.options import Phase
from ufm.options import SolverOptions
from ufm.options import continuation_phases  # noqa: F401  (part of the solver's API)
from ufm.problem import Problem


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


def _cut(labels: np.ndarray, rows: int) -> np.ndarray:
  """Indices of the first min(n_c, rows) rows of every class c."""
  return np.concatenate([np.flatnonzero(labels == c)[:rows]
                         for c in range(int(labels.max()) + 1)])


def _copies(labels: np.ndarray, kept: np.ndarray) -> np.ndarray:
  """For every row, a position in `kept` of a row of the same class, cyclically."""
  source = np.empty(len(labels), np.int64)
  for c in range(int(labels.max()) + 1):
    rows, pos = np.flatnonzero(labels == c), np.flatnonzero(labels[kept] == c)
    source[rows] = pos[np.arange(len(rows)) % len(pos)]
  return source


def solve(problem: Problem, options: SolverOptions = SolverOptions(),
          progress: Callable[[dict], None] | None = None) -> SolveResult:
  """Solves `problem` for `options.seeds` seeds in one vmapped, jitted loop.

  Args:
    problem: the validated problem.
    options: solver options (validated when built).
    progress: optional callback, called after every chunk with a dict of `step`, `phase`,
      `final`, `loss`, `dist_of` and `pg` (of the seed with the lowest loss).

  Returns:
    A `SolveResult`.
  """
  options.check_seeds(problem.seed)
  # float64 needs x64 only inside the solve: a context, so the caller's JAX stays as it was.
  x64 = jax.enable_x64(True) if problem.dtype == "float64" else contextlib.nullcontext()
  with x64:
    return _solve(problem, options, progress)


@dataclasses.dataclass
class _Cursor:
  """Where a solve is: the phase it runs (a field, not a range of step numbers), that phase's
  place in the plan, the steps taken over all phases and the step at which the phase ends."""
  phase: Phase
  index: int
  step: int
  end: int

  @property
  def left(self) -> float:
    """The fraction of the phase still to run (the warm-up's annealed terms scale with it)."""
    return (self.end - self.step) / self.phase.steps


def _chunk_lengths(chunk: int, lifted: bool):
  """The lengths of a phase's chunks. A phase that starts from the cut problem's solve
  (``lifted``) measures its start first (length 0), then runs a tenth of a chunk: a start that
  is already certified and stationary stops there instead of after a whole chunk of the true
  problem's (costly) steps."""
  if lifted:
    yield 0
    yield max(chunk // 10, 1)
  while True:
    yield chunk


def _solve_cut(problem: Problem, options: SolverOptions, phase: Phase, progress):
  """The whole solve (its own warm-up and certificate) of `problem` cut to the first
  min(n_c, phase.rows) rows of each class, in phase.steps steps: (rows kept, result)."""
  kept = _cut(problem.labels, phase.rows)
  cut = dataclasses.replace(problem, labels=problem.labels[kept])
  report = None if progress is None else (
      lambda info: progress({**info, "phase": 0, "phase_name": phase.name, "final": False}))
  return kept, _solve(cut, dataclasses.replace(options, steps=phase.steps, warmup_rows=0,
                                               block_size=None), report)


class _FinalPhase:
  """The final phase's per-seed bookkeeping around `ufm.policy.StallPolicy`: the point to
  return (`best_point`, the lowest true objective measured; kicks move the state off it after
  its measurement), the lowest stall that a kick ending higher goes back to (`best_stall`),
  the classes a kick moves, the bounds per epoch and, for CE, the previous shapes."""

  def __init__(self, problem, options, kernels, schedule, state, policy):
    self.problem, self.options, self.kernels, self.policy = problem, options, kernels, policy
    num_seeds, k = kernels.num_seeds, problem.num_classes
    self.certifiable = problem.loss_kind == "scl" and problem.final_relu
    self.targetable = self.certifiable and schedule.full
    self.rtol = options.resolved_rtol(problem.dtype)
    self.geometry_tol = options.resolved_geometry_tol(problem.dtype)
    self.best_point, self.best_stall = state[0], state   # kicks restore a stall's Adam state
    self.all_classes = np.ones((num_seeds, k), bool)
    self.kick_classes = self.all_classes.copy()
    self.bounds, self.previous_shapes = {}, None
    # Per-anchor bound (full-batch UFM+ SCL): every anchor term is at least its value at an
    # OF, log(n_c - 1 + (n - n_c) e^{-1/tau}) in the loss's shifted form (the proof of
    # Theorem 1 bounds each anchor separately), so the excess of a class's anchors over their
    # bounds says which classes hold a spurious stationary point up.
    sizes, n = np.asarray(problem.sizes, np.float64), problem.num_examples
    self.anchor_bound = jnp.asarray(np.log(np.maximum(sizes - 1, 1e-300) + (n - sizes) * np.exp(
        -1.0 / problem.temperature))[problem.labels] * (sizes[problem.labels] >= 2),
        kernels.dtype)

  def certificate_tol(self, epoch: int):
    """The certificate tolerance of an epoch's bound, None where none was measured."""
    entry = self.bounds.get(epoch if self.problem.reshuffled else 0)
    return None if entry is None else entry[1]

  def step(self, state, measured, value, grad_rms, epoch, labels, rng):
    """Noise of a running kick, the policy's decision, and a new kick; returns the state."""
    policy, kernels, options = self.policy, self.kernels, self.options
    noisy, level, ending = policy.noise_plan()
    if noisy.any():
      rng, sub = jax.random.split(rng)
      state = kernels.perturb(state, noisy, sub, options.perturbation * level, ending,
                              self.kick_classes, labels)
    # The bound changes with the epoch only when the batches are reshuffled.
    epoch = epoch if self.problem.reshuffled else 0
    if self.certifiable and epoch not in self.bounds:
      bound = self.problem.of_loss(epoch)
      self.bounds[epoch] = (bound, policy_lib.certificate_tolerance(
          bound, _anchors(self.problem, epoch), self.problem.temperature, self.rtol))
    settled = None
    if self.problem.loss_kind == "ce":
      now = np.asarray(kernels.shapes(measured[0], labels), np.float64)
      if self.previous_shapes is not None:
        change = np.sqrt(np.sum((now - self.previous_shapes) ** 2, axis=(2, 3))).max(axis=1)
        settled = change <= self.geometry_tol
      self.previous_shapes = now
    bound, cert_tol = self.bounds.get(epoch, (None, 0.0))
    decision = policy.update(value, grad_rms, bound, cert_tol, settled)
    if decision.take.any():
      self.best_point = kernels_lib.select(decision.take, measured[0], self.best_point)
    if decision.restore.any():
      state = kernels_lib.select(decision.restore, self.best_stall, state)
    if decision.save_stall.any():
      self.best_stall = kernels_lib.select(decision.save_stall, measured, self.best_stall)
    if decision.kick.any():
      kick = decision.kick
      self.kick_classes = np.where(kick[:, None], self.all_classes, self.kick_classes)
      if self.targetable and decision.targeted.any():
        # A targeted kick moves the classes furthest above their per-anchor bound (at least
        # half the largest excess), the ones a spurious stationary point strands.
        excess = np.asarray(kernels.class_excess(state[0]["H"], labels, self.anchor_bound),
                            np.float64)
        top = excess.max(axis=1, keepdims=True)
        worst = (excess >= 0.5 * top) | (top <= 0)
        self.kick_classes = np.where((kick & decision.targeted)[:, None], worst,
                                     self.kick_classes)
      # The kick's first noise comes at once, with fresh Adam moments.
      rng, sub = jax.random.split(rng)
      state = kernels.perturb(state, kick, sub, np.full(kick.shape, options.perturbation),
                              kick, self.kick_classes, labels)
    return state, rng


def _solve(problem, options, progress):
  dtype = jnp.float64 if problem.dtype == "float64" else jnp.float32
  n, k = problem.num_examples, problem.num_classes
  is_scl, final_relu = problem.loss_kind == "scl", problem.final_relu
  labels = jnp.asarray(problem.labels, jnp.int32)
  schedule = _Schedule(problem)
  rows = n if schedule.full else schedule.width
  block_size = options.block_size
  if block_size is None and is_scl:
    block_size = auto_block_size(rows, np.dtype(problem.dtype).itemsize, options.seeds)
  if block_size is not None and block_size >= rows:
    block_size = None
  sizes = np.asarray(problem.sizes, np.float64)
  # Anchor weights of the balanced problem: every class's anchors weigh as much in total as
  # the largest class's (n_max / n_c per anchor); the OF minimizes every such weighted sum
  # too (each anchor term is bounded separately in docs/theory.md#batch-bound).
  balanced_weights = sizes.max() / sizes
  seeds = [problem.seed + s for s in range(options.seeds)]
  num_seeds = len(seeds)
  phases = continuation_phases(problem, options)
  kernels = kernels_lib.Kernels(problem, num_seeds, block_size, schedule.num_batches)
  base_lr = options.resolved_lr(problem.loss_kind)
  policy = policy_lib.StallPolicy(
      num_seeds, tol=options.resolved_tol(problem.dtype), base_lr=base_lr, kicks=is_scl,
      certifiable=is_scl and final_relu, max_checks=options.max_checks,
      max_failures=options.max_failures, kick_chunks=options.kick_chunks)

  # A final phase that starts from the cut problem's solve needs no random start of its own.
  keys = jax.vmap(kernels_lib.key)(jnp.asarray(seeds))
  state = None if phases[0].rows else kernels.init(keys)
  steps_done = np.zeros(num_seeds, np.int64)
  start = time.perf_counter()
  step = final_epoch = 0
  rng = kernels_lib.key(10_000 + problem.seed)
  final = None
  lifted = False
  for index, phase in enumerate(phases):
    if phase.rows:
      # Every row of class c starts the final phase at one of class c's rows of the cut
      # problem's solve, with fresh Adam moments.
      kept, cut = _solve_cut(problem, options, phase, progress)
      params = {"H": jnp.asarray(cut.embeddings[:, _copies(problem.labels, kept)], dtype)}
      state = params, jax.vmap(kernels.opt.init)(params)
      step = int(cut.steps.max())
      steps_done[:] = cut.steps
      lifted = True
      continue
    if phase.final:
      final = _FinalPhase(problem, options, kernels, schedule, state, policy)
    at = _Cursor(phase, index, step, step + phase.steps)
    weights = jnp.asarray(phase.mix * np.ones(k) + (1 - phase.mix) * balanced_weights, dtype)
    temperature = jnp.asarray(phase.temperature, dtype)
    lr = np.full(num_seeds, base_lr)
    lengths = _chunk_lengths(options.chunk, lifted)
    lifted = False
    while at.step < at.end and policy.active.any():
      length = min(next(lengths), at.end - at.step)
      if phase.final:
        lr = policy.lr
        sparsity = (options.kick_sparsity * policy.reward() if final_relu
                    else np.zeros(num_seeds))
      else:
        sparsity = np.full(num_seeds, phase.sparsity * at.left)
      if length:
        xs = None if schedule.full else tuple(
            jnp.asarray(a) for a in schedule.steps(at.step, length))
        state = kernels.run_chunk(state, jnp.asarray(policy.active), xs, labels, temperature,
                                  weights, jnp.asarray(sparsity, dtype),
                                  jnp.asarray(lr, dtype), length)
      at.step += length
      steps_done[policy.active] = at.step
      final_epoch = max((at.step - 1) // schedule.num_batches, 0)
      e_idx = e_mask = None
      if not schedule.full:
        e_idx, e_mask = (jnp.asarray(a) for a in schedule.epoch(final_epoch))
      measured = state
      if phase.final or progress is not None:
        # Stationarity is judged on the phase's objective without the peaky-rows reward.
        value, grad_rms = (np.asarray(a, np.float64) for a in kernels.evaluate(
            state[0], e_idx, e_mask, labels, temperature, weights))
      if phase.final:
        if is_scl and dtype == jnp.float32:
          value = kernels.measure_float64(state[0]["H"], e_idx, e_mask)
        state, rng = final.step(state, measured, value, grad_rms, final_epoch, labels, rng)
      elif phase.noise > 0:
        # Warm-up noise, annealed over the phase; fresh Adam moments at its end.
        rng, sub = jax.random.split(rng)
        ending = at.step >= at.end
        scale = 0.0 if ending else phase.noise * at.left
        state = kernels.perturb(state, policy.active, sub, np.full(num_seeds, scale),
                                np.full(num_seeds, ending), np.ones((num_seeds, k), bool),
                                labels)
      if progress is not None:
        best = int(np.nanargmin(value))
        means, _ = metrics.class_means(np.asarray(measured[0]["H"][best]), problem.labels, k)
        progress({"step": at.step, "phase": at.index, "phase_name": phase.name,
                  "final": phase.final, "loss": float(value[best]),
                  "dist_of": metrics.dist_of(means), "pg": float(grad_rms[best])})
    step = at.step
  jax.block_until_ready(final.best_point)
  seconds = time.perf_counter() - start
  params = jax.device_get(final.best_point)
  h = np.asarray(params["H"], np.float64)
  if is_scl:
    # Unit rows in float64: the rows the float64 objective above was measured at.
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
  certifiable = final.certifiable
  return SolveResult(
      embeddings=h,
      classifier=None if is_scl else np.asarray(params["W"], np.float64),
      loss=policy.best["loss"], pg_norm=policy.best["pg"], rel_change=policy.best["rel"],
      converged=policy.converged, certified=policy.best["certified"] if certifiable else None,
      certificate_rtol=final.rtol if certifiable else None,
      certificate_tol=final.certificate_tol(final_epoch),
      steps=steps_done, seconds=seconds, seeds=seeds, block_size=block_size, phases=phases,
      final_epoch=final_epoch)

