"""Check ``loss_floor``: with a final ReLU the training loss never goes below the OF floor
of its batches and approaches it (docs/theory.md#batch-bound, #theorem-2, #e6).

Trained SCL networks with a final ReLU that log ``optimal_loss`` (groups that differ only in
R): holds if min over logged epochs of (train_loss - optimal_loss) >= -``floor_slack`` x the
last floor for every run; and, a second verdict, if the final (train_loss - optimal_loss) /
optimal_loss < ``floor_rel`` for every run.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers, floor_gap
from experiments.report.runs import group_runs, ratio_sorted


def check(b, runs):
  for group in group_runs(base.train_runs(runs), ["data.ratio"]):
    group = [r for r in ratio_sorted(group)
             if r.loss == "scl" and r.metric_lines("optimal_loss")]
    if not group or not group[0].relu:
      continue
    gaps = [floor_gap(b.num, r) for r in group]
    missing = base.incomplete(group) + [
        f"run {r.name}: no epoch with both train_loss and optimal_loss"
        for r, g in zip(group, gaps) if g["min_gap"] is None]
    gaps = [g for g in gaps if g["min_gap"] is not None]
    setup = setup_text(group[0], skip=["data.ratio"])
    slack = b.t["floor_slack"]
    conds = [{"lhs": g["min_gap"], "op": ">=",
              "rhs": Numbers.derived("scale", [g["floor"]],
                                     -slack * abs(g["floor"]["values"][-1]),
                                     factor=-slack, absolute=True, at="last")} for g in gaps]
    b.verdict("E6", "with a final ReLU the training loss never goes below the OF floor "
              "(Thm 2 lower bound)", setup, conds, [g["min_gap"] for g in gaps],
              f"holds if min over logged epochs of (train_loss - optimal_loss) >= "
              f"-{slack} x floor for every run", "docs/theory.md#batch-bound, #theorem-2",
              missing=missing, key="bound", kind="consistency")
    thr = b.t["floor_rel"]
    b.verdict("E6", "the training loss approaches the OF floor", setup,
              [{"lhs": g["final_rel"], "op": "<", "rhs": thr} for g in gaps],
              [g["final_rel"] for g in gaps],
              f"holds if the final (train_loss - optimal_loss) / optimal_loss < {thr} for "
              "every run", "docs/theory.md#e6", missing=missing, key="approach")
