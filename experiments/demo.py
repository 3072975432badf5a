"""`make demo`: the main job on embedded defaults, offline, in a few minutes on 2 CPU cores.

  python -m experiments.demo --out runs/demo [--epochs N] [--seeds N|S0,S1,...] [--quick]

Solves UFM+ and UFM for a step-imbalanced problem (K = 10, R = 10, tau = 0.1), trains an MLP
on scikit-learn's digits with the same K and imbalance with SCL with and without the final
ReLU (and with CE), each for seeds 0, 1 and 2 (`--seeds`), then builds the report comparing
them and prints its path. The runs are the experiment `experiments/configs/demo.py`, run by the
sweep runner, so a second call skips finished runs and resumes an interrupted training run.
`--quick` trains 5 epochs (a smoke test); `--epochs N` sets the number of epochs (default: the
digits config's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from experiments import report, spec, sweep
from experiments.configs import demo as demo_config

QUICK_EPOCHS = 5


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.demo",
      description="UFM+ / UFM solves and digits training with and without the final ReLU, "
                  "then the theory-vs-practice report (offline, minutes on a CPU).")
  parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
  parser.add_argument("--epochs", type=int, default=None,
                      help="training epochs (default: the digits config's)")
  parser.add_argument("--seeds", default=None, metavar="N|S0,S1,...",
                      help=f"seeds of every training run: a count or a list "
                           f"(default {demo_config.SEEDS})")
  parser.add_argument("--quick", action="store_true",
                      help=f"a smoke test: {QUICK_EPOCHS} training epochs")
  args = parser.parse_args(argv)
  epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else None)
  if epochs is not None and epochs < 1:
    print("demo: error: --epochs must be >= 1", file=sys.stderr)
    return 2
  try:
    seeds = demo_config.SEEDS if args.seeds is None else spec.parse_seeds(args.seeds)
  except spec.ExperimentError as e:
    print(f"demo: error: {e}", file=sys.stderr)
    return 2
  exp = demo_config.get_experiment(num_epochs=epochs, seeds=seeds)
  exp["preset"] = "cpu"
  spec.validate(exp)
  out = Path(args.out)
  start = time.time()
  print(f"demo: {len(spec.expand_seeds(exp))} runs into {out} (UFM+ / UFM solves, digits MLP "
        f"with and without ReLU and with CE, {report.seeds_text(spec.seed_list(seeds))}"
        f"{'' if epochs is None else f', {epochs} epochs'})")
  try:
    summary = sweep.run_experiment(exp, out)
  except sweep.SweepError as e:
    print(f"demo: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("demo: interrupted; run the same command again to resume", file=sys.stderr)
    return 130
  print(f"demo: finished in {time.time() - start:.0f} s")
  if summary["failed"]:
    print(f"demo: {len(summary['failed'])} run(s) failed: {', '.join(summary['failed'])} "
          f"(logs in {out / 'logs'})", file=sys.stderr)
  if summary["report"]:
    print(f"report: {summary['report']}")
  return 1 if summary["failed"] or not summary["report"] else 0


if __name__ == "__main__":
  sys.exit(main())
