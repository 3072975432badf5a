"""TensorBoard event files of a training run, written without TensorFlow.

A run with ``config.tensorboard = True`` (the default) writes ``WORKDIR/tensorboard/
events.out.tfevents.*`` beside ``metrics.jsonl``; ``tensorboard --logdir WORKDIR`` (or a folder
of runs) shows them. ``metrics.jsonl`` stays the record that reports and resumes rely on; the
event files repeat its numbers for TensorBoard:

* every epoch e: ``train_loss`` (the mean loss of the epoch's steps, as in metrics.jsonl) and
  ``lr`` (the learning rate of the epoch's last step), at TensorBoard step ``e * S`` (S steps
  per epoch: the optimiser step count after the epoch, the ``step`` of metrics.jsonl);
* at the logged epochs: every number of the metrics.jsonl line (geometry, NCC accuracies, the
  OF floor, timings) under its metrics.jsonl name; lists (Gram matrices, per-class values)
  and flags stay in metrics.jsonl only.

The loss is one scalar accumulated on the device during the epoch, so each epoch costs one
device-to-host copy; the learning rates of all epochs are computed once when the run starts.

Resume: a run started again from the checkpoint of epoch c opens a new event file whose first
event is a ``SessionLog.START`` at step ``c * S + 1``; TensorBoard's loader then drops the
events at or after that step from the files before it (those written after the checkpoint by
the interrupted process), so every step shows once, as in metrics.jsonl.

The records are framed by ``tensorboard``'s own ``RecordWriter`` and are ``tensorboard``'s
``Event`` protos. Its ``EventFileWriter`` is not used because it goes through
``tensorboard.compat.tf``, which imports TensorFlow whenever it is installed; tensorboardX
imports PyTorch whenever that is installed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

SUBDIR = "tensorboard"
# Keys of a metrics.jsonl line that are TensorBoard's axis, not values.
_AXIS_KEYS = ("epoch", "step")


class EventFileWriter:
  """Scalars into one new event file ``LOGDIR/events.out.tfevents.<time>.<host>.<pid>``.

  ``purge_step``: TensorBoard hides the events of earlier files at steps >= it (a restart).
  """

  def __init__(self, logdir: str, *, purge_step: int | None = None):
    # Imported here: the trainer imports this module whether or not the run writes events.
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    os.makedirs(logdir, exist_ok=True)
    # TensorBoard reads the files of a folder in name order: the time stamp keeps a restart's
    # file after the files it supersedes.
    name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(logdir, name)
    self._records = record_writer.RecordWriter(open(self.path, "wb"))
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    if purge_step is not None:
      self._write(event_pb2.Event(
          wall_time=time.time(), step=int(purge_step),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    self.flush()

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())

  def scalars(self, step: int, values: Mapping[str, float]) -> None:
    """One event holding ``values`` (tag -> number) at ``step``."""
    summary = self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()])
    self._write(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.flush()
      self._records.close()


def epoch_learning_rates(lr_schedule: Callable[[Any], Any], steps_per_epoch: int,
                         num_epochs: int) -> np.ndarray:
  """``lr_schedule(e * S - 1)`` for e = 1 .. E (the lr of each epoch's last step), in one
  device computation."""
  last_steps = jnp.arange(1, num_epochs + 1, dtype=jnp.int32) * steps_per_epoch - 1
  return np.asarray(jax.jit(jax.vmap(lr_schedule))(last_steps), np.float64)


def scalar_metrics(record: Mapping[str, Any]) -> dict[str, float]:
  """The finite numbers of a metrics.jsonl line (not its axis keys, flags, lists or nulls)."""
  out = {}
  for key, value in record.items():
    if key in _AXIS_KEYS or isinstance(value, (bool, np.bool_)):
      continue
    if isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
      out[key] = float(value)
  return out


class TrainingEvents:
  """The training loop's side of the event files (see the module docstring)."""

  def __init__(self, workdir: str, *, lr_schedule, steps_per_epoch: int, num_epochs: int,
               start_epoch: int = 0):
    self.steps_per_epoch = int(steps_per_epoch)
    self.learning_rates = epoch_learning_rates(lr_schedule, self.steps_per_epoch, num_epochs)
    purge = start_epoch * self.steps_per_epoch + 1 if start_epoch > 0 else None
    self.writer = EventFileWriter(os.path.join(workdir, SUBDIR), purge_step=purge)

  @classmethod
  def for_run(cls, setup, start_epoch: int) -> "TrainingEvents | None":
    """The events of the run of ``setup`` (a ``deepnet.run_setup.RunSetup``), or None when
    ``config.tensorboard`` is off, this is not process 0, the run has no epoch left, or
    tensorboard is not installed (with a warning)."""
    if (not bool(setup.config.tensorboard) or jax.process_index() != 0
        or start_epoch >= setup.num_epochs):
      return None
    if importlib.util.find_spec("tensorboard") is None:
      # metrics.jsonl holds every number; a broken install costs the event files only.
      print("warning: tensorboard is not installed, so no event files are written (pip "
            "install tensorboard, or pass --config.tensorboard=False)", file=sys.stderr)
      return None
    return cls(setup.workdir, lr_schedule=setup.lr_schedule,
               steps_per_epoch=setup.steps_per_epoch, num_epochs=setup.num_epochs,
               start_epoch=start_epoch)

  def epoch(self, epoch: int, loss_sum, record: Mapping[str, Any] | None = None) -> None:
    """Writes epoch ``epoch``: the metrics.jsonl line ``record`` at a logged epoch, else the
    epoch's loss (``loss_sum`` / S, one device-to-host copy) and learning rate."""
    if record is not None:
      values = scalar_metrics(record)
    else:
      values = {"train_loss": float(loss_sum) / self.steps_per_epoch,
                "lr": float(self.learning_rates[epoch - 1])}
    self.writer.scalars(epoch * self.steps_per_epoch, values)
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()
