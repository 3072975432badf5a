"""The report driver: reads the runs, draws the figures and tables, makes the checks.

`build_report` writes ``OUT/index.html`` (self-contained: every figure is embedded as base64
and also written as a PNG next to it) and ``OUT/report.json``, which holds every number shown
with its provenance (`experiments.report.numbers`), so a reader (or a test) can check each one
against its source. Each verdict lists its numbers and a machine-readable rule
(``conditions``: comparisons that must all hold).

The checks are the experiment's (``experiments.spec.check``), or, for run folders given
without one, `experiments.spec.default_checks` of their run kinds. Training runs whose
configs differ only in ``seed`` are one setting (`experiments.report.seeds`).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Sequence

from experiments import spec
from experiments.spec import setting_name
from experiments.report import batching, figures, figures_studies, html, seeds, tables
from experiments.report.checks import REGISTRY
from experiments.report.labels import run_label, setup_text
from experiments.report.numbers import (Numbers, finite_number, judge, margin, missing_reasons,
                                        outcome, value_of)
from experiments.report.runs import ReportError, Run, read_runs
from geometry import metrics, runfiles

def _shown(side):
  return value_of(side) if isinstance(side, dict) else side


def _undecided_reason(cond: dict) -> str:
  """Why `judge` cannot decide `cond`: a number is missing, or lhs give or take the seeds'
  noise lies on both sides of the bound."""
  lhs, rhs, noise = (_shown(cond["lhs"]), _shown(cond["rhs"]), _shown(cond.get("noise")))
  if finite_number(lhs) and finite_number(rhs) and finite_number(noise) and noise:
    bound = rhs * cond.get("factor", 1.0)
    z = cond["noise"].get("z", 2) if isinstance(cond["noise"], dict) else 2
    return (f"the seeds cannot tell: {lhs:.4g} +- {noise:.2g} ({z:g} standard errors) lies on "
            f"both sides of {cond['op']} {bound:.4g}")
  return "a number of the rule is missing (None / NaN)"


# Thresholds of the verdicts. They are stated beside every verdict; an experiment may
# override them (``"report": {"thresholds": ...}``, or a check's ``thresholds`` option).
THRESHOLDS = {
    "ufm_of": metrics.OF_THRESHOLD,     # a UFM solve "is an OF": dist_of below this
    "ufm_gap_rel": 1e-5,     # a UFM+ solve "attains the Thm 1/2 minimum": |gap| / |L*| below this
    "ufm_etf": metrics.ETF_THRESHOLD,   # a UFM solve "is an ETF": dist_etf below this
    "ufm_not": 0.1,          # a UFM solve "is not an OF / ETF": distance above this
    # A trained network "is an OF": final train dist_of < of_fraction x dist_of(ETF_K), the
    # distance of the simplex ETF from the OF at its K (0.096 at K = 10, 0.030 at K = 100),
    # so that an ETF never passes as an OF; ``train_of`` (a number) replaces it by a fixed one.
    "of_fraction": 0.3,
    "train_of": None,
    # A trained network's centered means "are an ETF": final train dist_etf below
    # etf_fraction x dist_of(ETF_K) (the same scale); ``train_etf`` replaces it.
    "etf_fraction": 0.3,
    "train_etf": None,
    "train_not_of": 0.3,     # a trained network "is not an OF": final train dist_of above this
    "fit_acc": 0.99,         # ...and it fitted its training data: final train NCC accuracy >= this
    "convergence_of": 0.2,   # "reached the OF" for speed comparisons: dist_of below this
    "zero_error_acc": 0.99,  # zero-error epoch: first logged epoch with ncc_acc_train >= this
    "floor_rel": 0.05,       # "the loss reaches the OF floor": (loss - floor) / floor below this
    "floor_slack": 1e-4,     # "never below the floor": loss - floor >= -slack * floor
    "acc_tol": 0.02,         # accuracy differences within this count as "no loss"
    "angle_tol": 0.01,       # median angle value within this of 0.5 counts as an OF
}

# The sections drawn, in page order.
SECTIONS = (figures.add_heatmaps, figures.add_metric_curves, figures.add_geometry_vs_ratio,
            figures_studies.add_comparisons, figures_studies.add_loss_floor,
            figures_studies.add_angles, tables.add_ufm_table, tables.add_geometry_table,
            tables.add_accuracy_table, batching.add_batching)


def resolve_checks(checks, runs) -> list:
  """`checks` (a list of `experiments.spec.Check`) validated against the registry, or the
  default checks of the run kinds when None."""
  if checks is None:
    return spec.default_checks({r.kind for r in runs})
  for item in checks:
    if not isinstance(item, spec.Check):
      raise ReportError(f"checks: {item!r} is not an experiments.spec.check(...)")
    if item.name not in REGISTRY:
      raise ReportError(f"unknown check {item.name!r}; known: {', '.join(sorted(REGISTRY))}")
    options = {k: v for k, v in item.options.items() if k != "thresholds"}
    try:
      inspect.signature(REGISTRY[item.name]).bind(None, [], **options)
    except TypeError as e:
      raise ReportError(f"check {item.name!r}: {e}") from None
  return list(checks)


class Builder:
  """Collects figures, tables and verdicts for one report."""

  def __init__(self, runs: list[Run], out_dir: Path, thresholds: dict | None = None,
               hints: dict | None = None, *, checks=None, numbers: Numbers | None = None,
               keep=None):
    """`checks`: the `experiments.spec.Check` list (None: the defaults of the run kinds);
    `numbers` reads the runs (`seeds.build` passes one that reads seed groups);
    `keep(verdict, on_means)` selects the
    verdicts kept (all when None; the others stay in `all_verdicts`)."""
    self.runs = runs
    self.out_dir = out_dir
    self.num = numbers or Numbers(out_dir)
    self.keep = keep
    self.all_verdicts: list[dict] = []
    self.t = {**THRESHOLDS, **(thresholds or {})}
    self.hints = hints or {}
    self.checks = resolve_checks(checks, runs)
    self.figures: list[figures.Figure] = []
    self.tables: list[dict] = []
    self.verdicts: list[dict] = []
    self.check_name = ""   # the check being run (`run_checks`), part of each verdict's id
    self.check_index = -1  # its place in the check list (one check name may be listed twice)
    self.absent: list[str] = []   # the reasons its named runs give no evidence
    self.warnings: list[str] = []   # read_runs' warnings, shown on the page
    self.ufm = [r for r in runs if r.kind == "ufm"]
    self.train = [r for r in runs if r.kind == "train"]

  def verdict(self, section: str, claim: str, setup: str, conditions: list[dict],
              numbers: list[dict], rule: str, reference: str = "", on_means: bool = False,
              *, key: str = "", kind: str = "claim", missing=(), placeholder: bool = False):
    """Adds a verdict. `conditions` are {"lhs": record, "op": "<", "rhs": record or float}; the
    claim holds when all hold, does not hold when one fails, and is inconclusive when a
    number is missing (None / NaN). `on_means`: over seeds, the claim is decided on the seed
    means rather than on every seed (`experiments.report.seeds`).

    `key` tells apart the verdicts one check makes on one setting (e.g. "train", "ufm"); the
    verdict's ``id`` is ``check/key/setup``, which pairs verdicts across seeds whatever the
    claim's wording. `kind` is "claim" for a finding, "consistency" for a check that holds
    by construction when the code is right (shown apart from the claims).

    No evidence, no verdict: the verdict is "inconclusive" when there is no condition, when
    a number is missing, when `missing` (reasons) is not empty or when a run the check names
    is absent; ``missing`` lists why, naming the run, setting and epoch."""
    if kind not in ("claim", "consistency"):
      raise ValueError(f"verdict kind {kind!r}: 'claim' or 'consistency'")
    reasons = list(dict.fromkeys([*self.absent, *missing, *missing_reasons(conditions)]))
    result = "inconclusive" if reasons else outcome(conditions)
    if result == "inconclusive" and not reasons:
      reasons = (["no run to judge"] if not conditions else
                 [_undecided_reason(c) for c in conditions if judge(c) is None])
    # Beside each condition, the numbers it compares and its margin (> 0: by how much it
    # holds, < 0: fails), so the verdict can be read off its conditions.
    conditions = [{**c, "lhs_value": _shown(c["lhs"]), "rhs_value": _shown(c["rhs"]),
                   "margin": margin(c)} for c in conditions]
    entry = {"id": "/".join([self.check_name, key or section, setup]), "check": self.check_name,
             "check_index": self.check_index, "key": key or section, "kind": kind,
             "section": section, "claim": claim, "setup": setup, "verdict": result,
             "missing": reasons if result == "inconclusive" else [], "rule": rule,
             "reference": reference, "conditions": conditions, "numbers": numbers}
    if placeholder:
      entry["placeholder"] = True
    self.all_verdicts.append(entry)
    if self.keep is None:
      self.verdicts.append(entry)
    elif self.keep(entry, on_means):
      self.verdicts.append({**entry, "_on_means": on_means})

  def save(self, fig, stem: str) -> str:
    """Writes the figure's PNG; returns its file name."""
    return figures.save(fig, self.out_dir, stem)

  def run_checks(self):
    """Makes every check on its runs. A run the check names that is not among the runs makes
    each of its verdicts inconclusive; a check that names runs and gives no verdict gives
    one inconclusive verdict saying so."""
    base = self.t
    for index, item in enumerate(self.checks):
      options = dict(item.options)
      self.t = {**base, **(options.pop("thresholds", None) or {})}
      self.check_name, self.check_index = item.name, index
      selected = [r for r in self.runs if item.selects(r.name)]
      present = {n for r in selected for n in (r.name, setting_name(r.name))}
      self.absent = [f"run {n} is missing" for n in (item.runs or ()) if n not in present]
      before = len(self.all_verdicts)
      REGISTRY[item.name](self, selected, **options)
      if item.runs is not None and len(self.all_verdicts) == before:
        self.verdict("-", f"check {item.name} on {', '.join(item.runs)}", "", [], [],
                     "no verdict: none of the named runs gives the numbers the claim needs",
                     missing=[f"no run among {', '.join(item.runs)} gives the numbers of "
                              f"check {item.name} (missing, unfinished or without them)"],
                     key="no-evidence", placeholder=True)
    self.t = base
    self.check_name, self.check_index, self.absent = "", -1, []
    return self

  def build(self):
    for section in SECTIONS:
      section(self)
    return self.run_checks()


