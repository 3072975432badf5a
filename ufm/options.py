"""The UFM solver's options and its phase plan, validated in one place (no JAX).

`SolverOptions` checks its own values when it is built (a `ProblemError` with one line per bad
value, which the CLI prints), so the CLI builds it before JAX starts and the solver never sees
a bad one. `continuation_phases` turns a problem and the options into the phases a solve runs
(docs/solver.md "Phases").
"""

from __future__ import annotations

import dataclasses
import math

from ufm.problem import Problem
from ufm.problem import ProblemError
from ufm.problem import SEED_MAX


# The defaults of the convergence tolerance (by precision) and of Adam's step size (by loss),
# read by `SolverOptions` and by the ``ufm solve`` help text.
DEFAULT_TOL = {"float64": 1e-9, "float32": 1e-5}
DEFAULT_LR = {"scl": 1e-2, "ce": 5e-2}


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
    continuation: for UFM+ SCL, warm up on a class-balanced problem with the same minimizers
      (Theorems 1-2) before the true one.
    seeds: number of seeds solved in one vmapped call (seeds problem.seed, +1, ...).
    warmup_steps: UFM+ SCL: steps of the warm-up phase (at most a quarter of the budget).
    warmup_rows: UFM+ SCL, full batch: when a class has more rows, the warm-up is a whole
      solve (warm-up, final phase, certificate) of the problem cut to the first
      min(n_c, warmup_rows) rows of each class, in at most half the budget; its minimizers
      are the true problem's (Theorem 1 does not depend on the class sizes), and every row of
      class c starts the final phase at one of class c's rows of that solve. 0: the warm-up
      runs on all rows.
    sparsity: UFM+ SCL warm-up: weight s of a peaky-rows reward s ||h_i||_4^4 / tau subtracted
      from the objective, annealed to 0 over the warm-up. 0 (the default): the warm-up adds
      no term. The reward changes where a solve ends among several minimizers: the canonical
      OF maximizes it, so on the C2-violating schedule (experiments/schedules/c2_violation.json,
      8 seeds) s = 0.3 put 4 seeds at the OF and s = 0 none (docs/solver.md "What the solver
      optimises").
    kick_chunks: length (in chunks) of a saddle-check kick.
    kick_sparsity: UFM+: peaky-rows reward at the start of a kick that moves all classes,
      annealed to 0 over it; 0 (the default): kicks add no term, only noise. It can break the
      flat direction of a class spread over coordinates that no other class uses
      (a majority class on (0.73 e_a + 0.69 e_b) while a minority class straddles four
      occupied coordinates, docs/solver.md "Stall patterns at K = 10").
    max_failures: SCL without a certificate: kicks that fail to lower a stall before it is
      accepted (a minority class straddling three occupied coordinates while one is free can
      need three, docs/solver.md).
    max_checks: SCL without a certificate: at most this many saddle checks (perturb a
      stationary point and re-converge) per seed.
    perturbation: the saddle check's noise scale (per entry, rows of norm 1).
    geometry_tol: CE: the geometry has settled when the normalised Gram matrices of the class
      means and of W change by at most this (Frobenius) over a chunk; None picks 1e-6
      (float64) or 1e-4 (float32). A stall with settled geometry is converged.
    certificate_rtol: UFM+ SCL: a point is certified when its objective L is within
      rtol * (|L*| + anchors / tau) of the bound L* (Theorem 1, or the per-batch bound;
      `ufm.policy`); None picks 1e-9 (float64) or 1e-8 (float32 solves, whose objective is
      measured in float64: a float32 OF has exact zeros and ones).
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
  warmup_rows: int = 32
  sparsity: float = 0.0
  kick_chunks: int = 3
  kick_sparsity: float = 0.0
  max_failures: int = 3
  perturbation: float = 1e-2
  certificate_rtol: float | None = None
  geometry_tol: float | None = None

  def __post_init__(self):
    for name in ("steps", "seeds", "chunk"):
      if getattr(self, name) < 1:
        raise ProblemError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if self.block_size is not None and self.block_size < 1:
      raise ProblemError(f"--block-size must be >= 1, got {self.block_size}")
    for flag, value in (("--tol", self.tol), ("--lr", self.learning_rate)):
      if value is not None and not (math.isfinite(value) and value > 0):
        raise ProblemError(f"{flag} must be a finite number > 0, got {value}")
    if self.warmup_rows < 0 or self.warmup_steps < 0:
      raise ProblemError("warmup_rows and warmup_steps must be >= 0")

  def check_seeds(self, first_seed: int) -> None:
    """The seeds first_seed .. first_seed + seeds - 1 must all be valid PRNG seeds."""
    last_seed = first_seed + self.seeds - 1
    if 0 <= first_seed <= SEED_MAX < last_seed:   # a bad first seed alone: make_problem
      raise ProblemError(f"--seed {first_seed} with --seeds {self.seeds}: the seeds "
                         f"{first_seed}..{last_seed} must lie in [0, {SEED_MAX}]")

  def resolved_lr(self, loss_kind: str) -> float:
    if self.learning_rate is not None:
      return float(self.learning_rate)
    return DEFAULT_LR["ce" if loss_kind == "ce" else "scl"]

  def resolved_tol(self, dtype: str) -> float:
    return _by_dtype(self.tol, dtype, **DEFAULT_TOL)

  def resolved_geometry_tol(self, dtype: str) -> float:
    return _by_dtype(self.geometry_tol, dtype, float64=1e-6, float32=1e-4)

  def resolved_rtol(self, dtype: str) -> float:
    return _by_dtype(self.certificate_rtol, dtype, float64=1e-9, float32=1e-8)


@dataclasses.dataclass(frozen=True)
class Phase:
  """One phase: temperature, anchor-weight mix (0 = balanced, 1 = true), steps; `rows` > 0
  makes it the solve of the problem cut to min(n_c, rows) rows per class."""
  temperature: float
  mix: float
  steps: int
  sparsity: float = 0.0
  noise: float = 0.0
  final: bool = False
  rows: int = 0

  @property
  def name(self) -> str:
    """What the phase is: "cut" (the warm-up on the problem cut to `rows` rows per class),
    "warm-up" (on the whole problem) or "final" (the true problem, where convergence is
    checked)."""
    return "cut" if self.rows else "final" if self.final else "warm-up"


def objective_statement(problem: Problem, options: SolverOptions) -> dict:
  """What a solve optimises, for result.json: the terms any phase adds to the objective.

  The final phase always measures and certifies the true objective. The warm-up's balanced
  anchor weights n_max / n_c keep the minimizer set (every anchor term is bounded separately,
  docs/theory.md#batch-bound); a peaky-rows reward does not, and is listed when its weight is
  non-zero.
  """
  relu_scl = problem.loss_kind == "scl" and problem.final_relu
  plan = continuation_phases(problem, options)
  warmup = [p for p in plan if not p.final]
  added = []
  if any(p.sparsity > 0 for p in warmup):
    added.append(f"warm-up: -{options.sparsity} * sum_i w_i ||h_i||_4^4 / tau, annealed to 0")
  if relu_scl and options.kick_sparsity > 0:
    added.append(f"kicks on all classes: -{options.kick_sparsity} * sum_i ||h_i||_4^4 / tau, "
                 "annealed to 0 over the kick")
  return {"final_phase": "the true objective (loss_form), unweighted, nothing added",
          "added_terms": added,
          "warmup_anchor_weights": "n_max / n_c (same minimizers)" if warmup else None,
          "warmup_sparsity": options.sparsity if warmup else 0.0,
          "kick_sparsity": options.kick_sparsity if relu_scl else 0.0}


def continuation_phases(problem: Problem, options: SolverOptions) -> list[Phase]:
  """The phase plan; the last phase is always the true problem and takes the remaining budget."""
  plan = []
  temperature = problem.temperature
  if options.continuation and problem.loss_kind == "scl" and problem.final_relu:
    # Warm-up on a problem with the same global minimizers as the true one but a kinder
    # landscape (Theorems 1-2: UFM+ minimizers do not depend on the class sizes):
    # - balanced anchor weights (n_max / n_c), so minority classes push as hard as majority
    #   ones and claim their own coordinates early;
    # - optionally (sparsity > 0; off by default) a reward sparsity * ||h_i||_4^4 / tau for
    #   peaky rows. The canonical OF (rows e_c) maximizes it for every row while minimizing the
    #   loss, so it stays a global minimizer, but the reward also picks the OF among other
    #   minimizers where there are several (a C2-violating schedule), which is why it is off;
    # - decaying class-coherent noise, so no coordinate is abandoned at exactly zero.
    # With many rows per class, all of this runs on the cut problem, whose steps cost a
    # fraction of the true problem's (the n x n similarities dominate a step).
    warmup = min(options.warmup_steps, options.steps // 4)
    rows = options.warmup_rows if problem.full_batch else 0
    if rows and max(problem.sizes) > rows:
      plan.append(Phase(temperature, 0.0, options.steps // 2, sparsity=options.sparsity,
                        noise=options.perturbation, rows=rows))
    elif warmup > 0:
      plan.append(Phase(temperature, 0.0, warmup, sparsity=options.sparsity,
                        noise=options.perturbation))
  used = sum(p.steps for p in plan)
  plan.append(Phase(temperature, 1.0, max(options.steps - used, 1), final=True))
  return plan
