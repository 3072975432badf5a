"""Check ``tau_steps``: UFM+ needs more solver steps at a smaller τ (docs/theory.md#ufm:
the negative-pair gradients scale like e^{-1/τ}).

UFM+ solves (SCL, ReLU) that differ only in τ, sorted by τ: holds if the step count does not
increase with τ.
"""

from __future__ import annotations

import json

from experiments.report.checks import base
from experiments.report.labels import fmt, setup_text

_SAME = ("sizes", "dim", "batching", "binding", "seed", "dtype")


def check(b, runs):
  groups: dict[str, list] = {}
  for run in base.ufm_scl_runs(runs, final_relu=True):
    key = json.dumps({k: run.get(k) for k in _SAME}, sort_keys=True, default=str)
    groups.setdefault(key, []).append(run)
  for group in groups.values():
    temperatures = sorted({run.get("tau") for run in group if run.get("tau") is not None})
    if len(temperatures) < 2:
      continue
    group = sorted(group, key=lambda r: r.get("tau"))
    steps = [b.num.field_evidence(r, "steps") for r in group]
    conds = [{"lhs": steps[i], "op": ">=", "rhs": steps[i + 1]} for i in range(len(group) - 1)]
    b.verdict("E6", "UFM+: a smaller τ needs more solver steps",
              setup_text(group[0], skip=["tau"]) + "; τ = "
              + ", ".join(fmt(t) for t in temperatures),
              conds, steps, "holds if the step count does not increase with τ (runs sorted by τ)",
              "docs/theory.md#ufm (negative-pair gradients scale like e^{-1/τ})")
