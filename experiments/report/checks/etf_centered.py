"""Check ``etf_centered``: centering an OF by the unweighted mean gives a simplex ETF, by the
class-size-weighted mean it does not under imbalance (docs/theory.md#geometries, #centering).

- Trained SCL networks with a final ReLU (groups that differ only in R): holds if the final
  train ``dist_etf`` (unweighted centering) of every run is < ``train_etf``.
- UFM+ solves with a unique OF minimizer: holds if ``dist_etf`` < ``ufm_etf``; imbalanced
  ones also: holds if ``dist_etf`` after weighted centering (computed from the saved
  embeddings) is > ``ufm_not``.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import settings_text, setup_text


def check(b, runs):
  for group, final_relu in base.curve_groups(runs):
    if not final_relu:
      continue
    etf = list(base.finals(b.num, group, "dist_etf").values())
    if etf:
      thresholds = [base.etf_threshold(b, r) for r in group]
      b.verdict("E3", "centering the learned class means (unweighted) gives a simplex ETF "
                + settings_text(group), setup_text(group[0], skip=["data.ratio"]),
                [{"lhs": v, "op": "<", "rhs": t} for v, t in zip(etf, thresholds)],
                etf + thresholds,
                "holds if the final train dist_etf (unweighted centering) of every run is < "
                + base.threshold_text(b, "train_etf", "etf_fraction"),
                "docs/theory.md#geometries, #centering", key="train")
  for run in base.ufm_scl_runs(runs, final_relu=True):
    if base.certificate(run) is False:
      continue
    setup = setup_text(run)
    rec = b.num.field(run, "dist_etf")
    if rec is not None:
      thr = b.t["ufm_etf"]
      b.verdict("E3", "the centered OF (unweighted mean) is a simplex ETF", setup,
                [{"lhs": rec, "op": "<", "rhs": thr}], [rec], f"holds if dist_etf < {thr}",
                "docs/theory.md#geometries, D.1.2", key="ufm")
    weighted = b.num.computed(run, "dist_etf_weighted")
    if len(set(run.get("sizes") or [])) > 1 and weighted is not None:
      thr = b.t["ufm_not"]
      b.verdict("E3", "under imbalance, centering the OF by the class-size-weighted mean "
                "does not give an ETF", setup, [{"lhs": weighted, "op": ">", "rhs": thr}],
                [weighted], f"holds if the weighted-centering dist_etf > {thr}",
                "docs/theory.md#centering, #ref-metrics", key="ufm_weighted")
