"""What the persistent compilation cache saves: a resumed run, and the runs of a sweep.

  python -m benchmarks.compile_cache [--epochs 3] [--out runs/bench/compile_cache.json]

Every measurement is one `python -m deepnet.main` process on the digits recipe (``experiments/configs/digits_mlp.py``, ``--epochs`` epochs), with the cache on (a
folder warmed by the first run) and off (``--nocompilation_cache``), in one invocation so that
the ratios share the machine's load:

* ``resume``: the first run's checkpoints after epoch 1 are removed and the same command is
  started again (it resumes from epoch 1 and trains the rest);
* ``same_program``: a second run whose program equals the first's (another subsample of the
  training set: other data, same shapes), as in a sweep over data draws;
* ``other_seed``: a second run with another ``seed``, an argument of the step (so every
  program is shared).

Each process reports its wall-clock seconds, its CPU seconds (user + system), which the other
jobs of a loaded machine disturb less, and, from ``jax.monitoring``, the seconds XLA spent
compiling or loading programs from the cache and the cache's hits and misses. Prints
``cache_on / cache_off`` of the three per case; JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from geometry import runfiles

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = "experiments/configs/digits_mlp.py"


# The child: deepnet.main with a listener on JAX's compile events (the time XLA spends
# compiling or loading from the cache, and the cache's hits and misses).
_CHILD = """
import json, sys
import jax.monitoring
totals = {}
def duration(event, seconds, **kwargs):
  totals[event] = totals.get(event, 0.0) + seconds
def count(event, **kwargs):
  totals[event] = totals.get(event, 0) + 1
jax.monitoring.register_event_duration_secs_listener(duration)
jax.monitoring.register_event_listener(count)
from deepnet import main
code = main.main(["deepnet.main"] + sys.argv[1:])
print("COMPILE_EVENTS " + json.dumps(totals), file=sys.stderr)
sys.exit(code)
"""
_EVENTS = {"backend_compile_seconds": "/jax/core/compile/backend_compile_duration",
           "cache_hits": "/jax/compilation_cache/cache_hits",
           "cache_misses": "/jax/compilation_cache/cache_misses"}


def _train(workdir: str, cache: str | None, epochs: int, *extra: str) -> dict:
  """Wall seconds, CPU seconds (user + system) and JAX's compile events of one training
  process (cache folder ``cache``, or off when None)."""
  argv = [sys.executable, "-c", _CHILD, f"--config={CONFIG}", f"--workdir={workdir}",
          f"--config.num_epochs={epochs}", "--config.checkpoint_every_epochs=1",
          "--config.tensorboard=False", *extra]
  argv += [f"--config.compilation_cache_dir={cache}"] if cache else ["--nocompilation_cache"]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
             PYTHONPATH=REPO)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode != 0:
    raise SystemExit(f"error: training failed: {proc.stderr.strip().splitlines()[-1:]}")
  events = json.loads([line for line in proc.stderr.splitlines()
                       if line.startswith("COMPILE_EVENTS ")][-1].split(" ", 1)[1])
  out = {"wall": wall,
         "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
  out.update({key: events.get(name, 0) for key, name in _EVENTS.items()})
  return out


def _drop_checkpoints_after(workdir: str, epoch: int) -> None:
  folder = os.path.join(workdir, "checkpoints")
  for name in os.listdir(folder):
    if name.isdigit() and int(name) > epoch:
      shutil.rmtree(os.path.join(folder, name))


def measure(epochs: int, root: str) -> dict:
  cache = os.path.join(root, "cache")
  first = os.path.join(root, "first")
  seconds = {"first_run_filling_the_cache": _train(first, cache, epochs)}
  for label, use in (("on", cache), ("off", None)):
    _drop_checkpoints_after(first, 1)
    seconds[f"resume_{label}"] = _train(first, use, epochs)
  for label, use in (("on", cache), ("off", None)):
    seconds[f"same_program_{label}"] = _train(os.path.join(root, f"data2_{label}"), use,
                                              epochs, "--config.data.subsample_seed=2")
    seconds[f"other_seed_{label}"] = _train(os.path.join(root, f"seed1_{label}"), use, epochs,
                                            "--config.seed=1")
  cases = ("resume", "same_program", "other_seed")
  ratios = {f"{case}.{kind}": seconds[f"{case}_on"][kind] / seconds[f"{case}_off"][kind]
            for case in cases for kind in ("wall", "cpu", "backend_compile_seconds")}
  return {"epochs": epochs, "config": CONFIG, "runs": seconds, "ratios": ratios,
          "cache_entries": len(os.listdir(cache)), "provenance": runfiles.provenance()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_cache",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--out", default="runs/bench/compile_cache.json")
  args = parser.parse_args(argv)
  if args.epochs < 2:
    print("error: --epochs must be >= 2 (the resume case restarts after epoch 1)",
          file=sys.stderr)
    return 2
  with tempfile.TemporaryDirectory(prefix="compile_cache_") as root:
    result = measure(args.epochs, root)
  for key, run in result["runs"].items():
    print(f"  {key:28s} {run['wall']:7.2f} s wall {run['cpu']:7.2f} s CPU "
          f"{run['backend_compile_seconds']:6.2f} s compiling/loading, cache hits "
          f"{run['cache_hits']} misses {run['cache_misses']}")
  for case, ratio in result["ratios"].items():
    print(f"  {case}.cache_on_vs_off = {ratio:.3f}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  runfiles.write_json(args.out, result)
  return 0


if __name__ == "__main__":
  sys.exit(main())
