"""Check ``references``: numbers of the runs against reference values
(docs/theory.md#reference-values).

Option ``values``: a list of ``{"run", "key", "value", "op": "approx" | "<" | ">", "tol",
"claim", "source"}``; ``run`` is a run (setting) name, ``key`` a result.json key path, a
metrics.jsonl key (last logged epoch) or ``computed:WHAT`` for a number computed from the
saved embeddings (``gram``, ``angle_values``, ``dist_etf_weighted``, ``counts``). ``approx``
holds if |number - value| <= ``tol`` (default 1e-6); ``<`` and ``>`` compare. A reference
whose run is missing, unfinished or without the number is "inconclusive", naming it.
"""

from __future__ import annotations

from experiments.report.labels import setup_text
from experiments.report.numbers import Numbers, missing, value_of
from experiments.report.runs import finite, unfinished
from experiments.spec import setting_name


def _record(b, run, name: str, key: str) -> dict:
  """The number a reference compares, or a record saying why it is missing."""
  if run is None:
    return missing(f"run {name} is missing")
  if key.startswith("computed:"):
    rec = b.num.computed(run, key.split(":", 1)[1])
    reason = unfinished(run)
    if rec is None:
      return missing(f"run {run.name}: no saved embeddings for {key}")
    return {**rec, "missing": reason} if reason else rec
  if run.kind == "ufm":
    # The kinds differ: a solve's number is its result.json's; a training run's is its last
    # logged epoch's, missing while the run is unfinished.
    return b.num.field_evidence(run, key)
  return b.num.evidence(run, key)


def check(b, runs, values=()):
  by_name = {}
  for run in runs:
    by_name.setdefault(run.name, run)
    by_name.setdefault(setting_name(run.name), run)
  for ref in values:
    run = by_name.get(ref["run"])
    rec = _record(b, run, ref["run"], ref["key"])
    setup = setup_text(run) if run is not None else ref["run"]
    op = ref.get("op", "approx")
    claim = ref.get("claim") or f"{ref['key']} of {ref['run']} matches the reference value"
    if op == "approx":
      tol = ref.get("tol", 1e-6)
      value = value_of(rec)
      diff = Numbers.derived("abs_difference", [rec],
                             abs(value - ref["value"]) if finite(value) else None,
                             reference=ref["value"])
      b.verdict("references", claim, setup, [{"lhs": diff, "op": "<=", "rhs": tol}],
                [rec, diff], f"holds if |{ref['key']} - {ref['value']}| <= {tol}",
                ref.get("source", ""), key=f"{ref['run']}:{ref['key']}")
    else:
      b.verdict("references", claim, setup,
                [{"lhs": rec, "op": op, "rhs": ref["value"]}], [rec],
                f"holds if {ref['key']} {op} {ref['value']}", ref.get("source", ""),
                key=f"{ref['run']}:{ref['key']}:{op}")
