"""`make figures`: every figure under docs/ rebuilt from the run folders it was drawn from.

  python -m experiments.figures [ROOT ...] [--only STEM ...] [--docs DIR]

Each figure names the runs it needs (`FIGURES`): run folders NAME_seed0, NAME_seed1, ... (or a
folder NAME: a training workdir or a UFM result, `experiments.report.runs.is_run_folder`), or `benchmarks.loss_jumps`
metric files NAME.jsonl. They are looked up under the ROOTs given (folders searched three
levels down), else under each figure's default folder (runs/sweeps/recipe_targets,
runs/sweeps/e5_binding, runs/jumps, runs/demo). Curves are the seed mean with the min-max band
(`experiments.report.seeds.mean_curve`). When a figure's runs are missing, one line per figure
says which runs and the command that makes them, nothing is written, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from experiments.report import figures as report_figures
from experiments.report.builder import THRESHOLDS
from experiments.report.numbers import etf_dist_of
from experiments.report import runs as report_runs
from experiments.report.seeds import mean_curve

TITLES = {**report_figures.METRIC_TITLES, "train_loss": "training loss"}


@dataclass(frozen=True)
class FigureSpec:
  """One or more PNGs under docs/ drawn from the runs `needs` (label per run name)."""
  files: tuple[str, ...]
  needs: dict
  default_root: str
  command: str
  draw: Callable
  kind: str = "train"     # "train": seed run folders; "jsonl": NAME.jsonl files
  # Names of `needs` the figure is drawn without when they have no runs (each such line is
  # left out and said so on the output); every other name is required.
  optional: tuple[str, ...] = ()

  @property
  def stem(self) -> str:
    return Path(self.files[0]).stem


def _seed_folders(roots: Sequence[Path], name: str) -> list[Path]:
  pattern = re.compile(rf"^{re.escape(name)}(_seed\d+)?$")
  found = set()
  for root in roots:
    for depth in ("*", "*/*", "*/*/*"):
      found.update(p for p in root.glob(depth)
                   if p.is_dir() and pattern.match(p.name) and report_runs.is_run_folder(p))
    if pattern.match(root.name) and report_runs.is_run_folder(root):
      found.add(root)
  return sorted(found)


def _jsonl_files(roots: Sequence[Path], name: str) -> list[Path]:
  found = set()
  for root in roots:
    for depth in ("", "*/", "*/*/"):
      found.update(p for p in root.glob(f"{depth}{name}.jsonl") if p.is_file())
  return sorted(found)[:1]


def find_runs(spec: FigureSpec, roots: Sequence[Path]) -> tuple[dict, list[str]]:
  """{run name: its folders (or file)} and the names of the runs that have none."""
  lookup = _jsonl_files if spec.kind == "jsonl" else _seed_folders
  found = {name: lookup(roots, name) for name in spec.needs}
  return found, [name for name, paths in found.items()
                 if not paths and name not in spec.optional]


def _lines(path: Path) -> list[dict]:
  try:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
  except (OSError, ValueError) as e:
    raise report_runs.ReportError(f"{path}: not readable as JSON lines ({e})") from None


def seed_mean(folders: Sequence[Path], key: str) -> dict:
  """Mean, min and max of `key` over the seed folders' metrics.jsonl, per logged epoch."""
  curves = []
  for folder in folders:
    try:
      run = report_runs.load_run(folder.name, folder)
    except ValueError as e:
      raise report_runs.ReportError(str(e)) from None
    # The report's reader: one line per epoch (a resumed run's re-logged epoch counts once).
    lines = [run.metrics[i] for i in run.metric_lines(key)
             if report_runs.finite(report_runs.get_path(run.metrics[i], key))]
    curves.append(([m["epoch"] for m in lines],
                   [float(report_runs.get_path(m, key)) for m in lines]))
  return mean_curve(curves)


