"""Experiments as data: their runs, their seeds and the checks their report makes.

An experiment config (``experiments/configs/*.py``) is a plain module with
``get_experiment(preset="cpu")`` returning a dict::

  {"name": "e2_relu", "title": ..., "description": ...,
   "runs": [ufm_run("ufm_plus", "--classes", "10", ...),             # `ufm solve` arguments
            train_run("relu_R10", "experiments/configs/digits_mlp.py",
                      {"model.final_relu": True, "data.ratio": 10.0})],
   "seeds": 3,                                                       # optional
   "checks": [check("of_reached", runs=["ufm_plus", "relu_R10"]),    # the report's claims
              check("references", values=[...])],
   "report": {"heatmaps": [run names], "thresholds": {...}}}        # optional figure hints

``checks`` plays the part of big_vision's ``config.evals``: each `Check` names a claim of the
report (``experiments/report/checks/``, docs/experiments.md#checks) and the runs it reads
(setting names: ``relu_R10`` stands for all its seed runs ``relu_R10_seed0``, ...); the
report makes exactly these checks. Without ``checks`` (``scl-report runs/a runs/b``) the
report makes the default checks of the run kinds it is given (`default_checks`).

This module is what configs, the sweep runner and the report share; it imports neither.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "experiments" / "configs"
PRESETS = ("cpu", "paper")
KINDS = ("ufm", "train")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_SUFFIX = re.compile(r"_seed(\d+)$")
# Seeds of every training run of an experiment whose config does not set "seeds", by preset:
# the CPU runs take minutes, the paper's take GPU hours each (the paper shows single runs).
DEFAULT_SEEDS = 3
DEFAULT_SEEDS_BY_PRESET = {"cpu": DEFAULT_SEEDS, "paper": 1}


class ExperimentError(Exception):
  """A bad experiment definition (reported on one line by the commands)."""


# ----------------------------------------------------------------------------------------------
# Runs.


def ufm_run(name: str, *args) -> dict:
  """A `ufm solve` run: `args` are its command-line arguments (without --out)."""
  return {"kind": "ufm", "name": name, "args": [str(a) for a in args]}


def train_run(name: str, config: str, overrides: dict | None = None) -> dict:
  """A training run of `config` (a path relative to the repository root) with
  `--config.FIELD=VALUE` overrides."""
  return {"kind": "train", "name": name, "config": config, "overrides": dict(overrides or {})}


def ratio_name(ratio: float) -> str:
  """R=10.0 -> "R10", R=1.5 -> "R1.5" (run names)."""
  return f"R{int(ratio)}" if float(ratio).is_integer() else f"R{ratio:g}"


def seed_run_name(name: str, seed: int) -> str:
  """The folder name of seed `seed` of run `name`: "relu_R10" -> "relu_R10_seed2"."""
  return f"{name}_seed{int(seed)}"


def setting_name(name: str) -> str:
  """The run name without its seed suffix: "relu_R10_seed2" -> "relu_R10"."""
  return _SUFFIX.sub("", name)


# ----------------------------------------------------------------------------------------------
# Checks.


@dataclasses.dataclass(frozen=True)
class Check:
  """One claim the report checks: `name` is a key of the checks registry
  (``experiments/report/checks``), `runs` the run (setting) names it reads (None: every run
  given to the report), `options` the check's keyword options (``thresholds`` overrides
  the report's thresholds for this check alone)."""
  name: str
  runs: tuple[str, ...] | None = None
  options: dict[str, Any] = dataclasses.field(default_factory=dict)

  def selects(self, run_name: str) -> bool:
    """Whether the run folder `run_name` (a run or one of its seeds) is one of `runs`."""
    return self.runs is None or run_name in self.runs or setting_name(run_name) in self.runs


def check(name: str, runs=None, **options) -> Check:
  """``check("of_reached", runs=["relu_R1", "relu_R10"])``: see `Check`."""
  if runs is not None:
    if isinstance(runs, str) or not all(isinstance(r, str) for r in runs):
      raise ExperimentError(f"check {name!r}: runs must be a list of run names, got {runs!r}")
    runs = tuple(runs)
  return Check(name, runs, dict(options))


# The checks a report makes when no experiment names its checks, by the kind of run they read.
# Each check picks from its runs the ones its claim is about (e.g. "relu_symmetry" reads the
# runs without a final ReLU), so the defaults are every check of the kinds present, in the
# report's order.
DEFAULT_CHECKS = (
    ("train", "of_reached"), ("train", "etf_centered"), ("train", "zero_error"),
    ("train", "relu_symmetry"), ("train", "binding_speed"), ("train", "binding_certificate"),
    ("train", "loss_floor"), ("train", "angles"),
    ("ufm", "ufm_minimum"), ("ufm", "ufm_certificate"), ("ufm", "of_reached"),
    ("ufm", "etf_centered"), ("ufm", "relu_symmetry"), ("ufm", "gram_prediction"),
    ("train", "accuracy"),
)


def default_checks(kinds) -> list[Check]:
  """The default check list for runs of the given kinds ("ufm", "train"): the checks of
  `DEFAULT_CHECKS` whose kind is present, each on every run. ``references`` and
  ``tau_steps`` are never defaults: they need an experiment's reference values and design."""
  kinds = set(kinds)
  out, seen = [], set()
  for kind, name in DEFAULT_CHECKS:
    if kind in kinds and name not in seen:
      seen.add(name)
      out.append(Check(name))
  return out


