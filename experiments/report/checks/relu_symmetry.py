"""Check ``relu_symmetry``: without the final ReLU the symmetry breaks under imbalance
(docs/theory.md#ufm-no-relu, #e2).

- Trained SCL networks without a final ReLU (groups that differ only in R): holds if the
  final train ``dist_of`` of every imbalanced run (R > 1) is > ``train_not_of``; for the
  balanced runs, holds if their final ``dist_etf`` is < ``train_etf`` (ETF-like).
- UFM solves (SCL, no ReLU): balanced, holds if ``dist_etf`` < ``ufm_etf``; imbalanced, holds
  if ``dist_of`` > ``ufm_not`` and ``dist_etf`` > ``ufm_not`` / 2 (neither an OF nor an ETF),
  and, when result.json has the OF objective, if ``loss`` < ``of_loss``.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import value_of
from experiments.report.runs import balanced


def check(b, runs):
  for group, final_relu in base.curve_groups(runs):
    if final_relu:
      continue
    finals = base.finals(b.num, group)
    setup = setup_text(group[0], skip=["data.ratio"])
    imbalanced = [r for r in group if not balanced(r.flat)]
    even = [r for r in group if r not in imbalanced]
    if imbalanced:
      thr = b.t["train_not_of"]
      nums = [finals[r.name] for r in imbalanced]
      b.verdict("E2", "without the final ReLU the learned geometry is not an OF under "
                "imbalance", setup, [{"lhs": v, "op": ">", "rhs": thr} for v in nums], nums,
                f"holds if the final train dist_of of every imbalanced run (R > 1) is > {thr}",
                "docs/theory.md#ufm-no-relu, #e2", key="train_imbalanced")
    if even:
      thr = b.t["train_etf"]
      nums = [b.num.evidence(r, "dist_etf") for r in even]
      b.verdict("E2", "without the final ReLU, balanced training gives an ETF-like "
                "geometry", setup, [{"lhs": v, "op": "<", "rhs": thr} for v in nums], nums,
                f"holds if the final train dist_etf of every balanced run is < {thr}",
                "docs/theory.md#ufm-no-relu, #e2", key="train_balanced")
  for run in base.ufm_scl_runs(runs, final_relu=False):
    _ufm(b, run)


def _ufm(b, run):
  setup = setup_text(run)
  rec = {k: b.num.field(run, k) for k in ("dist_of", "dist_etf", "loss", "of_loss")}
  if len(set(run.get("sizes") or [])) <= 1:
    thr = b.t["ufm_etf"]
    b.verdict("E3", "balanced UFM (no ReLU) gives a simplex ETF", setup,
              [{"lhs": rec["dist_etf"], "op": "<", "rhs": thr}], [rec["dist_etf"]],
              f"holds if dist_etf < {thr}", "docs/theory.md#ufm-no-relu, #ref-ufm-balanced",
              key="ufm_balanced")
    return
  thr = b.t["ufm_not"]
  conds = [{"lhs": rec["dist_of"], "op": ">", "rhs": thr},
           {"lhs": rec["dist_etf"], "op": ">", "rhs": thr / 2}]
  b.verdict("E3", "imbalanced UFM (no ReLU) breaks the symmetry: neither an OF nor an ETF",
            setup, conds, [rec["dist_of"], rec["dist_etf"]],
            f"holds if dist_of > {thr} and dist_etf > {thr / 2}",
            "docs/theory.md#ufm-no-relu, #ref-ufm-imbalanced", key="ufm_imbalanced")
  if rec["of_loss"] is not None and value_of(rec["of_loss"]) is not None:
    b.verdict("E3", "imbalanced UFM (no ReLU) reaches a loss below the OF value", setup,
              [{"lhs": rec["loss"], "op": "<", "rhs": rec["of_loss"]}],
              [rec["loss"], rec["of_loss"]], "holds if loss < of_loss",
              "docs/theory.md#ref-ufm-imbalanced", key="ufm_loss")
