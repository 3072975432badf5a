"""Check ``accuracy``: the final ReLU does not cost test accuracy, and batch-binding changes it
little (docs/theory.md#e7).

SCL runs that differ only in the final ReLU (or only in binding), paired: the difference of
their last-epoch balanced NCC test accuracies (with minus without) holds if >= -``acc_tol``
(ReLU), or within ``acc_tol`` of 0 (binding). Over seeds, decided on the seed means with
their spread: a comparison holds only when it holds for the difference give or take two
standard errors (`numbers.noise_of_difference`), fails when it fails for all of that range,
and is inconclusive otherwise (the seeds cannot tell).
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import noise_of_difference
from experiments.report.tables import accuracy_pairs


def check(b, runs):
  tol = b.t["acc_tol"]
  for flag, fields, on, off, diffs in accuracy_pairs(b.num, base.train_runs(runs)):
    setup = setup_text(on, skip=fields)
    noise = noise_of_difference(*diffs[0]["from"])
    spread = ("; over seeds give or take 2 standard errors of the difference of the means "
              "(inconclusive when that range straddles the bound)")
    if flag == "model.final_relu":
      b.verdict("E7", "the final ReLU does not reduce test accuracy", setup,
                [{"lhs": diffs[0], "op": ">=", "rhs": -tol, "noise": noise}], diffs + [noise],
                f"holds if balanced test NCC accuracy with ReLU ({on.name}) minus "
                f"without ({off.name}) is >= -{tol}" + spread, "docs/theory.md#e7",
                on_means=True, key="relu")
    else:
      b.verdict("E7", "batch-binding has little effect on test accuracy", setup,
                [{"lhs": diffs[0], "op": ">=", "rhs": -tol, "noise": noise},
                 {"lhs": diffs[0], "op": "<=", "rhs": tol, "noise": noise}], diffs + [noise],
                f"holds if |balanced test NCC accuracy with binding ({on.name}) minus "
                f"without ({off.name})| <= {tol}" + spread, "docs/theory.md#e7",
                on_means=True, key="binding")
