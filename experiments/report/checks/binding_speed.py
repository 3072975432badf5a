"""Check ``binding_speed``: batch-binding speeds up convergence to the OF
(docs/theory.md#batch-binding, #e5).

Trained SCL networks with a final ReLU and binding, each beside the run of its group (runs
that differ only in ``binding`` and ``batching``) with the same batching and no binding: holds
if the first logged epoch with ``dist_of`` < ``convergence_of`` is earlier with binding
(never counts as infinity); when neither run gets there, if the final ``dist_of`` is lower
with binding.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import value_of
from experiments.report.runs import embedding_relu, study_groups

FIELDS = ("binding", "batching")


def pairs(runs):
  """[(run with binding, its partner without)] of the SCL ReLU runs of the binding study."""
  out = []
  for _, group in study_groups(base.train_runs(runs), FIELDS):
    for run in group:
      if not run.flat.get("binding", 0) or run.flat.get("loss", "scl") != "scl":
        continue
      partner = next((r for r in group if not r.flat.get("binding", 0)
                      and r.flat.get("batching") == run.flat.get("batching")), None)
      if partner is not None and embedding_relu(run.flat):
        out.append((run, partner))
  return out


def check(b, runs):
  thr = b.t["convergence_of"]
  for run, partner in pairs(runs):
    a = b.num.first_epoch(run, "dist_of", thr, "first_epoch_below")
    c = b.num.first_epoch(partner, "dist_of", thr, "first_epoch_below")
    setup = setup_text(run, skip=["binding"])
    claim = "batch-binding speeds up convergence to the OF"
    if value_of(a) is None and value_of(c) is None:
      fa, fc = b.num.final(run, "dist_of"), b.num.final(partner, "dist_of")
      b.verdict("E5", claim, setup, [{"lhs": fa, "op": "<", "rhs": fc}], [a, c, fa, fc],
                f"neither run reached dist_of < {thr}; holds if the final dist_of with "
                f"binding ({run.name}) is below the one without ({partner.name})",
                "docs/theory.md#batch-binding, #e5")
    else:
      b.verdict("E5", claim, setup, [{"lhs": a, "op": "<", "rhs": c, "missing": "infinity"}],
                [a, c], f"holds if the first logged epoch with dist_of < {thr} is earlier with "
                f"binding ({run.name}) than without ({partner.name}); never = infinity",
                "docs/theory.md#batch-binding, #e5")
