"""Check ``binding_speed``: batch-binding speeds up convergence to the OF
(docs/theory.md#batch-binding, #e5).

Trained SCL networks with a final ReLU and binding, each beside the run of its group (runs
that differ only in ``binding`` and ``batching``) with the same batching and no binding: holds
if the first logged epoch with ``dist_of`` < ``convergence_of`` is earlier with binding
(never counts as infinity); when neither run gets there, if the final ``dist_of`` is lower
with binding. With ``at_most=f`` the claim is quantitative: binding's first epoch must be
<= f x its partner's (a partner that never gets there counts as infinity, so binding must get
there by the end), and binding must get there in any case.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import value_of
from experiments.report.runs import study_groups

FIELDS = ("binding", "batching")


def pairs(runs):
  """[(run with binding, its partner without)] of the SCL ReLU runs of the binding study."""
  out = []
  for _, group in study_groups(base.train_runs(runs), FIELDS):
    for run in group:
      if not run.binding or run.loss != "scl":
        continue
      partner = next((r for r in group if not r.binding and r.batching == run.batching), None)
      if partner is not None and run.relu:
        out.append((run, partner))
  return out


def check(b, runs, at_most: float | None = None):
  thr = b.t["convergence_of"]
  for run, partner in pairs(runs):
    a = b.num.first_epoch(run, "dist_of", thr, "first_epoch_below")
    c = b.num.first_epoch(partner, "dist_of", thr, "first_epoch_below")
    setup = setup_text(run, skip=["binding"])
    # A first epoch of a run that stopped early is not "never": no verdict without the end.
    missing = base.incomplete([run, partner])
    claim = "batch-binding speeds up convergence to the OF"
    if at_most is not None:
      # Binding never got there: its final dist_of (>= thr, or missing) decides.
      conds = ([{"lhs": b.num.evidence(run, "dist_of"), "op": "<", "rhs": thr}]
               if value_of(a) is None else
               [{"lhs": a, "op": "<=", "rhs": c, "factor": float(at_most),
                 "missing": "infinity"}])
      b.verdict("E5", claim, setup, conds, [a, c],
                f"holds if binding ({run.name}) reaches dist_of < {thr} at a logged epoch at "
                f"most {at_most:g} x the first one without ({partner.name}); never = "
                "infinity", "docs/theory.md#batch-binding, #e5", missing=missing)
    elif value_of(a) is None and value_of(c) is None:
      fa, fc = b.num.evidence(run, "dist_of"), b.num.evidence(partner, "dist_of")
      b.verdict("E5", claim, setup, [{"lhs": fa, "op": "<", "rhs": fc}], [a, c, fa, fc],
                f"neither run reached dist_of < {thr}; holds if the final dist_of with "
                f"binding ({run.name}) is below the one without ({partner.name})",
                "docs/theory.md#batch-binding, #e5", missing=missing)
    else:
      b.verdict("E5", claim, setup, [{"lhs": a, "op": "<", "rhs": c, "missing": "infinity"}],
                [a, c], f"holds if the first logged epoch with dist_of < {thr} is earlier with "
                f"binding ({run.name}) than without ({partner.name}); never = infinity",
                "docs/theory.md#batch-binding, #e5", missing=missing)
