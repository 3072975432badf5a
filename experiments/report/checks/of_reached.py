"""Check ``of_reached``: the geometry is an orthogonal frame (docs/theory.md#theorem-1, #e1).

- Trained SCL networks with a final ReLU, one verdict per group of runs that differ only in R:
  holds if the final train ``dist_of`` of every run is < ``train_of``.
- UFM+ solves (SCL, ReLU) whose batching certifies a unique minimizer (or is not known to
  fail): holds if ``dist_of`` < ``ufm_of``.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import settings_text, setup_text


def check(b, runs):
  for group, final_relu in base.curve_groups(runs):
    if not final_relu:
      continue
    finals = base.finals(b.num, group)
    thresholds = [base.of_threshold(b, r) for r in group]
    b.verdict("E1", "SCL with a final ReLU learns an orthogonal frame " + settings_text(group),
              setup_text(group[0], skip=["data.ratio"]),
              [{"lhs": finals[r.name], "op": "<", "rhs": t} for r, t in zip(group, thresholds)],
              list(finals.values()) + thresholds,
              "holds if the final train dist_of of every run is < "
              + base.threshold_text(b, "train_of", "of_fraction"),
              "docs/theory.md#e1, Thm 1", key="train")
  for run in base.ufm_scl_runs(runs, final_relu=True):
    if base.certificate(run) is False:
      continue   # check "ufm_certificate"
    thr = b.t["ufm_of"]
    rec = b.num.field_evidence(run, "dist_of")
    b.verdict("E3/E4", "the UFM+ minimizer is an orthogonal frame", setup_text(run),
              [{"lhs": rec, "op": "<", "rhs": thr}], [rec], f"holds if dist_of < {thr}",
              "docs/theory.md#theorem-1, #theorem-2, #ref-thm1, #ref-binding", key="ufm")
