"""What several checks share: which runs a claim is about, and the UFM certificate."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.report.runs import get_path, group_runs, ratio_sorted, unfinished
from experiments.report.numbers import relative_threshold
from geometry import batching as gb


def train_runs(runs) -> list:
  return [r for r in runs if r.kind == "train"]


def ufm_scl_runs(runs, final_relu: bool) -> list:
  """The UFM+ (final_relu=True) or UFM (final_relu=False) solves of the SCL loss among `runs`."""
  return [r for r in runs if r.kind == "ufm" and r.loss == "scl"
          and r.relu == final_relu]


def curve_groups(runs) -> list:
  """SCL training runs grouped by everything but R, in increasing R, each with a logged
  dist_of: [(runs, whether their embedding is a ReLU's output, run.json's
  ``model.relu_before_embedding``)]."""
  out = []
  for group in group_runs(train_runs(runs), ["data.ratio"]):
    group = ratio_sorted(group)
    if not any(r.metric_lines("dist_of") for r in group):
      continue
    if group[0].loss != "scl":
      continue
    out.append((group, group[0].relu))
  return out


def finals(num, group, key: str = "dist_of") -> dict:
  """{run name: `key` at its final epoch} for every run of `group` (`Numbers.evidence`: a
  run that is unfinished or lacks the number gives a record saying so, never an earlier
  epoch's value)."""
  return {r.name: num.evidence(r, key) for r in group}


def incomplete(runs) -> list[str]:
  """Why some of `runs` cannot give final evidence (`runs.unfinished`), one reason each."""
  members = [m for r in runs for m in getattr(r, "members", None) or [r]]   # a seed group's seeds
  return [reason for r in members if (reason := unfinished(r)) is not None]


def of_threshold(b, run) -> dict:
  """The "is an OF" threshold of a trained run (`numbers.relative_threshold`)."""
  return relative_threshold(run, b.t.get("train_of"), b.t["of_fraction"], "train_of")


def etf_threshold(b, run) -> dict:
  """The "is an ETF" threshold of a trained run's centered means."""
  return relative_threshold(run, b.t.get("train_etf"), b.t["etf_fraction"], "train_etf")


def threshold_text(b, absolute: str, fraction: str) -> str:
  """How a relative threshold is set, in words."""
  if b.t.get(absolute) is not None:
    return f"{b.t[absolute]}"
  return f"{b.t[fraction]} x dist_of(ETF_K) (the ETF's distance from the OF at the run's K)"


def certificate(run):
  """Whether a UFM solve's batching makes the OF the unique UFM+ minimizer
  (docs/theory.md#c1-c2): result.json's ``certificate.of_unique``, else full batches or
  binding (always unique, run.json's ``batching``), else a schedule file's certificate; None
  when unknown."""
  if run.field_key("certificate.of_unique"):
    return bool(get_path(run.data, "certificate.of_unique"))
  batching = str(run.batching)
  if batching == "full":
    return True
  if run.binding:
    return True
  if batching.startswith("fixed:") and not batching[6:].isdigit():
    path = Path(batching[6:])
    if path.is_file():
      schedule = json.loads(path.read_text())
      return gb.batch_certificate(schedule["labels"], schedule["batches"])["of_unique"]
  return None


def seed_prefixes(run) -> list[str]:
  """Key prefixes of every seed of a multi-seed solve ("seeds.0.", ...), else [""]."""
  seeds = run.data.get("seeds") if isinstance(run.data.get("seeds"), list) else None
  return [f"seeds.{i}." for i in range(len(seeds))] if seeds else [""]
