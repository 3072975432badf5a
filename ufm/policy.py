r"""The host-side stopping and saddle-check rule of the UFM solver's final phase (no JAX).

After every chunk of optimiser steps the solver measures, per seed, the true objective L and
its projected-gradient RMS g. `StallPolicy.update` turns these numbers into the next per-seed
state and into what the solver does next: keep the measured point as the one to return,
start a kick, send a seed back to its best stall, or stop it.

Certificate (UFM+ with SCL). Every feasible point satisfies L >= L* (Theorem 1 for full batch,
the per-batch bound of Theorem 2 for mini-batches), with equality exactly at the global
minimizers. A point is *certified* when

.. math:: L - L^* \le \mathrm{rtol} \cdot (|L^*| + A / \tau),

A the number of anchor terms in L. The scale is that of the arithmetic: each anchor's
log-sum-exp works with magnitudes up to 1/tau, so rounding errs by about eps / tau per anchor
however small the anchor's own term is (float32 read an exact OF 5.9e-7 |L*| above L* at
K = 20 with classes of 10 and 2 rows).

A stall (relative change of L over a chunk <= tol) at a certified point with g <= tol stops
the seed as converged. A stall at a point that is not certified is a spurious stationary
point: the seed spends its remaining budget on kicks (there is no limit on their number).
Without a certificate (the UFM without ReLU, CE) the rule of `max_checks` / `max_failures`
decides when a stall is accepted.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def certified(loss, bound, tolerance: float):
  """`loss - bound <= tolerance` elementwise (False where there is no bound)."""
  if bound is None:
    return np.zeros(np.shape(loss), bool)
  loss = np.asarray(loss, np.float64)
  return np.isfinite(loss) & (loss - bound <= tolerance)


def certificate_tolerance(bound: float, anchors: int, temperature: float, rtol: float) -> float:
  """The absolute tolerance `rtol * (|L*| + A / tau)` of the certificate (module doc)."""
  return float(rtol * (abs(bound) + anchors / temperature))


@dataclasses.dataclass
class Decision:
  """What the solver does after one chunk (per-seed boolean masks)."""
  take: np.ndarray      # the measured point becomes the point returned for the seed
  restore: np.ndarray   # the seed goes back to its best stall (a kick ended higher)
  save_stall: np.ndarray  # the measured point becomes the seed's best stall
  kick: np.ndarray      # a kick starts now
  targeted: np.ndarray  # ... perturbing only the classes furthest above their bound


class StallPolicy:
  """Per-seed state of the final phase and the rule that updates it (see the module doc).

  Args:
    num_seeds: S.
    tol: the stopping tolerance for the relative objective change and g.
    base_lr: the step size a kick restarts with.
    kicks: whether stalls are checked with kicks at all (SCL).
    certifiable: whether a bound L* exists (UFM+ with SCL).
    max_checks, max_failures: without a certificate, a stall is accepted after
      `max_failures` kicks that did not lower it, or after `max_checks` kicks.
    kick_chunks: chunks a kick lasts.
    global_every: with a certificate, every `global_every`-th kick of a seed perturbs all
      classes instead of the worst ones.
    closing: with a certificate, a chunk that lowers L by more than this fraction of the gap
      L - L* is progress, not a stall.
  """

  def __init__(self, num_seeds: int, *, tol: float, base_lr: float, kicks: bool,
               certifiable: bool, max_checks: int = 8, max_failures: int = 3,
               kick_chunks: int = 3, global_every: int = 3, closing: float = 0.05):
    s = num_seeds
    self.tol, self.base_lr, self.kicks, self.certifiable = tol, base_lr, kicks, certifiable
    self.max_checks, self.max_failures, self.kick_chunks = max_checks, max_failures, kick_chunks
    self.global_every, self.closing = global_every, closing
    self.active = np.ones(s, bool)
    self.converged = np.zeros(s, bool)
    self.prev = np.full(s, np.inf)
    self.rel = np.full(s, np.inf)
    self.lr = np.full(s, base_lr)
    self.kick_left = np.zeros(s, np.int64)
    self.targeted = np.zeros(s, bool)
    self.checks = np.zeros(s, np.int64)
    self.failures = np.zeros(s, np.int64)
    self.stall_loss = np.full(s, np.inf)
    self.best = {"loss": np.full(s, np.inf), "pg": np.full(s, np.inf),
                 "rel": np.full(s, np.inf), "certified": np.zeros(s, bool)}

  def noise_plan(self):
    """Before `update`: seeds perturbed after this chunk, their noise level (1 at a kick's
    start, annealed to 0) and whether their kick ends now (Adam moments reset, no noise)."""
    noisy = self.active & (self.kick_left > 0)
    ending = self.kick_left == 1
    level = np.where(ending, 0.0, self.kick_left / self.kick_chunks)
    return noisy, level, ending

  def reward(self):
    """The peaky-rows reward factor in [0, 1] of the next chunk (annealed over a kick).

    Targeted kicks have none: the reward pulls a row to its largest coordinate, which holds a
    class collapsed onto another class's coordinate in place (seen at K = 50)."""
    return np.where(self.targeted, 0.0, self.kick_left / self.kick_chunks)

  def update(self, loss, pg, bound=None, tolerance=0.0, settled=None) -> Decision:
    """One chunk's numbers -> a `Decision`.

    `loss`, `pg`: per seed; `bound`: L* (None without one) and `tolerance` the certificate's
    absolute tolerance (`certificate_tolerance`).

    `settled` (CE): per seed, whether the geometry stopped changing over the chunk; a stall
    with settled geometry stops like one with g <= tol (the ridge-balanced norms of the CE
    problem creep long after the geometry has settled, which keeps g above tol).

    Must be called after the chunk's noise (from `noise_plan`) has been applied, with the
    numbers measured before it.
    """
    loss, pg = np.asarray(loss, np.float64), np.asarray(pg, np.float64)
    was_active = self.active.copy()
    noisy, _, _ = self.noise_plan()
    drop = self.prev - loss
    rel = np.abs(loss - self.prev) / np.maximum(np.abs(loss), 1e-30)
    self.rel = np.where(was_active, rel, self.rel)
    # A whole chunk that increases the objective means Adam overshoots: halve its step size
    # (not while noise is injected on purpose).
    up = was_active & (self.kick_left == 0) & (loss > self.prev + 1e-10 * np.abs(self.prev))
    self.lr = np.where(up, self.lr * 0.5, self.lr)
    self.prev = np.where(noisy, np.inf, loss)
    self.lr = np.where(noisy, self.base_lr, self.lr)
    self.kick_left = np.where(noisy, self.kick_left - 1, self.kick_left)

    cert = (certified(loss, bound, tolerance) if self.certifiable
            else np.zeros_like(was_active))
    # With a bound, a seed whose chunk closed more than `closing` of its gap is still
    # descending, however small the relative change of a large L: no stall, no kick.
    closing = np.zeros_like(was_active)
    if self.certifiable and bound is not None:
      with np.errstate(invalid="ignore"):
        closing = ~cert & (drop > self.closing * (loss - bound))
    stalled = (was_active & (self.rel <= self.tol) & (self.kick_left == 0) & ~noisy
               & ~closing)
    improved = loss < self.stall_loss - 1e-7 * np.abs(loss)
    worse = stalled & ~improved
    self.failures = self.failures + worse
    # Back to the best stall only after a clearly worse one (an equal stall is the same
    # minimum, still converging).
    restore = worse & (loss > self.stall_loss + 1e-7 * np.abs(self.stall_loss))
    if not self.kicks:
      retry = np.zeros_like(stalled)
    elif self.certifiable:
      retry = stalled & ~cert
    else:
      retry = stalled & (self.checks < self.max_checks) & (
          improved | (self.failures < self.max_failures))
    settled_cert = cert if self.certifiable else np.ones_like(cert)
    stationary = pg <= self.tol
    if settled is not None:
      stationary = stationary | np.asarray(settled, bool)
    stop = stalled & ~retry & stationary & settled_cert
    # A stall that is accepted but whose g is still above tol is Adam jitter: a smaller
    # step size settles it.
    self.lr = np.where(stalled & ~retry & ~stop, self.lr * 0.5, self.lr)
    save_stall = stalled & improved
    self.stall_loss = np.where(save_stall, loss, self.stall_loss)
    self.checks = self.checks + retry
    self.kick_left = np.where(retry, self.kick_chunks, self.kick_left)
    targeted = retry & self.certifiable & (self.checks % self.global_every != 0)
    self.targeted = np.where(retry, targeted, self.targeted)

    # The returned point: the lowest measured objective, or the point the stopping rule
    # accepts when it is as low as that within tol.
    best = self.best["loss"]
    take = was_active & ((loss < best) | (stop & (loss <= best + self.tol * np.abs(best))))
    for name, value in (("loss", loss), ("pg", pg), ("rel", self.rel), ("certified", cert)):
      self.best[name] = np.where(take, value, self.best[name])
    # A seed that stops at a point above one measured earlier returns the earlier point, at
    # which the stopping rule did not hold.
    self.converged = self.converged | (stop & take)
    self.active = was_active & ~stop
    return Decision(take=take, restore=restore & ~take, save_stall=save_stall, kick=retry,
                    targeted=targeted)