def curves(metrics: Sequence[str], threshold: float | None = None):
  """A row of panels, one per metric, one line (seed mean, min-max band) per run; a dashed
  line at `threshold` on dist_of and a dotted one at the epoch each mean first goes below."""
  def draw(found: dict, spec: FigureSpec, out: Path) -> None:
    plt = report_figures.plt_()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics) + 0.8, 3.4),
                             squeeze=False)
    colors = report_figures.palette(len(spec.needs))
    for ax, key in zip(axes[0], metrics):
      for color, (name, label) in zip(colors, spec.needs.items()):
        if not found[name]:   # an optional line without runs
          continue
        series = seed_mean(found[name], key)
        if not series["x"]:
          continue
        ax.plot(series["x"], series["values"], "-o", ms=3, color=color, label=label)
        report_figures.band(ax, series, color)
        if key == "dist_of" and threshold is not None:
          below = [x for x, v in zip(series["x"], series["values"]) if v < threshold]
          if below:
            ax.axvline(below[0], color=color, ls=":", lw=1)
      if key == "dist_of" and threshold is not None:
        ax.axhline(threshold, color="gray", ls="--", lw=1)
      if key in report_figures.Y_RANGES and key != "nc1":
        ax.set_ylim(bottom=0.0)
      if key == "nc1":
        ax.set_yscale("log")
      ax.set_title(TITLES.get(key, key), fontsize=10)
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.savefig(out / Path(spec.files[0]).name, dpi=110, bbox_inches="tight")
    plt.close(fig)
  return draw


def jumps(found: dict, spec: FigureSpec, out: Path) -> None:
  """The loss gap and the last layer's norm per epoch (`benchmarks.loss_jumps.plot`)."""
  from benchmarks import loss_jumps  # pylint: disable=g-import-not-at-top
  loss_jumps.plot({name: _lines(paths[0]) for name, paths in found.items()},
                  str(out / Path(spec.files[0]).name), "backbone/dense3")


def demo(found: dict, spec: FigureSpec, out: Path) -> None:
  """The report of the demo's runs (as `make demo` builds it); its figures are copied."""
  from experiments import report as report_lib  # pylint: disable=g-import-not-at-top
  from experiments.configs import demo as demo_config  # pylint: disable=g-import-not-at-top
  exp = demo_config.get_experiment()
  hints = exp.get("report", {})
  with tempfile.TemporaryDirectory() as tmp:
    report_lib.build_report([p for paths in found.values() for p in paths], tmp,
                            title=exp.get("title", exp["name"]), hints=hints,
                            thresholds=hints.get("thresholds"), checks=exp.get("checks"))
    for file in spec.files:
      source = Path(tmp) / Path(file).name
      if not source.is_file():
        raise report_runs.ReportError(f"the demo report drew no {source.name} from these runs")
      shutil.copy(source, out / source.name)


_FASHION = "fashion_mnist"
_RECIPES = ("runs/sweeps/recipe_targets", "make sweep EXP=recipe_targets")
# The dashed line of the binding figures: the report's "reached the OF" level of its speed
# comparisons, so the figure and the binding_speed verdict draw the same line.
_CONVERGED = THRESHOLDS["convergence_of"]
# The E1 figures' dashed line: the report's "is an OF" level of a final dist_of at K = 10.
_OF = THRESHOLDS["of_fraction"] * etf_dist_of(10)
_PAPER_SCALE = ("runs/sweeps/paper_scale", "make sweep EXP=paper_scale")
# E1 (the paper's main experiment): reshuffled batches at R = 1, 10, 100 and bound ones at 100.
_E1 = {"relu_R1": "R = 1", "relu_R10": "R = 10", "relu_R100_bind0": "R = 100, reshuffled",
       "relu_R100_bind1": "R = 100, binding 1"}
