"""`ufm advise`: the chance that reshuffled drop-last batches satisfy C1/C2 (geometry.advisor).

  ufm advise --classes 10 --imbalance step:100 --n-max 5000 --batch-size 128 --views 2
  ufm advise --sizes 100,100,10,10 --batch-size 50 --views 1 --binding 1 --trials 1000

JSON on stdout (``geometry.advisor.advise``), a short summary on stderr; ``docs/batching.md``
explains every field.
"""

from __future__ import annotations

import argparse
import sys

from geometry import advisor, runfiles
from ufm import problem as problem_lib
from ufm.problem import ProblemError


def add_parser(sub) -> argparse.ArgumentParser:
  """Registers the ``advise`` subcommand on the ``ufm`` subparsers."""
  p = sub.add_parser("advise", help="chance that reshuffled batches meet C1/C2, and the binding "
                                    "needed (JSON on stdout)")
  p.add_argument("--sizes", help="explicit class sizes, e.g. 5000,5000,50,50")
  p.add_argument("--classes", type=int, help="number of classes K (with --imbalance, --n-max)")
  p.add_argument("--imbalance", default="none", help="none, step:R or exp:R")
  p.add_argument("--n-max", type=int, help="size of the largest class for --classes")
  p.add_argument("--rho", type=float, default=0.5,
                 help="fraction of majority classes for step imbalance (default 0.5)")
  p.add_argument("--batch-size", type=int, required=True,
                 help="examples per batch before binding rows and views (drop-last)")
  p.add_argument("--views", type=int, default=2, choices=(1, 2),
                 help="rows per example in a batch (default 2, the two-view training)")
  p.add_argument("--binding", type=int, default=0,
                 help="binding examples per class appended to every batch (default 0)")
  p.add_argument("--trials", type=int, default=advisor.DEFAULT_TRIALS,
                 help=f"Monte Carlo runs (default {advisor.DEFAULT_TRIALS})")
  p.add_argument("--max-epochs", type=int, default=advisor.DEFAULT_MAX_EPOCHS,
                 help="epochs simulated per run before it counts as not certified "
                      f"(default {advisor.DEFAULT_MAX_EPOCHS})")
  p.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default 0)")
  return p


def _sizes(args) -> list[int]:
  if args.sizes is not None and args.classes is not None:
    raise ProblemError("give either --sizes or --classes, not both")
  if args.sizes is not None:
    return problem_lib.parse_sizes(args.sizes)
  if args.classes is None:
    raise ProblemError("give the class sizes: --sizes 500,500,50,50 or --classes K "
                       "--imbalance step:R --n-max N")
  if args.n_max is None:
    raise ProblemError("--classes needs --n-max (the size of the largest class)")
  return problem_lib.sizes_from_recipe(args.classes, args.imbalance, args.n_max, args.rho)


def run(args) -> int:
  """The ``advise`` subcommand: bad input raises ProblemError (one line, exit 2)."""
  sizes = _sizes(args)
  n = sum(sizes)
  if not 2 <= args.batch_size <= n:
    raise ProblemError(f"--batch-size must be between 2 and the {n} examples, got "
                       f"{args.batch_size}")
  if args.binding < 0:
    raise ProblemError(f"--binding must be a non-negative integer, got {args.binding}")
  if args.binding > min(sizes):
    raise ProblemError(f"--binding {args.binding}: class {sizes.index(min(sizes))} has only "
                       f"{min(sizes)} example(s)")
  for name in ("trials", "max_epochs"):
    if getattr(args, name) < 1:
      raise ProblemError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  advice = advisor.advise(sizes, args.batch_size, views=args.views, binding=args.binding,
                          trials=args.trials, seed=args.seed, max_epochs=args.max_epochs)
  print(runfiles.dumps(advice, indent=None))
  print(advisor.summary(advice), file=sys.stderr)
  return 0
