"""The `ufm` command: solve a UFM / UFM+ problem, or certify a batch schedule (docs/contracts.md).

  ufm solve --classes 10 --imbalance step:10 --n-max 40 --dim 10 --temperature 0.1 --seeds 4 --out runs/ufm
  ufm check-batches experiments/schedules/c1_violation.json --binding 1
  ufm advise --classes 10 --imbalance step:100 --n-max 5000 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import numpy as np

from geometry import runfiles
from geometry.metrics import OF_THRESHOLD
from ufm import __version__
from ufm import outdir
from ufm import advise as advise_lib
from ufm import options as options_lib
from ufm import problem as problem_lib
from ufm.problem import ProblemError
from ufm.result import build_result  # noqa: F401  (the command's record)

DEFAULT_OUT = "runs/ufm"


class _Parser(argparse.ArgumentParser):
  """argparse with a one-line error message and exit status 2: the error, then the usage on
  the same line (argparse's own, when it fits a line; else a pointer to --help)."""

  def error(self, message):
    usage = " ".join(self.format_usage().split())
    if len(usage) > 100:
      usage = f"usage: {self.prog} [options] ({self.prog} --help lists them)"
    self.exit(2, f"{self.prog}: error: {message}; {usage}\n")


class _Renamed(argparse.Action):
  """A flag's old name, accepted for one release with one deprecation line on stderr; the
  help lists only the new name. ``const`` makes it a switch (``--relu`` / ``--no-relu``)."""

  def __init__(self, option_strings, dest, new: str, const=None, **kwargs):
    super().__init__(option_strings, dest, nargs=0 if const is not None else None, const=const,
                     help=argparse.SUPPRESS, **kwargs)
    self.new = new

  def __call__(self, parser, namespace, values, option_string=None):
    print(f"{parser.prog}: {option_string} is deprecated, use {self.new} (the old name is "
          "accepted until the next release)", file=sys.stderr)
    setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


class _RaisingParser(_Parser):
  """The command's parser for `load_config`: a bad argument raises ProblemError."""

  def error(self, message):
    raise ProblemError(message)


def _build_parser(parser_class: type[_Parser] = _Parser) -> argparse.ArgumentParser:
  parser = parser_class(prog="ufm", description=(
      "Solve the unconstrained-features model (UFM / UFM+) with supervised-contrastive or "
      "cross-entropy loss, and certify mini-batch schedules (Kini et al., ICLR 2024)."))
  parser.add_argument("--version", action="version", version=f"ufm {__version__}")
  sub = parser.add_subparsers(dest="command", parser_class=parser_class)
  sub.required = True

  solve = sub.add_parser("solve", help="solve a UFM / UFM+ problem from random starts")
  solve.add_argument("--sizes", help="explicit class sizes, e.g. 500,500,50,50")
  solve.add_argument("--classes", type=int, help="number of classes K (with --imbalance, --n-max)")
  solve.add_argument("--imbalance", default="none", help="none, step:R or exp:R (docs/theory.md#data-protocol)")
  solve.add_argument("--n-max", type=int, help="size of the largest class for --classes")
  solve.add_argument("--rho", type=float, default=0.5, help="fraction of majority classes for step imbalance (default 0.5)")
  solve.add_argument("--dim", type=int, required=True, help="embedding dimension d")
  solve.add_argument("--temperature", type=float, default=0.1,
                     help="the temperature tau of the loss (default 0.1)")
  solve.add_argument("--final-relu", action=argparse.BooleanOptionalAction, default=True,
                     help="UFM+ (non-negative unit rows: features after a final ReLU, the "
                          "default); --no-final-relu is the UFM (unit rows)")
  solve.add_argument("--tau", dest="temperature", type=float, action=_Renamed, new="--temperature")
  solve.add_argument("--relu", dest="final_relu", action=_Renamed, const=True, new="--final-relu")
  solve.add_argument("--no-relu", dest="final_relu", action=_Renamed, const=False,
                     new="--no-final-relu")
  solve.add_argument("--loss", default="scl", choices=problem_lib.LOSSES,
                     help="scl (default), or ce: ridge-regularised CE-UFM with a free classifier")
  solve.add_argument("--lambda-h", type=float, default=5e-4, help="CE ridge weight on H (default 5e-4)")
  solve.add_argument("--lambda-w", type=float, default=5e-4, help="CE ridge weight on W (default 5e-4)")
  solve.add_argument("--batching", default="full",
                     help="full (default), shuffle:B, fixed:B or fixed:FILE (a schedule JSON file)")
  solve.add_argument("--binding", type=int, default=0,
                     help="binding examples per class appended to every batch (default 0)")
  solve.add_argument("--steps", type=int, default=20000,
                     help="step budget per seed, warm-up included (default 20000)")
  solve.add_argument("--tol", type=float, default=None,
                     help="stop when the projected-gradient RMS and the relative objective "
                          "change over a chunk are both below it [default: "
                          f"{options_lib.DEFAULT_TOL['float64']:g} for float64, "
                          f"{options_lib.DEFAULT_TOL['float32']:g} for float32]")
  solve.add_argument("--lr", type=float, default=None,
                     help="Adam step size, halved when a chunk increases the objective "
                          f"[default: {options_lib.DEFAULT_LR['scl']:g} for scl, "
                          f"{options_lib.DEFAULT_LR['ce']:g} for ce]")
  solve.add_argument("--seeds", type=int, default=1, help="number of seeds, solved together in one vmapped call (default 1)")
  solve.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
  solve.add_argument("--dtype", default="float64", choices=problem_lib.DTYPES,
                     help="default float64")
  solve.add_argument("--block-size", type=int, default=None,
                     help="streaming SCL block size [default: automatic, dense when it fits]")
  solve.add_argument("--no-continuation", dest="continuation", action="store_false",
                     help="UFM+ SCL: skip the warm-up phase (balanced anchor weights and noise; "
                          "no term is added to the objective)")
  solve.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
  solve.add_argument("--overwrite", action="store_true",
                     help="replace a result of another problem in --out (its files are removed); "
                          "a result of the same problem is replaced without it")
  solve.add_argument("--quiet", action="store_true", help="no summary on stdout")

  check = sub.add_parser("check-batches", help="print the C1/C2 certificate of a schedule file")
  check.add_argument("file", help='JSON {"labels": [...], "batches": [[...], ...]}')
  check.add_argument("--binding", type=int, default=0,
                     help="binding examples per class appended to every batch")
  advise_lib.add_parser(sub)
  return parser


def load_config(args: Sequence[str], *, base_dir: str | os.PathLike | None = None
                ) -> tuple[problem_lib.Problem, options_lib.SolverOptions]:
  """The problem and the solver options of ``ufm solve ARGS``, checked as the command checks
  them (the command has no config file: its arguments are its config).

  Args:
    args: the arguments after ``solve``, e.g. ``["--sizes", "3,3", "--dim", "2"]``; ``--out``,
      ``--overwrite`` and ``--quiet`` may be among them and change nothing here.
    base_dir: the folder a relative ``--batching fixed:FILE`` is read from (default: the
      working directory); the problem keeps FILE as given.

  Raises:
    ProblemError: one line, for a bad argument as for a bad problem.
  """
  parsed = _build_parser(_RaisingParser).parse_args(["solve", *args])
  return _config_from_args(parsed, base_dir)


def _config_from_args(args, base_dir=None):
  """(problem, options) of parsed ``ufm solve`` arguments: the command's and `load_config`'s."""
  return _problem_from_args(args, base_dir), _options_from_args(args)


def _problem_from_args(args, base_dir=None) -> problem_lib.Problem:
  is_file = args.batching.startswith("fixed:") and not args.batching[6:].lstrip("-").isdigit()
  sizes = None
  if args.sizes is not None and args.classes is not None:
    raise ProblemError("give either --sizes or --classes, not both")
  if args.sizes is not None:
    sizes = problem_lib.parse_sizes(args.sizes)
  elif args.classes is not None:
    if args.n_max is None:
      raise ProblemError("--classes needs --n-max (the size of the largest class)")
    _check_recipe_size(args)
    sizes = problem_lib.sizes_from_recipe(args.classes, args.imbalance, args.n_max, args.rho)
  elif not is_file:
    raise ProblemError("give the class sizes: --sizes 500,500,50,50 or --classes K "
                       "--imbalance step:R --n-max N (or --batching fixed:FILE)")
  _options_from_args(args).check_seeds(args.seed)   # the options validate themselves
  if sizes is not None and args.dim >= 1:
    # Before the labels exist: 10^9 rows would take seconds and gigabytes to build.
    _check_memory(args, sum(sizes), len(sizes))
  problem = problem_lib.make_problem(
      sizes=sizes, dim=args.dim, temperature=args.temperature,
      final_relu=args.final_relu, loss=args.loss,
      lambda_h=args.lambda_h, lambda_w=args.lambda_w, batching=args.batching,
      binding=args.binding, seed=args.seed, dtype=args.dtype, base_dir=base_dir)
  if sizes is None:
    _check_memory(args, problem.num_examples, problem.num_classes,
                  max(len(b) for b in problem.epoch_batches(0)))
  return problem


def _check_recipe_size(args) -> None:
  """The checks a `--classes` recipe allows before its per-class list is built (10^9 classes
  would take seconds and gigabytes): K, n_max, d against K, and the memory of the fewest rows
  the recipe can have (`ufm.memory.fewest_rows`)."""
  from ufm import memory  # pylint: disable=g-import-not-at-top
  if args.classes < 2:
    raise ProblemError(f"need at least 2 classes, got {args.classes}")
  if args.n_max < 1:
    raise ProblemError(f"--n-max must be a positive integer, got {args.n_max}")
  kind, ratio = problem_lib.parse_imbalance(args.imbalance)
  if args.dim >= 1:
    problem_lib.check_dim(args.dim, args.classes, final_relu=args.final_relu,
                          loss=args.loss)
    _check_memory(args, memory.fewest_rows(args.classes, kind, ratio, args.n_max, args.rho),
                  args.classes)


def _options_from_args(args) -> options_lib.SolverOptions:
  return options_lib.SolverOptions(
      steps=args.steps, tol=args.tol, learning_rate=args.lr, block_size=args.block_size,
      continuation=args.continuation, seeds=args.seeds)


def _check_memory(args, rows: int, classes: int, batch_rows: int | None = None) -> None:
  """Refuses a solve that cannot fit in memory (`ufm.memory`), before anything is built."""
  from ufm import memory  # pylint: disable=g-import-not-at-top
  if batch_rows is None:
    kind, _, size = args.batching.partition(":")
    extra = max(args.binding, 0) * classes
    if kind in ("shuffle", "fixed") and size.isdigit():
      batch_rows = int(size) + extra
    elif extra:
      batch_rows = rows + extra
  memory.check_solve(rows, args.dim, seeds=args.seeds, dtype=args.dtype, batch_rows=batch_rows,
                     block_size=args.block_size, loss=args.loss, num_classes=classes)


class _Progress:
  """A live `\\r` progress line on a terminal (stderr); silent otherwise."""

  def __init__(self, problem, of_loss, stream=sys.stderr):
    self.stream = stream
    self.enabled = stream.isatty()
    self.of_loss = of_loss
    self.problem = problem

  def __call__(self, info):
    if not self.enabled:
      return
    gap = "" if self.of_loss is None or not info["final"] else \
        f" gap {info['loss'] - self.of_loss:.3e}"
    phase = "" if info["final"] else f" ({info['phase_name']})"
    self.stream.write(f"\rstep {info['step']:>7d}{phase} loss {info['loss']:.8g}{gap} "
                      f"dist_of {info['dist_of']:.3e} pg {info['pg']:.1e}   ")
    self.stream.flush()

  def close(self):
    if self.enabled:
      self.stream.write("\n")
      self.stream.flush()


def write_outputs(out_dir, problem, solution, result) -> None:
  """run.json (the run descriptor of every run folder), embeddings.npy (best seed),
  labels.npy, classifier.npy (CE), gram.png, then result.json, the completion marker, last
  (`ufm.outdir.commit_outputs`)."""
  best = int(np.nanargmin(solution.loss))
  descriptor = run_record(result)
  files = {"run.json": lambda f: f.write((runfiles.dumps(descriptor) + "\n").encode()),
           "embeddings.npy": lambda f: np.save(f, solution.embeddings[best]),
           "labels.npy": lambda f: np.save(f, problem.labels)}
  if solution.classifier is not None:
    files["classifier.npy"] = lambda f: np.save(f, solution.classifier[best])
  files["gram.png"] = lambda f: _plot_gram(f, result)
  outdir.commit_outputs(out_dir, files, result)


def run_record(result, provenance_of: dict | None = None) -> dict:
  """run.json of a solve (``geometry.runfiles.run_record`` of kind "ufm") from its result.json
  (``result``): the problem's facts in the keys a training run has. The model is the free
  features themselves, d of them per example, normalised; under UFM+ they are constrained
  non-negative, as a ReLU's output is. ``epochs`` counts the solver's steps: its budget and
  the best seed's."""
  problem = result["problem"]
  batching = str(problem["batching"])
  schedule = batching[len("fixed:"):] if batching.startswith("fixed:") else None
  return runfiles.run_record(
      "ufm", result["setup"],
      data={"name": "ufm", "source": {"kind": "class_sizes" if schedule is None else "schedule",
                                      "file": schedule}},
      class_sizes=problem["sizes"],
      model={"name": "ufm+" if problem["final_relu"] else "ufm", "embedding_dim": problem["dim"],
             "relu_before_embedding": bool(problem["final_relu"]),
             "before_embedding": "free_features"},
      loss={"name": problem["loss"],   # CE-UFM has no temperature (lambda_h, lambda_w)
            "temperature": problem["temperature"] if problem["loss"] == "scl" else None},
      batching={"scheme": batching, "batch_size": problem["batch_size"],
                "binding": problem["binding"]},
      seeds=[s["seed"] for s in result["seeds"]],
      epochs={"unit": "steps", "planned": result["solver"]["steps_budget"],
              "reached": result["steps"]},
      extra={"problem": problem}, provenance_of=provenance_of)


def _plot_gram(target, result) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cos = np.asarray(result["cosines"])
  k = len(cos)
  fig, ax = plt.subplots(figsize=(4.8, 4.2))
  image = ax.imshow(cos, vmin=-1, vmax=1, cmap="RdBu_r")
  fig.colorbar(image, ax=ax, fraction=0.046)
  if k <= 12:
    for i in range(k):
      for j in range(k):
        ax.text(j, i, f"{cos[i, j]:.2f}", ha="center", va="center", fontsize=6)
  ax.set_xlabel("class")
  ax.set_ylabel("class")
  ax.set_title(f"class-mean cosines: {result['setup']}\n"
               f"dist_of {result['dist_of']:.2e}, dist_etf {result['dist_etf']:.2e}",
               fontsize=7)
  fig.tight_layout()
  fig.savefig(target, format="png", dpi=120)
  plt.close(fig)


def summary(result, out_dir) -> str:
  """A short human summary of a solve."""
  lines = [f"ufm solve: {result['setup']}"]
  gap = "" if result["gap"] is None else f", gap {result['gap']:.3e}"
  of = "" if result["of_loss"] is None else f" (OF value {result['of_loss']:.8g}{gap})"
  lines.append(f"  loss {result['loss']:.8g}{of}")
  lines.append(f"  dist_of {result['dist_of']:.3e}, dist_etf {result['dist_etf']:.3e}, "
               f"nc1 {result['nc1']:.2e}, mean_cos {result['mean_cos']:.4f}")
  lines.append(f"  {_status_words(result)} after {result['steps']} steps, "
               f"{result['seconds']:.1f} s")
  unseen = (result.get("certificate") or {}).get("rows_in_no_batch", 0)
  if unseen:
    rows = sum(result["problem"]["sizes"])
    lines.append(f"  note: {unseen} of {rows} rows are in no batch of the final "
                 "epoch's schedule, so no loss term sees them: their embeddings are their "
                 "starting points, and the certificate covers the other rows only")
  if result["num_seeds"] > 1:
    if result.get("num_certified") is not None:
      lines.append(f"  certified global minimizers: {result['num_certified']} of "
                   f"{result['num_seeds']} seeds")
    spread = result["spread"]
    lines.append(f"  seeds {result['num_seeds']}: fraction reaching the OF "
                 f"(dist_of < {OF_THRESHOLD:g}) "
                 f"{result['fraction_of']:.2f}, dist_of {spread['dist_of_min']:.2e}.."
                 f"{spread['dist_of_max']:.2e}, loss {spread['loss_min']:.8g}.."
                 f"{spread['loss_max']:.8g}")
  if "classifier" in result:
    lines.append(f"  classifier W: dist_etf {result['classifier']['dist_etf']:.3e}")
  lines.append(f"  wrote {out_dir}/result.json, embeddings.npy, labels.npy, gram.png")
  return "\n".join(lines)


def _status_words(result) -> str:
  """How the solve ended, in words: certified or not (UFM+ SCL), converged or not."""
  if result.get("certified") is None:
    return ("converged (stopping rule met)" if result["converged"]
            else "not converged (step budget spent)")
  tol = result["certificate_tol"]
  if result["certified"]:
    how = "converged" if result["converged"] else "budget spent before the stopping rule"
    return f"certified global minimizer (gap <= {tol:.2e}; {how})"
  return (f"NOT certified: gap above {tol:.2e}, not a global minimizer "
          f"(step budget spent)")


def _check_output_space(out: str, problem, num_seeds: int) -> None:
  """Refuses a solve whose outputs (write_outputs) cannot fit on --out's disk, before solving.

  The bytes: embeddings.npy (n x d of the best seed) and classifier.npy (K x d, CE), labels.npy
  (n int64), result.json (about 2 KiB a seed plus the K x K cosines and Gram as text), and
  gram.png and run.json (a few hundred KiB at most); a quarter more for the margin.
  """
  n, d, k = problem.num_examples, problem.dim, problem.num_classes
  item = np.dtype(problem.dtype).itemsize
  need = n * d * item + n * 8 + (k * d * item if problem.loss_kind == "ce" else 0)
  need += num_seeds * 2048 + 2 * k * k * 32 + (320 << 10)
  try:
    runfiles.check_free_space(out, int(need * 1.25), "the results")
  except OSError as e:
    raise outdir.OutputError(f"{e.strerror}; free some space or choose another --out (nothing "
                             f"was solved, nothing in {out} was changed)") from None


def _cmd_solve(args) -> int:
  problem, options = _config_from_args(args)
  lock = outdir.check_out_dir(args.out, problem.describe(), overwrite=args.overwrite)
  try:
    result = _solve_into(args.out, problem, options)
  finally:
    lock.release()
  if not args.quiet:
    print(summary(result, args.out))
  return 0


def _solve_into(out: str, problem, options) -> dict:
  """Solves `problem` and writes its files into the locked folder `out`; its result.json."""
  _check_output_space(out, problem, options.seeds)
  from ufm import api  # the solve and its record, as ufm.solve makes them
  of_loss = problem.of_loss() if problem.loss_kind == "scl" else None
  progress = _Progress(problem, of_loss if problem.final_relu else None)
  try:
    # Without a terminal nothing is shown, so the solver is spared the progress measurements.
    solved = api.run(problem, options, progress=progress if progress.enabled else None)
  finally:
    progress.close()
  write_outputs(out, problem, solved.solution, solved.fields)
  return solved.fields


def _cmd_check_batches(args) -> int:
  from geometry import batching as batching_lib
  labels, batches = problem_lib.load_schedule(args.file)
  if args.binding < 0:
    raise ProblemError(f"--binding must be a non-negative integer, got {args.binding}")
  if args.binding:
    counts = np.bincount(labels)
    if counts.min() < args.binding:
      raise ProblemError(f"--binding {args.binding}: class {int(counts.argmin())} has only "
                         f"{int(counts.min())} example(s)")
    batches = batching_lib.add_binding(batches, batching_lib.binding_indices(labels, args.binding))
  cert = batching_lib.batch_certificate(labels, batches)
  cert = {"c1_connected": {str(c): bool(v) for c, v in cert["c1_connected"].items()},
          "c2_pairs_missing": [[int(a), int(b)] for a, b in cert["c2_pairs_missing"]],
          "of_unique": bool(cert["of_unique"])}
  print(json.dumps(cert))
  return 0


def main(argv=None) -> int:
  parser = _build_parser()
  args = parser.parse_args(argv)
  try:
    if args.command == "solve":
      return _cmd_solve(args)
    if args.command == "advise":
      return advise_lib.run(args)
    return _cmd_check_batches(args)
  except ProblemError as e:
    print(f"ufm: error: {e}", file=sys.stderr)
    return 2
  except outdir.OutputError as e:
    print(f"ufm: error: {e}", file=sys.stderr)
    return 1
  except BrokenPipeError:
    # The reader went away (e.g. `| head`): nothing left to say.
    sys.stderr.close()
    return 1
  except KeyboardInterrupt:
    print("ufm: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