FIGURES = (
    FigureSpec(("docs/results/digits_dist_of.png",),
               {f"digits_{s}": s for s in ("relu_R1", "relu_R10", "relu_R100_bind1",
                                           "relu_R100_bind0", "norelu_R10", "norelu_R100")},
               *_RECIPES, curves(("dist_of",))),
    FigureSpec(("docs/results/fashion_mnist_dist_of.png",),
               {f"{_FASHION}_{s}": s for s in ("relu_R1", "relu_R10", "relu_R100_bind1",
                                               "norelu_R10", "norelu_R100")},
               *_RECIPES, curves(("dist_of", "dist_etf", "nc1", "mean_cos"))),
    FigureSpec(("docs/results/fashion_mnist_binding.png",),
               {f"{_FASHION}_relu_R100_bind0": "no binding, shuffle",
                f"{_FASHION}_relu_R100_bind1": "binding 1, shuffle"},
               *_RECIPES, curves(("dist_of", "mean_cos", "train_loss"), threshold=_CONVERGED)),
    FigureSpec(("docs/results/fashion_mnist_e5_binding.png",),
               {"R100_b10_fixed_bind0": "no binding, fixed",
                "R100_b10_shuffle_bind0": "no binding, shuffle",
                "R100_b10_fixed_bind1": "binding 1, fixed",
                "R100_b10_shuffle_bind1": "binding 1, shuffle"},
               "runs/sweeps/e5_binding", "make sweep EXP=e5_binding",
               curves(("dist_of", "mean_cos", "train_loss"), threshold=_CONVERGED)),
    # R = 1 (twice the images, about 20 minutes a run) is drawn once it has runs.
    FigureSpec(("docs/results/e1_fashion_mnist_resnet.png",),
               {f"{_FASHION}_resnet_{s}": label for s, label in _E1.items()},
               *_PAPER_SCALE, curves(("dist_of", "nc1", "train_loss"), threshold=_OF),
               optional=(f"{_FASHION}_resnet_relu_R1",)),
    FigureSpec(("docs/results/fashion_mnist_jumps.png",),
               {"wd_5e-4": "", "wd_5e-4_rescaled_x2_at_150": "", "wd_1e-4": ""},
               "runs/jumps",
               "python -m benchmarks.loss_jumps ... (docs/results.md#the-mid-run-loss-jumps)",
               jumps, kind="jsonl"),
    FigureSpec(tuple(f"docs/demo/{f}.png" for f in ("fig_gram_heatmaps", "fig_curves_0",
                                                    "fig_angles_0", "fig_loss_floor_0")),
               {n: n for n in ("ufm_plus", "ufm", "digits_relu", "digits_norelu", "digits_ce")},
               "runs/demo", "make demo", demo),
)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m experiments.figures",
                                   description="Rebuild the figures under docs/ from run folders.")
  parser.add_argument("roots", nargs="*", help="folders holding the run folders "
                      "[default: each figure's folder under runs/]")
  parser.add_argument("--only", nargs="+", default=None, metavar="STEM",
                      help="only these figures (file stems, e.g. fashion_mnist_binding)")
  parser.add_argument("--docs", default="docs", help="the docs folder to write into (default docs)")
  args = parser.parse_args(argv)
  stems = [s.stem for s in FIGURES]
  unknown = sorted(set(args.only or ()) - set(stems))
  if unknown:
    print(f"figures: unknown figure {', '.join(unknown)}; one of: {', '.join(stems)}",
          file=sys.stderr)
    return 2
  chosen = [s for s in FIGURES if args.only is None or s.stem in args.only]
  plan, missing = [], []
  for spec in chosen:
    roots = [Path(r) for r in args.roots] or [Path(spec.default_root)]
    found, absent = find_runs(spec, roots)
    if absent:
      what = ", ".join(f"{n}.jsonl" if spec.kind == "jsonl" else f"{n}[_seedK]" for n in absent)
      missing.append(f"figures: {', '.join(spec.files)} needs {what}, not found under "
                     f"{', '.join(map(str, roots))}; make them with: {spec.command}")
    plan.append((spec, found))
  if missing:
    print("\n".join(missing), file=sys.stderr)
    return 2
  docs = Path(args.docs)
  for spec, found in plan:
    for name in spec.optional:
      if not found[name]:
        print(f"figures: {spec.files[0]}: drawn without {name} (no runs of it yet; "
              f"{spec.command})")
    with tempfile.TemporaryDirectory() as tmp:
      try:
        spec.draw(found, spec, Path(tmp))
      except report_runs.ReportError as e:
        print(f"figures: {spec.files[0]}: {e}", file=sys.stderr)
        return 2
      # Drawn into a temporary folder first: a figure that fails leaves the old one in place.
      for file in spec.files:
        target = docs / Path(file).relative_to("docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / target.name), target)
        print(f"figures: wrote {target} from {sum(len(p) for p in found.values())} run(s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
