"""Check ``ufm_minimum``: UFM+ attains the Theorem 1/2 minimum (docs/theory.md#theorem-1,
#theorem-2).

UFM+ solves (SCL, ReLU) with a ``gap`` and ``optimal_loss`` in result.json: holds if
|gap| / |optimal_loss| < ``ufm_gap_rel`` for the solution, or for every seed of a multi-seed
solve (result.json ``seeds``).
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers, value_of
from experiments.report.runs import finite


def check(b, runs):
  for run in base.ufm_scl_runs(runs, final_relu=True):
    gap, optimal = b.num.field(run, "gap"), b.num.field(run, "optimal_loss")
    if gap is None and optimal is None:
      continue   # a solve that does not state the Theorem 1/2 minimum (e.g. CE)
    prefixes = base.seed_prefixes(run)
    many = prefixes != [""]
    thr = b.t["ufm_gap_rel"]
    conds, nums = [], []
    for prefix in prefixes:
      g = b.num.field_evidence(run, prefix + "gap")
      opt = b.num.field_evidence(run, prefix + "optimal_loss")
      rel = Numbers.derived("ratio", [g, opt],
                            abs(value_of(g)) / max(abs(value_of(opt)), 1e-300)
                            if finite(value_of(g)) and finite(value_of(opt)) else None,
                            absolute=True)
      conds.append({"lhs": rel, "op": "<", "rhs": thr})
      nums += [g, rel]
    b.verdict("E3/E4", "UFM+ attains the Theorem 1/2 minimum"
              + (f" (every one of {len(prefixes)} seeds)" if many else ""), setup_text(run),
              conds, nums + [optimal], f"holds if |gap| / |optimal_loss| < {thr}"
              + (" for every seed" if many else ""), "docs/theory.md#theorem-1, #theorem-2")
