"""SIGTERM and SIGINT as requests to stop at the next step boundary.

A batch scheduler's preemption (SIGTERM) or a Ctrl-C (SIGINT) during training must lose
nothing: ``StopSignals`` turns either signal into a flag that the training loop reads after
every step; the loop then saves a checkpoint, prints one line and raises ``Stopped``, and the
command exits with the shell's code for the signal, 128 + signum (143 for SIGTERM, 130 for
SIGINT). A second signal while the checkpoint is written is noted and ignored, so the save
completes.

During start-up (before the loop runs) there is nothing to save: ``exit_on_signals`` makes
both signals end the process at once with one line.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
  """The run stopped on a signal (after saving what there was to save). A BaseException, like
  KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum

  @property
  def exit_code(self) -> int:
    return 128 + self.signum


def signal_name(signum: int) -> str:
  try:
    return signal.Signals(signum).name
  except ValueError:
    return f"signal {signum}"


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


class StopSignals:
  """Context manager: while active, SIGTERM / SIGINT set ``self.signum`` instead of stopping
  the process. With ``install=False`` the signals get Python's default handlers for the
  duration, and ``requested`` stays False; outside the main thread (where Python cannot
  install handlers) it does nothing.
  """

  def __init__(self, install: bool = True):
    self.signum: int | None = None
    self._install = install
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.signum is None:
      self.signum = signum

  def __enter__(self) -> "StopSignals":
    if _in_main_thread():
      for sig in SIGNALS:
        # Not installed: Python's defaults (SIGINT raises KeyboardInterrupt, SIGTERM ends the
        # process), whatever the start-up handlers were.
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        self._previous[sig] = signal.signal(sig, self._handle if self._install else default)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}


def exit_on_signals() -> None:
  """Makes SIGTERM and SIGINT end the process at once with one line (start-up: nothing is
  written yet). The handler exits with ``os._exit`` rather than raising, because the signal may
  land inside the import of a native extension (jaxlib), which an exception leaves
  half-initialized and which then crashes the interpreter at exit."""
  if not _in_main_thread():
    return

  def handle(signum, frame):  # pylint: disable=unused-argument
    message = (f"error: stopped by {signal_name(signum)} during start-up, before any training "
               "step; nothing to resume from yet\n")
    os.write(2, message.encode())
    os._exit(128 + signum)  # pylint: disable=protected-access

  for sig in SIGNALS:
    signal.signal(sig, handle)