def _run_entry(run: Run, num: Numbers) -> dict:
  """A run in report.json: its label, run.json's setup line (``description``), the caption's
  setup text and its fields: a training run's config; a solve's problem in the keys the report
  has always shown (its best seed is a result, result.json's)."""
  setup = (run.flat if run.kind == "train" else
           {"loss": run.loss, "sizes": run.class_sizes,
            "dim": run.record["model"]["embedding_dim"], "temperature": run.temperature,
            "final_relu": run.relu, "batching": run.batching, "binding": run.binding,
            "seed": run.data.get("seed"), "dtype": run.get("dtype")})
  return {"name": run.name, "kind": run.kind, "dir": num.rel(run.path), "label": run_label(run),
          "description": run.setup, "setup_text": setup_text(run), "setup": setup}


def build_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 title: str = "Theory vs practice: SCL geometry", description: str = "",
                 thresholds: dict | None = None, hints: dict | None = None,
                 checks=None) -> Path:
  """Builds OUT/index.html, OUT/report.json and the PNG figures; returns the HTML path.

  `checks`: the experiment's `experiments.spec.Check` list (None: the defaults of the run
  kinds); `hints`: figure hints (``heatmaps``: run names in panel order)."""
  out_dir = Path(out_dir)
  runs, warnings = read_runs(run_dirs)
  for line in warnings:
    print(f"report: warning: {line}", file=sys.stderr)
  checks = resolve_checks(checks, runs)
  out_dir.mkdir(parents=True, exist_ok=True)
  for old in out_dir.glob("fig_*.png"):
    old.unlink()
  settings = seeds.group_settings(runs)
  if seeds.has_seeds(settings):
    builder = seeds.build(Builder, settings, out_dir, thresholds, hints, checks)
  else:
    builder = Builder(runs, out_dir, thresholds, hints, checks=checks).build()
  builder.warnings = warnings
  html_path = html.write_html(builder, title, description, out_dir)
  report = {
      "title": title, "description": description, "thresholds": builder.t,
      # Damage found while reading the runs (a run left out, a metrics line left out), one
      # line each, as on stderr.
      "warnings": warnings,
      # The checks made (their options' values are in the verdicts they give).
      "checks": [{"name": c.name, "runs": list(c.runs) if c.runs is not None else None,
                  "options": sorted(c.options)} for c in checks],
      "runs": [_run_entry(r, builder.num) for r in runs],
      "figures": [{"id": f.id, "title": f.title, "file": f.file, "caption": f.caption,
                   "data": f.data} for f in builder.figures],
      "tables": builder.tables,
      "verdicts": builder.verdicts,
      # Claims and consistency checks (verdict "kind") counted apart.
      "counts": html.verdict_counts(builder.verdicts),
      "settings": seeds.describe(settings, builder.num),
  }
  runfiles.write_json(out_dir / "report.json", report)
  return html_path
