"""Time to an orthogonal frame: steps and seconds `ufm solve` needs to reach dist_of < 1e-3.

UFM+ with SCL at tau = 0.1, K classes (default 10), d = K unless --dim, step imbalance R
(--imbalance exp: exponential), full batch, from random starts, one seed per solve (each seed timed alone, as `ufm solve --seed S`
would run it):

  .venv/bin/python -m benchmarks.ufm_time_to_of                      # R = 1, 10, 100, n ~ 3000
  .venv/bin/python -m benchmarks.ufm_time_to_of --runs 100:1000 --seeds 3   # n = 5050
  .venv/bin/python -m benchmarks.ufm_time_to_of --classes 50 --runs 10:20   # K = 50, n = 550
  .venv/bin/python -m benchmarks.ufm_time_to_of --runs 100:1000 --baseline 3b16292

`--baseline REV` also times `ufm/solver.py` as it was at git revision REV (loaded from
`git show`, same problems and seeds, interleaved) and prints the ratio of the times to the OF.

`--runs R:N_MAX,...` picks the problems (n_max rows in each majority class; the minority
classes have n_max / R). The first chunk (100 steps) at which the class means are within
dist_of < 1e-3 of an OF gives `steps_to_of` and `seconds_to_of` (wall seconds from the call,
compilation included); the solve then runs on to its own stopping rule, which never looks at
dist_of. Writes a JSON list of rows to --out and prints a table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from geometry import metrics
from geometry import runfiles
from ufm import problem as problem_lib
from ufm import solver as solver_lib

THRESHOLD = 1e-3


def parse_runs(text: str) -> list[tuple[int, int]]:
  try:
    runs = [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]
    assert runs and all(len(r) == 2 and r[0] >= 1 and r[1] >= r[0] for r in runs)
  except (ValueError, AssertionError):
    raise SystemExit(f"error: --runs must look like 1:300,100:600 (R:N_MAX, N_MAX >= R), "
                     f"got {text!r}") from None
  return runs


def load_baseline(revision: str):
  """The solver of a git revision, as a module with its own `problem` module: every module of
  `ufm/` as it was at REV (loaded from `git show` into a package of their own; `geometry`
  resolves in this tree)."""
  import importlib
  import subprocess
  import tempfile
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  folder = tempfile.mkdtemp(prefix="ufm_baseline_")
  package = os.path.join(folder, "ufm_baseline")
  os.makedirs(package)
  open(os.path.join(package, "__init__.py"), "w").close()
  try:
    listing = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:ufm"], cwd=root,
                             check=True, capture_output=True, text=True).stdout.split()
  except (OSError, subprocess.CalledProcessError) as e:
    raise SystemExit(f"error: cannot list ufm/ at {revision!r}: "
                     f"{getattr(e, 'stderr', '') or e}".strip()) from None
  names = [f[:-3] for f in listing if f.endswith(".py") and f != "__init__.py"]
  for name in names:
    try:
      source = subprocess.run(["git", "show", f"{revision}:ufm/{name}.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
      raise SystemExit(f"error: cannot read ufm/{name}.py at {revision!r}: "
                       f"{getattr(e, 'stderr', '') or e}".strip()) from None
    source = source.replace("from ufm import ", "from ufm_baseline import ").replace(
        "from ufm.", "from ufm_baseline.")
    with open(os.path.join(package, f"{name}.py"), "w") as f:
      f.write(source)
  sys.path.insert(0, folder)
  module = importlib.import_module("ufm_baseline.solver")
  module.problem_module = importlib.import_module("ufm_baseline.problem")
  return module


def time_one(ratio: int, n_max: int, seed: int, dtype: str, steps: int, dim: int = 10,
             classes: int = 10, tau: float = 0.1, solver=solver_lib, kind: str = "step") -> dict:
  """Solves one seed and records when dist_of first drops below THRESHOLD."""
  imbalance = "none" if ratio == 1 else f"{kind}:{ratio}"
  problems = getattr(solver, "problem_module", problem_lib)
  problem = problems.make_problem(
      sizes=problems.sizes_from_recipe(classes, imbalance, n_max), dim=dim, temperature=tau,
      final_relu=True, dtype=dtype, seed=seed)
  hit: dict = {}
  start = time.perf_counter()

  def progress(info):
    # Only the final phase counts: a warm-up solves a different (smaller) problem.
    if "steps_to_of" not in hit and info.get("final", True) and info["dist_of"] < THRESHOLD:
      hit.update(steps_to_of=info["step"], seconds_to_of=time.perf_counter() - start)

  solution = solver.solve(problem, solver.SolverOptions(steps=steps), progress=progress)
  wall = time.perf_counter() - start
  means, _ = metrics.class_means(solution.embeddings[0], problem.labels, classes)
  of_loss = problem.of_loss()
  return {"K": classes, "d": dim, "imbalance": imbalance, "R": ratio, "n_max": n_max,
          "n": problem.num_examples,
          "seed": seed, "dtype": dtype, "solver": getattr(solver, "__name__", "ufm.solver"),
          "steps_to_of": hit.get("steps_to_of"), "seconds_to_of": hit.get("seconds_to_of"),
          "final_dist_of": metrics.dist_of(means),
          "final_gap": float(solution.loss[0] - of_loss) / abs(of_loss),
          "converged": bool(solution.converged[0]),
          # None for a solver without a certificate (a --baseline before it existed).
          "certified": (None if getattr(solution, "certified", None) is None
                        else bool(solution.certified[0])),
          "steps": int(solution.steps[0]),
          "seconds": wall, "block_size": solution.block_size}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--runs", default="1:300,10:550,100:600",
                      help="R:N_MAX problems, comma-separated (default: n about 3000 each)")
  parser.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 per problem")
  parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
  parser.add_argument("--steps", type=int, default=20000, help="step budget per seed")
  parser.add_argument("--classes", type=int, default=10, help="K (default 10)")
  parser.add_argument("--dim", type=int, default=None, help="d (default K)")
  parser.add_argument("--imbalance", choices=("step", "exp"), default="step",
                      help="the imbalance recipe of every R > 1 (default step)")
  parser.add_argument("--baseline", default=None,
                      help="also time ufm/solver.py at this git revision, interleaved")
  parser.add_argument("--out", default=os.path.join("runs", "bench", "time_to_of.json"))
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.steps < 1 or args.classes < 2:
    raise SystemExit("error: --seeds and --steps must be at least 1, --classes at least 2")
  dim = args.classes if args.dim is None else args.dim
  if dim < args.classes:
    raise SystemExit(f"error: --dim {dim} < K = {args.classes} (UFM+ needs d >= K)")
  solvers = [solver_lib] + ([load_baseline(args.baseline)] if args.baseline else [])
  runs = parse_runs(args.runs)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  rows = []
  print(f"{'K':>4s} {'R':>4s} {'n':>6s} {'seed':>4s} {'solver':>8s} | {'steps to OF':>11s} "
        f"{'s to OF':>8s} | {'final dist_of':>13s} {'rel. gap':>9s} {'steps':>6s} {'s':>6s} "
        f"conv cert", flush=True)
  for ratio, n_max in runs:
    for seed in range(args.seeds):
      for solver in solvers:
        row = time_one(ratio, n_max, seed, args.dtype, args.steps, dim=dim,
                       classes=args.classes, solver=solver, kind=args.imbalance)
        row["solver"] = "new" if solver is solver_lib else args.baseline
        rows.append(row)
        # Written after every seed: an interrupted benchmark keeps what it measured.
        runfiles.write_json(args.out, rows)
        to_of = ("never", "") if row["steps_to_of"] is None else (
            str(row["steps_to_of"]), f"{row['seconds_to_of']:.1f}")
        print(f"{args.classes:4d} {ratio:4d} {row['n']:6d} {seed:4d} {row['solver']:>8s} | "
              f"{to_of[0]:>11s} {to_of[1]:>8s} | {row['final_dist_of']:13.2e} "
              f"{row['final_gap']:9.1e} {row['steps']:6d} {row['seconds']:6.1f} "
              f"{row['converged']} {'-' if row['certified'] is None else row['certified']}",
              flush=True)
    for name in [r["solver"] for r in rows[-len(solvers):]]:
      done = [r for r in rows if (r["R"], r["n_max"], r["solver"]) == (ratio, n_max, name)]
      reached = [r for r in done if r["seconds_to_of"] is not None]
      worst = max((r["seconds_to_of"] for r in reached), default=float("nan"))
      print(f"  {name}: K={args.classes} R={ratio} n={done[0]['n']}: {len(reached)}/{len(done)} "
            f"seeds reached dist_of < {THRESHOLD:g}; slowest {worst:.1f} s to the OF, "
            f"slowest stop {max(r['seconds'] for r in done):.1f} s", flush=True)
    if len(solvers) > 1:
      pairs = [(a, b) for a, b in zip(rows[-2 * args.seeds::2], rows[-2 * args.seeds + 1::2])]
      ratios = [b["seconds"] / a["seconds"] for a, b in pairs]
      print(f"  time to stop, {args.baseline} / new: "
            + ", ".join(f"{x:.2f}" for x in ratios), flush=True)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
