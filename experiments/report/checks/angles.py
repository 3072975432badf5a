"""Check ``angles``: with a final ReLU the pairwise angles between the class means sit at the
OF value 0.5 (docs/theory.md#angles).

Trained SCL networks with a final ReLU and saved embeddings (groups that differ only in R):
the angle values 1 - θ/π over ordered class pairs are computed from the final train class
means; holds if the median of every run is within ``angle_tol`` of 0.5.
"""

from __future__ import annotations

import numpy as np

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers
from experiments.report.runs import angle_groups


def check(b, runs):
  for _, group in angle_groups(base.train_runs(runs)):
    if not (group[0].relu and group[0].loss == "scl"):
      continue
    recs = [b.num.computed(r, "angle_values") for r in group]
    medians = [Numbers.derived("median", [r], float(np.median(r["value"]))) for r in recs]
    tol = b.t["angle_tol"]
    conds = []
    for m in medians:
      conds += [{"lhs": m, "op": ">", "rhs": 0.5 - tol}, {"lhs": m, "op": "<", "rhs": 0.5 + tol}]
    b.verdict("angles", "with ReLU the pairwise angles sit at the OF value 0.5",
              setup_text(group[0], skip=["data.ratio"]), conds, medians,
              f"holds if the median angle value of every run is within {tol} of 0.5",
              "docs/theory.md#angles, #experiments angle box-plots",
              missing=base.incomplete(group))
