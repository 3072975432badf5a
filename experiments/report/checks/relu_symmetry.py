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
from experiments.report.runs import balanced, finite
from experiments.report.labels import settings_text


def check(b, runs):
  for group, final_relu in base.curve_groups(runs):
    if final_relu:
      continue
    finals = base.finals(b.num, group)
    setup = setup_text(group[0], skip=["data.ratio"])
    imbalanced = [r for r in group if not balanced(r.flat)]
    even = [r for r in group if r not in imbalanced]
    if imbalanced:
      thr, fit = b.t["train_not_of"], b.t["fit_acc"]
      nums = [finals[r.name] for r in imbalanced]
      accs = [b.num.evidence(r, "ncc_acc_train") for r in imbalanced]
      # A network that has not fitted its training data is not "not an OF": it is not
      # trained (an untrained network is far from every frame).
      unfitted = [f"run {r.name} did not fit its training data: final train NCC accuracy "
                  f"{value_of(a):.4g} < {fit}" for r, a in zip(imbalanced, accs)
                  if finite(value_of(a)) and value_of(a) < fit]
      b.verdict("E2", "without the final ReLU the learned geometry is not an OF "
                + settings_text(imbalanced), setup,
                [{"lhs": v, "op": ">", "rhs": thr} for v in nums]
                + [{"lhs": a, "op": ">=", "rhs": fit} for a in accs], nums + accs,
                f"holds if every imbalanced run (R > 1) fitted its training data (final train "
                f"NCC accuracy >= {fit}; otherwise inconclusive) and its final train dist_of "
                f"is > {thr}", "docs/theory.md#ufm-no-relu, #e2", key="train_imbalanced",
                missing=unfitted)
    if even:
      nums = [b.num.evidence(r, "dist_etf") for r in even]
      thresholds = [base.etf_threshold(b, r) for r in even]
      b.verdict("E2", "without the final ReLU, balanced training gives an ETF-like "
                "geometry", setup, [{"lhs": v, "op": "<", "rhs": t}
                                    for v, t in zip(nums, thresholds)], nums + thresholds,
                "holds if the final train dist_etf of every balanced run is < "
                + base.threshold_text(b, "train_etf", "etf_fraction"),
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
