"""Check ``tau_steps``: UFM+ needs more solver steps at a smaller τ (docs/theory.md#ufm:
the negative-pair gradients scale like e^{-1/τ}).

UFM+ solves (SCL, ReLU) that differ only in τ, sorted by τ: holds if the step count strictly
decreases with τ (a tie is not "more steps"). A multi-seed solve is read as the mean of its
seeds' steps, and a comparison holds only beyond two standard errors of the difference of the
means (inconclusive within them).
"""

from __future__ import annotations

import json

from experiments.report.checks import base
from experiments.report.labels import fmt, setup_text
from experiments.report.numbers import Numbers, finite_number, noise_of_difference, value_of


def _steps(b, run) -> dict:
  """A solve's step count: the mean over its seeds (result.json ``seeds``), else ``steps``."""
  prefixes = base.seed_prefixes(run)
  if prefixes == [""]:
    return b.num.field_evidence(run, "steps")
  recs = [b.num.field_evidence(run, p + "steps") for p in prefixes]
  values = [value_of(r) for r in recs]
  reasons = [r["missing"] for r in recs if r.get("missing")]
  mean = sum(values) / len(values) if not reasons else None
  return Numbers.derived("mean", recs, mean, **({"missing": "; ".join(reasons)} if reasons else {}))


def _difference(a, c):
  va, vc = value_of(a), value_of(c)
  return va - vc if finite_number(va) and finite_number(vc) else None

_SAME = ("sizes", "dim", "batching", "binding", "seed", "dtype")


def check(b, runs):
  groups: dict[str, list] = {}
  for run in base.ufm_scl_runs(runs, final_relu=True):
    key = json.dumps({k: run.get(k) for k in _SAME}, sort_keys=True, default=str)
    groups.setdefault(key, []).append(run)
  for group in groups.values():
    temperatures = sorted({run.temperature for run in group if run.temperature is not None})
    if len(temperatures) < 2:
      continue
    group = sorted(group, key=lambda r: r.temperature)
    steps = [_steps(b, r) for r in group]
    conds = [{"lhs": Numbers.derived("difference", [steps[i], steps[i + 1]],
                                     _difference(steps[i], steps[i + 1])),
              "op": ">", "rhs": 0, "noise": noise_of_difference(steps[i], steps[i + 1])}
             for i in range(len(group) - 1)]
    b.verdict("E6", "UFM+: a smaller τ needs more solver steps",
              setup_text(group[0], skip=["temperature"]) + "; τ = "
              + ", ".join(fmt(t) for t in temperatures),
              conds, steps, "holds if the step count strictly decreases with τ (runs sorted by "
              "τ; over a solve's seeds: its mean, beyond 2 standard errors of the difference)",
              "docs/theory.md#ufm (negative-pair gradients scale like e^{-1/τ})")
