"""Check ``gram_prediction``: the UFM+ (not the UFM) predicts the Gram matrix of a trained
ReLU network (docs/theory.md#centering, D.1.3).

Each trained SCL network with a final ReLU, beside the first UFM+ and the first UFM solve
(SCL) with its number of classes: holds if the scale-free distance
||G/||G||_F - G_UFM+/||G_UFM+||_F||_F of its class-mean Gram matrix to the UFM+ solution's
is below the same distance to the UFM solution's.
"""

from __future__ import annotations

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers, gram_distance


def check(b, runs):
  plus = base.ufm_scl_runs(runs, final_relu=True)
  minus = base.ufm_scl_runs(runs, final_relu=False)
  if not plus or not minus:
    return
  for run in base.train_runs(runs):
    if run.loss != "scl" or not run.relu:
      continue
    g_run = b.num.gram_record(run)
    if g_run is None:
      continue
    k = len(g_run["value"])
    a = [r for r in plus if (gr := b.num.gram_record(r)) and len(gr["value"]) == k]
    c = [r for r in minus if (gr := b.num.gram_record(r)) and len(gr["value"]) == k]
    if not a or not c:
      continue
    recs = []
    for ufm_run in (a[0], c[0]):
      g_ufm = b.num.gram_record(ufm_run)
      recs.append(Numbers.derived("gram_distance", [g_run, g_ufm],
                                  gram_distance(g_run["value"], g_ufm["value"])))
    b.verdict("E2/E3", "the UFM+ (not the UFM) predicts the Gram matrix of the trained "
              "ReLU network", f"{setup_text(run)}; UFM+: {a[0].name}; UFM: {c[0].name}",
              [{"lhs": recs[0], "op": "<", "rhs": recs[1]}], recs,
              "holds if ||G/||G||_F - G_UFM+/||G_UFM+||_F||_F < the same distance to the "
              "UFM solve", "docs/theory.md#centering, D.1.3", missing=base.incomplete([run]))
