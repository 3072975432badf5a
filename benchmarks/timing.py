"""Timing and memory helpers shared by the benchmarks.

The machines these run on are shared, so absolute times drift: every benchmark times the
cases it compares in the same run, interleaved in rounds (case A, case B, ..., then again), and
reports ratios of the best round of each case. Wall time is what a user waits for; process CPU
time (all threads) is printed beside it because it is much less sensitive to other jobs
competing for the cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Callable

import jax


@dataclasses.dataclass
class Timing:
  """Best wall and CPU seconds of one call over the timed rounds, and the first-call time."""
  wall: float
  cpu: float
  first_call: float   # compilation + the first run

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def time_interleaved(cases: dict[str, tuple[Callable, tuple]], rounds: int = 3) -> dict[str, Timing]:
  """Times each `fn(*args)` (already jitted) once per round, the cases interleaved.

  The first call of every case (compilation, allocation) is timed separately and excluded.
  """
  first = {}
  for name, (fn, args) in cases.items():
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first[name] = time.perf_counter() - start
  best_wall = {name: float("inf") for name in cases}
  best_cpu = {name: float("inf") for name in cases}
  for _ in range(rounds):
    for name, (fn, args) in cases.items():
      cpu0, wall0 = time.process_time(), time.perf_counter()
      jax.block_until_ready(fn(*args))
      wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
      best_wall[name] = min(best_wall[name], wall)
      best_cpu[name] = min(best_cpu[name], cpu)
  return {name: Timing(best_wall[name], best_cpu[name], first[name]) for name in cases}


def compiled_bytes(fn: Callable, *args) -> int:
  """Peak memory XLA plans for `jit(fn)(*args)`: temporaries + arguments + outputs."""
  analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
  if analysis is None:
    return -1
  return int(analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
             + analysis.output_size_in_bytes)


def peak_rss_bytes() -> int:
  """This process image's peak resident set size so far.

  Linux's VmHWM (/proc/self/status), not getrusage's ru_maxrss: ru_maxrss survives execve,
  so a child started by a process that once held 5 GB reports at least 5 GB.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


def run_child(module: str, args: list[str], timeout: float = 600.0,
              env: dict | None = None) -> dict[str, Any]:
  """Runs `python -m module args...` in a fresh process; returns the JSON of its last line.

  A fresh process per memory case means its peak RSS belongs to that case alone.
  """
  child_env = dict(os.environ)
  child_env.update(env or {})
  cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", module] + list(args), capture_output=True,
                        text=True, timeout=timeout, cwd=cwd, env=child_env)
  if proc.returncode != 0:
    raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}): "
                       f"{proc.stderr.strip().splitlines()[-1:] or proc.stdout[-200:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(num_bytes: float) -> float:
  return num_bytes / 2**20
