"""Subprocess side of the fault-injection tests of training (tests/deepnet/test_train_faults*.py).

  python faults_helper.py kill-in-metrics-rewrite WORKDIR 'JSON_OVERRIDES'
      runs the tiny training of deepnet_train_helper.tiny_config(overrides) and SIGKILLs itself
      in the middle of the first write to a file opened for writing whose name contains
      "metrics.jsonl" (the rewrite on resume; appends, mode "a", are left alone);
  python faults_helper.py hold-lock WORKDIR
      takes the workdir's lock, prints "locked", and sleeps until killed.
"""

import builtins
import os
import signal
import sys
import time

import deepnet_train_helper as helper


class _KillMidWrite:
  """A file object whose first write() writes half its data, flushes, and SIGKILLs the
  process: what a power cut or the OOM killer does inside a write."""

  def __init__(self, f):
    self._f = f

  def write(self, data):
    self._f.write(data[:len(data) // 2])
    self._f.flush()
    os.fsync(self._f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    self._f.__enter__()
    return self

  def __exit__(self, *exc):
    return self._f.__exit__(*exc)


def _is_target(name, mode) -> bool:
  return "metrics.jsonl" in os.path.basename(str(name)) and ("w" in mode or "+" in mode)


def install_kill_in_metrics_rewrite() -> None:
  real_open, real_fdopen = builtins.open, os.fdopen

  def patched_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if isinstance(file, (str, bytes, os.PathLike)) and _is_target(os.fsdecode(file), mode):
      return _KillMidWrite(f)
    return f

  def patched_fdopen(fd, mode="r", *args, **kwargs):
    name = os.readlink(f"/proc/self/fd/{fd}")
    f = real_fdopen(fd, mode, *args, **kwargs)
    return _KillMidWrite(f) if _is_target(name, mode) else f

  builtins.open = patched_open
  os.fdopen = patched_fdopen


def main(argv):
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_disable_most_optimizations", True)
  if helper.REPO not in sys.path:
    sys.path.insert(0, helper.REPO)
  if argv[1] == "hold-lock":
    from deepnet import workdir  # pylint: disable=g-import-not-at-top
    workdir.WorkdirLock(argv[2]).acquire()
    print("locked", flush=True)
    while True:
      time.sleep(1)
  if argv[1] == "kill-in-metrics-rewrite":
    import json  # pylint: disable=g-import-not-at-top
    from deepnet import train  # pylint: disable=g-import-not-at-top
    install_kill_in_metrics_rewrite()
    train.train_and_evaluate(helper.tiny_config(json.loads(argv[3])), argv[2])
    return 0
  raise SystemExit(f"unknown mode {argv[1]!r}")


if __name__ == "__main__":
  sys.exit(main(sys.argv))
