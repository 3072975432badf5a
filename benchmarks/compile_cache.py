"""What the persistent compilation cache saves: a resumed run, and the runs of a sweep.

  python -m benchmarks.compile_cache [--epochs 3] [--out runs/bench/compile_cache.json]

Every measurement is the wall time of one `python -m deepnet.main` process on the digits
recipe (``experiments/configs/digits_mlp.py``, ``--epochs`` epochs), with the cache on (a
folder warmed by the first run) and off (``--nocompilation_cache``), in one invocation so that
the ratios share the machine's load:

* ``resume``: the first run's checkpoints after epoch 1 are removed and the same command is
  started again (it resumes from epoch 1 and trains the rest);
* ``same_program``: a second run whose program equals the first's (another subsample of the
  training set: other data, same shapes), as in a sweep over data draws;
* ``other_seed``: a second run with another ``seed``, which the step closes over (its own
  train step; the embedding pass is shared).

Prints ``cache_on / cache_off`` per case; JSON with the seconds goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from geometry import runfiles

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = "experiments/configs/digits_mlp.py"


def _train(workdir: str, cache: str | None, epochs: int, *extra: str) -> float:
  """Seconds of one training process (cache folder ``cache``, or off when None)."""
  argv = [sys.executable, "-m", "deepnet.main", f"--config={CONFIG}", f"--workdir={workdir}",
          f"--config.num_epochs={epochs}", "--config.checkpoint_every_epochs=1",
          "--config.tensorboard=False", *extra]
  argv += [f"--config.compilation_cache_dir={cache}"] if cache else ["--nocompilation_cache"]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"),
             PYTHONPATH=REPO)
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(f"error: training failed: {proc.stderr.strip().splitlines()[-1:]}")
  return seconds


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
  ratios = {case: seconds[f"{case}_on"] / seconds[f"{case}_off"]
            for case in ("resume", "same_program", "other_seed")}
  return {"epochs": epochs, "config": CONFIG, "seconds": seconds, "ratios": ratios,
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
  for key, value in result["seconds"].items():
    print(f"  {key:30s} {value:7.2f} s")
  for case, ratio in result["ratios"].items():
    print(f"  {case}.cache_on_vs_off = {ratio:.3f}")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  runfiles.write_json(args.out, result)
  return 0


if __name__ == "__main__":
  sys.exit(main())