# ----------------------------------------------------------------------------------------------
# Seeds.


def seed_list(seeds) -> list[int]:
  """The seeds of an experiment's "seeds" field: N -> [0, ..., N-1], or a list of seeds."""
  if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
    raise ExperimentError(f"seeds must be a count or a list of seeds, got {seeds!r}")
  out = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
  if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out) \
      or len(set(out)) != len(out):
    raise ExperimentError(f"seeds must be a count >= 1 or distinct integers >= 0, got {seeds!r}")
  return out


def parse_seeds(text: str) -> list[int]:
  """--seeds: "3" (seeds 0, 1, 2) or "0,4,7"."""
  try:
    return seed_list(int(text)) if "," not in text else seed_list(
        [int(t) for t in text.split(",") if t.strip()])
  except ValueError:
    raise ExperimentError(f"--seeds expects a count or a comma-separated list of seeds, got "
                          f"{text!r}") from None


def expand_seeds(exp: dict) -> list[dict]:
  """The experiment's runs with each training run repeated for each seed (run ``NAME``
  becomes ``NAME_seed0``, ... with ``seed`` among its overrides and ``setting`` its name); a
  training run whose overrides set ``seed`` runs once, and so does a UFM solve (its seeds are
  inside one solve). Without a "seeds" field the runs as they are."""
  if exp.get("seeds") is None:
    return list(exp.get("runs", []))
  seeds = seed_list(exp["seeds"])
  out = []
  for run in exp.get("runs", []):
    if run.get("kind") != "train" or "seed" in run.get("overrides", {}):
      out.append(run)
      continue
    for seed in seeds:
      out.append({**run, "name": seed_run_name(run["name"], seed),
                  "overrides": {**run.get("overrides", {}), "seed": seed},
                  "setting": run["name"]})
  return out


# ----------------------------------------------------------------------------------------------
# Loading experiments.


def experiment_files() -> list[Path]:
  """Experiment configs: modules in experiments/configs/ that define get_experiment."""
  return [p for p in sorted(CONFIG_DIR.glob("*.py"))
          if "def get_experiment" in p.read_text()]


def _resolve(name: str) -> Path:
  if name.endswith(".py") or os.sep in name:
    path = Path(name)
    if not path.is_file() and (REPO / name).is_file():
      path = REPO / name
    if not path.is_file():
      raise ExperimentError(f"no experiment config file {name}")
    return path
  files = experiment_files()
  exact = [p for p in files if p.stem == name]
  if exact:
    return exact[0]
  prefixed = [p for p in files if p.stem.startswith(name + "_") or p.stem.startswith(name)]
  if len(prefixed) == 1:
    return prefixed[0]
  known = ", ".join(p.stem for p in files)
  if not prefixed:
    raise ExperimentError(f"unknown experiment {name!r}; known: {known}")
  raise ExperimentError(f"experiment {name!r} is ambiguous: "
                        + ", ".join(p.stem for p in prefixed))


def load_experiment(name: str, preset: str = "cpu") -> dict:
  """The experiment dict of config `name` (see the module docstring), validated."""
  if preset not in PRESETS:
    raise ExperimentError(f"preset must be one of {PRESETS}, got {preset!r}")
  path = _resolve(name)
  module_name = (f"experiments.configs.{path.stem}" if path.parent.resolve() == CONFIG_DIR
                 else f"_experiment_{path.stem}")
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_experiment"):
    raise ExperimentError(f"{path} has no get_experiment(preset)")
  exp = module.get_experiment(preset)
  exp.setdefault("name", path.stem)
  exp.setdefault("title", exp["name"])
  exp.setdefault("description", (module.__doc__ or "").strip().split("\n\n")[0])
  exp.setdefault("report", {})
  exp.setdefault("seeds", DEFAULT_SEEDS_BY_PRESET[preset])
  exp["preset"] = preset
  validate(exp)
  return exp


def validate(exp: dict) -> None:
  """Raises ExperimentError naming the first bad run or check of `exp`."""
  names = set()
  for run in expand_seeds(exp):
    kind, name = run.get("kind"), run.get("name", "")
    if kind not in KINDS:
      raise ExperimentError(f"run {name!r}: kind must be 'ufm' or 'train', got {kind!r}")
    if not _NAME.match(name):
      raise ExperimentError(f"run name {name!r}: use letters, digits and _ . = + - only")
    if name in names:
      raise ExperimentError(f"duplicate run name {name!r}")
    names.add(name)
    if kind == "train" and not (REPO / run["config"]).is_file() and \
        not Path(run["config"]).is_file():
      raise ExperimentError(f"run {name!r}: no training config {run['config']}")
  if not names:
    raise ExperimentError(f"experiment {exp.get('name')!r} has no runs")
  moved = sorted({"references", "tau_steps"} & set(exp.get("report") or {}))
  if moved:
    raise ExperimentError(f"report.{moved[0]} is a check now: list check({moved[0]!r}, ...) "
                          "of experiments.spec in the experiment's \"checks\"")
  settings = names | {setting_name(n) for n in names}
  for item in exp.get("checks") or []:
    if not isinstance(item, Check):
      raise ExperimentError(f"checks: {item!r} is not a check(...) of experiments.spec")
    unknown = sorted(set(item.runs or ()) - settings)
    if unknown:
      raise ExperimentError(f"check {item.name!r}: unknown run(s) {', '.join(unknown)}")
