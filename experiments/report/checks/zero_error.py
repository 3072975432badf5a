"""Check ``zero_error``: the OF keeps forming after zero training error (docs/theory.md#zero-error,
#e1).

Trained SCL networks with a final ReLU (groups that differ only in R): for every run whose
first logged epoch with ``ncc_acc_train`` >= ``zero_error_acc`` comes before its last epoch,
holds if the final ``dist_of`` is below the ``dist_of`` at that epoch.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import missing as missing_record, value_of
from experiments.report.runs import has_path


def check(b, runs):
  for group, final_relu in base.curve_groups(runs):
    if not final_relu:
      continue
    finals = base.finals(b.num, group)
    per_zero, _ = b.num.zero_error(group, b.t["zero_error_acc"])
    conds, nums, missing = [], [], base.incomplete(group)
    for run in group:
      ze = per_zero[run.name]
      final = finals[run.name]
      if final.get("missing"):
        conds.append({"lhs": final, "op": "<", "rhs": None})
        continue
      if value_of(ze) is None or value_of(ze) >= run.last_epoch:
        continue
      # The line of the zero-error epoch; its dist_of may be missing (NaN: inconclusive).
      line = next(i for i in run.metric_lines("ncc_acc_train")
                  if run.metrics[i]["epoch"] == value_of(ze))
      at_zero = (b.num.line_value(run, line, "dist_of") if has_path(run.metrics[line], "dist_of")
                 else missing_record(f"run {run.name}: no dist_of at its zero-error epoch "
                                     f"{value_of(ze)}"))
      conds.append({"lhs": final, "op": "<", "rhs": at_zero})
      nums += [ze, at_zero, final]
    if not conds:
      missing.append("no run reached zero train error before its last epoch")
    b.verdict("E1", "dist_of keeps decreasing after the zero-error epoch",
                setup_text(group[0], skip=["data.ratio"]), conds, nums,
                "holds if, for every run that reached zero train error before its last "
                "epoch, the final dist_of is below the dist_of at the zero-error epoch",
                "docs/theory.md#zero-error, #e1", missing=missing)
