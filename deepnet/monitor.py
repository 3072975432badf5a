"""What a training run watches while it runs: its health and its clock.

* Health: after each epoch the loss sum and every parameter are checked on the device in one
  jitted reduction (`health`); a non-finite one stops the run with `Diverged` before anything of
  that epoch is saved (docs/faults_training.md).
* Clock: this session's wall time split into training steps and evaluations (the record's
  ``seconds``, ``train_seconds``, ``eval_seconds``), the time left (`time_left`), and a progress
  line between logged epochs at most every `PROGRESS_EVERY_S` seconds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp

# Between logged epochs, a progress line at most this often (seconds): long runs (CPU) say
# how far they are and how long is left, short ones print no more than their logged epochs.
PROGRESS_EVERY_S = 30.0


class Diverged(RuntimeError):
  """The loss, the parameters or the embeddings became non-finite; nothing of that epoch was
  saved."""


def health(params, loss_sum) -> str | None:
  """None while the epoch's loss and every parameter are finite, else what is not."""
  loss, params_ok = jax.device_get(_finite(params, loss_sum))
  if not math.isfinite(float(loss)):
    return f"loss {float(loss)}"
  return None if bool(params_ok) else "parameters not finite"


@jax.jit
def _finite(params, loss_sum):
  return loss_sum, jnp.all(jnp.asarray([jnp.all(jnp.isfinite(p))
                                        for p in jax.tree.leaves(params)]))


def diverged(workdir: str, lr, epoch: int, problem: str, last_saved: str) -> Diverged:
  """The error of a run that diverged at ``epoch``: what is kept, and what to change."""
  return Diverged(f"diverged at epoch {epoch} ({problem}); nothing of epoch {epoch} was "
                  f"saved: {workdir} keeps {last_saved} and the metrics before epoch "
                  f"{epoch}; lower lr (now {lr})")


def time_left(elapsed: float, epochs_done: int, epochs_left: int) -> str:
  """The time left as ``"ETA 1h02m"``: the mean epoch time of this session,
  elapsed / epochs_done, times epochs_left (evaluations included, as they recur). Under a
  minute ``"ETA 42s"``, under an hour ``"ETA 12m05s"``."""
  seconds = round(elapsed / max(epochs_done, 1) * max(epochs_left, 0))
  if seconds < 60:
    return f"ETA {seconds}s"
  if seconds < 3600:
    return f"ETA {seconds // 60}m{seconds % 60:02d}s"
  return f"ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclasses.dataclass
class Clock:
  """This session's wall time: since the (re)start, in the training steps (compilation in the
  first) and in the evaluations, so that a run's overhead is seconds - train_seconds
  (docs/performance.md); and when the last line was printed."""
  start_epoch: int
  num_epochs: int
  log: Callable[[str], None]
  run_start: float = dataclasses.field(default_factory=time.time)
  last_line: float = dataclasses.field(default_factory=time.time)
  train_seconds: float = 0.0
  eval_seconds: float = 0.0

  @property
  def seconds(self) -> float:
    return time.time() - self.run_start

  def eta(self, epoch: int) -> str:
    """The time left after ``epoch``, from this session's mean epoch time."""
    return time_left(self.seconds, epochs_done=epoch - self.start_epoch,
                     epochs_left=self.num_epochs - epoch)

  def line(self, message: str) -> None:
    self.log(message)
    self.last_line = time.time()

  def progress(self, epoch: int, train_loss: float) -> None:
    """A line between logged epochs, at most every PROGRESS_EVERY_S seconds."""
    if time.time() - self.last_line >= PROGRESS_EVERY_S:
      self.line(f"epoch {epoch:4d}/{self.num_epochs} loss {train_loss:.4f} {self.eta(epoch)}")
