"""Check ``ufm_certificate``: with C1 or C2 violated, UFM+ minimizers that are not an OF exist
(docs/theory.md#theorem-2, #ref-c1, #ref-c2).

UFM+ solves (SCL, ReLU) whose batching's certificate fails (result.json
``certificate.of_unique`` false, or a schedule file that fails it): holds if the largest
``dist_of`` over the solution(s) (every seed of a multi-seed solve) is > ``ufm_not``.
"""

from __future__ import annotations

import math

from experiments.report.checks import base
from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers, value_of
from experiments.report.runs import finite


def check(b, runs):
  for run in base.ufm_scl_runs(runs, final_relu=True):
    if base.certificate(run) is not False:
      continue
    thr = b.t["ufm_not"]
    dists = [b.num.json_value(run, prefix + "dist_of") for prefix in base.seed_prefixes(run)]
    values = [value_of(d) for d in dists]
    # A seed without a finite dist_of leaves the largest one unknown.
    worst = Numbers.derived("max", dists, max(values) if all(finite(x) for x in values)
                            else math.nan)
    b.verdict("E4", "with C1/C2 violated, minimizers that are not an OF exist", setup_text(run),
              [{"lhs": worst, "op": ">", "rhs": thr}], dists + [worst],
              f"holds if the largest dist_of over the {len(dists)} solution(s) is > {thr} "
              "(the batching's C1/C2 certificate fails; that the solutions reach the "
              "minimum is the verdict above)", "docs/theory.md#theorem-2, #ref-c1, #ref-c2")
