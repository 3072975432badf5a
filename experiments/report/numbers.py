"""Numbers with provenance: every number of a report names where it comes from.

A provenance record is one of

- ``{"value": v, "source": "run/metrics.jsonl", "line": i, "key": "dist_of"}``: line ``i``
  (0-based) of a JSON-lines file, key path ``key`` (dots separate nested keys / list indices);
- ``{"value": v, "source": "run/result.json", "key": "seeds.0.loss"}``: a JSON file;
- ``{"values": [...], "x": [...], "x_key": "epoch", "source": ..., "key": ..., "lines": [...]}``:
  a curve read from a JSON-lines file;
- ``{"value": v, "source": "run/embeddings_final.npz", "computed": "gram"}``: computed from
  saved embeddings with `geometry.metrics` (``gram``, ``angle_values``, ``dist_etf_weighted``);
- ``{"value": v, "derived": OP, "from": [...], ...}``: a simple function of other numbers
  (``difference``, ``ratio``, ``max``, ``first_epoch_at_least``, ``first_epoch_below``,
  ``min_difference``, ``gram_distance``, ``median``, ...).

Source paths are relative to the report's folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from experiments.report.runs import Run, get_path, has_path, num_classes, unfinished, usable
from geometry import frames, metrics


class Numbers:
  """Makes provenance records (see the module docstring); sources relative to the report."""

  def __init__(self, out_dir: Path):
    self.out_dir = out_dir

  def rel(self, path: Path) -> str:
    return os.path.relpath(Path(path).resolve(), self.out_dir.resolve())

  def json_value(self, run: Run, key: str) -> dict:
    return {"value": get_path(run.data, key), "source": self.rel(run.data_file), "key": key}

  def field(self, run: Run, name: str) -> dict | None:
    """A result field of a solve (result.json); None when absent (a training run has none)."""
    key = run.field_key(name)
    return None if key is None else self.json_value(run, key)

  def record_value(self, run: Run, key: str) -> dict:
    """A fact of the run's run.json (dotted key: "batching.batch_size")."""
    return {"value": get_path(run.record, key), "source": self.rel(run.record_file), "key": key}

  def setting(self, run: Run, name: str) -> dict | None:
    """A field of the run's definition (``Run.get``), from its run.json; None when absent."""
    if not has_path(run.settings, name):
      return None
    return self.record_value(run, f"{run.settings_key}.{name}")

  def result(self, run: Run, key: str) -> dict | None:
    """A run's result `key`: a solve's result.json field, or a training run's value at its
    last logged epoch (`final`); one of them is always absent (a solve logs no epochs)."""
    return self.field(run, key) or self.final(run, key)

  def field_evidence(self, run: Run, name: str) -> dict:
    """A result.json field as a verdict may use it (see `evidence`)."""
    rec = self.field(run, name)
    if rec is None:
      return missing(f"run {run.name}: {run.data_file.name} has no {name}")
    if rec["value"] is None or (isinstance(rec["value"], float) and not math.isfinite(rec["value"])):
      return {**rec, "missing": f"run {run.name}: {name} is {rec['value']}"}
    return rec

  def line_value(self, run: Run, line: int, key: str) -> dict:
    record = {"value": get_path(run.metrics[line], key),
              "source": self.rel(run.path / "metrics.jsonl"), "line": line, "key": key}
    if "epoch" in run.metrics[line]:
      record["epoch"] = run.metrics[line]["epoch"]
    return record

  def final(self, run: Run, key: str) -> dict | None:
    """`key` at the run's last logged epoch (None when that line lacks it; a NaN stays NaN,
    never replaced by an earlier epoch's value)."""
    line = run.final_line
    if line is None or not has_path(run.metrics[line], key):
      return None
    return self.line_value(run, line, key)

  def evidence(self, run: Run, key: str) -> dict:
    """`key` at the run's final epoch as a verdict may use it: the `final` record, or a
    record with value None and ``missing`` naming why there is none (the run is unfinished,
    has no such key at its last epoch, or logged NaN / null there)."""
    reason = unfinished(run)
    rec = self.final(run, key)
    if reason is not None:
      return missing(reason, **({"at_last_logged": rec} if rec is not None else {}))
    if rec is None:
      return missing(f"run {run.name}: no {key} at its last logged epoch {run.last_epoch}")
    if not usable(rec["value"]):
      shown = "null" if rec["value"] is None else str(rec["value"])
      return {**rec, "missing": f"run {run.name}: {key} at epoch {run.last_epoch} is {shown}"}
    return rec

  def series(self, run: Run, key: str) -> dict:
    lines = run.metric_lines(key)
    return {"values": [get_path(run.metrics[i], key) for i in lines],
            "x": [run.metrics[i]["epoch"] for i in lines], "x_key": "epoch", "lines": lines,
            "source": self.rel(run.path / "metrics.jsonl"), "key": key}

  def computed(self, run: Run, what: str) -> dict | None:
    """A metric computed from the saved embeddings with geometry.metrics."""
    loaded = run.embeddings()
    if loaded is None:
      return None
    emb, labels = loaded
    k = int(labels.max()) + 1
    means, counts = metrics.class_means(emb, labels, k)
    if what == "gram":
      value = metrics.gram(means).tolist()
    elif what == "angle_values":
      value = metrics.angle_values(means).tolist()
    elif what == "dist_etf_weighted":
      value = metrics.dist_etf(means, weights=counts)
    elif what == "counts":
      value = counts.tolist()
    else:
      raise ValueError(what)
    return {"value": value, "source": self.rel(run.embeddings_file), "computed": what}

  @staticmethod
  def derived(op: str, sources: list, value, **extra) -> dict:
    return {"value": value, "derived": op, "from": sources, **extra}

  def first_epoch(self, run: Run, key: str, threshold: float, op: str) -> dict:
    """First logged epoch with `key` >= threshold (op "first_epoch_at_least") or < threshold
    ("first_epoch_below"); None when never."""
    s = self.series(run, key)
    hit = None
    for x, v in zip(s["x"], s["values"]):
      if (v >= threshold) if op == "first_epoch_at_least" else (v < threshold):
        hit = x
        break
    return {"value": hit, "derived": op, "threshold": threshold, "source": s["source"],
            "key": key}

  def gram_record(self, run: Run) -> dict | None:
    """The Gram matrix of a run's class means: result.json's, the last logged one, or
    computed from the saved embeddings."""
    return self.result(run, "gram") or self.computed(run, "gram")

  def zero_error(self, runs: list[Run], threshold: float):
    """({run name: first epoch with ncc_acc_train >= threshold}, the latest of them)."""
    per_run = {r.name: self.first_epoch(r, "ncc_acc_train", threshold, "first_epoch_at_least")
               for r in runs}
    values = [value_of(x) for x in per_run.values() if value_of(x) is not None]
    overall = Numbers.derived("max", list(per_run.values()), max(values) if values else None)
    return per_run, overall


def floor_gap(num: Numbers, run: Run) -> dict:
  """A run's training loss against its OF floor (docs/theory.md#loss-floor): the curves
  ``loss`` and ``floor``, ``gap`` = loss - floor on their common epochs, ``min_gap`` its
  minimum and ``final_rel`` = (loss - floor) / floor at the last common epoch (both None
  without a common epoch)."""
  loss = num.series(run, "train_loss")
  floor = num.series(run, "optimal_loss")
  common = sorted(set(loss["x"]) & set(floor["x"]))
  lv = dict(zip(loss["x"], loss["values"]))
  fv = dict(zip(floor["x"], floor["values"]))
  gap = [lv[e] - fv[e] for e in common]
  out = {"loss": loss, "floor": floor, "common": common, "gap_values": gap,
         "gap": Numbers.derived("difference", [loss, floor], gap, x=common),
         "min_gap": None, "final_rel": None}
  if gap:
    out["min_gap"] = Numbers.derived("min_difference", [loss, floor], min(gap))
    last = common[-1]
    line_l = next(i for i in loss["lines"] if run.metrics[i]["epoch"] == last)
    line_f = next(i for i in floor["lines"] if run.metrics[i]["epoch"] == last)
    lrec = num.line_value(run, line_l, "train_loss")
    frec = num.line_value(run, line_f, "optimal_loss")
    out["final_rel"] = Numbers.derived(
        "ratio", [Numbers.derived("difference", [lrec, frec], lv[last] - fv[last]), frec],
        (lv[last] - fv[last]) / fv[last] if fv[last] else None)
  return out


def missing(reason: str, **extra) -> dict:
  """A number a verdict needs but the runs do not have: value None, ``missing`` says why."""
  return {"value": None, "missing": reason, **extra}


def missing_reasons(node) -> list[str]:
  """The ``missing`` reasons of a record and of the records it is derived from."""
  if isinstance(node, dict):
    # A condition's own "missing" option ("infinity") is a rule, not a reason: records only.
    own = ([node["missing"]] if isinstance(node.get("missing"), str)
           and ("value" in node or "values" in node) else [])
    return own + [r for k, v in node.items() if k in ("from", "lhs", "rhs")
                  for r in missing_reasons(v)]
  if isinstance(node, list):
    return [r for v in node for r in missing_reasons(v)]
  return []


def value_of(record):
  """The value of a record (None for no record)."""
  return None if record is None else record["value"]


def cosines_from_gram(gram) -> np.ndarray:
  """G_ij / sqrt(G_ii G_jj)."""
  g = np.asarray(gram, np.float64)
  d = np.sqrt(np.maximum(np.diag(g), np.finfo(np.float64).tiny))
  return g / np.outer(d, d)


def gram_distance(a, b) -> float:
  """|| A/||A||_F - B/||B||_F ||_F (scale-free distance between Gram matrices)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))


def compare(lhs, op: str, rhs, missing: str | None = None) -> bool | None:
  """lhs op rhs, or None (undecidable) when a number is missing (None or NaN).

  With ``missing="infinity"`` a missing number means "never" (a first epoch that was not
  reached) and counts as +infinity; two missing numbers stay undecidable.
  """
  def bad(x):
    return x is None or (isinstance(x, float) and math.isnan(x))
  if op == "==":
    return None if bad(lhs) else lhs == rhs
  if bad(lhs) and bad(rhs):
    return None
  if bad(lhs) or bad(rhs):
    if missing != "infinity":
      return None
    lhs = math.inf if bad(lhs) else lhs
    rhs = math.inf if bad(rhs) else rhs
  return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}[op]


def _side(value, cond):
  return value_of(value) if isinstance(value, dict) else value


def judge(cond: dict) -> bool | None:
  """One condition ``{"lhs", "op", "rhs"[, "missing", "factor", "noise"]}``: ``lhs op
  factor * rhs``, or None (undecidable). With ``noise`` n (e.g. two standard errors of a
  difference of seed means) the comparison must hold for every lhs in [lhs - n, lhs + n]
  to hold, fails when it fails for every one, and is None (the seeds cannot tell) otherwise."""
  lhs, rhs = _side(cond["lhs"], cond), _side(cond["rhs"], cond)
  if rhs is not None and "factor" in cond and finite_number(rhs):
    rhs = rhs * cond["factor"]
  noise = _side(cond.get("noise"), cond) or 0.0
  if not noise or cond["op"] == "==" or not finite_number(lhs):
    return compare(lhs, cond["op"], rhs, cond.get("missing"))
  worst, best = ((lhs - noise, lhs + noise) if cond["op"] in (">", ">=") else
                 (lhs + noise, lhs - noise))
  if compare(worst, cond["op"], rhs, cond.get("missing")):
    return True
  if compare(best, cond["op"], rhs, cond.get("missing")) is False:
    return False
  return None


def finite_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def margin(cond: dict) -> float | None:
  """By how much a condition holds (> 0) or fails (< 0): rhs - lhs for < and <=, lhs - rhs
  for > and >=, less the condition's ``noise``; None for == or a missing number."""
  lhs, rhs = _side(cond["lhs"], cond), _side(cond["rhs"], cond)
  if not (finite_number(lhs) and finite_number(rhs)) or cond["op"] == "==":
    return None
  rhs = rhs * cond.get("factor", 1.0)
  noise = _side(cond.get("noise"), cond) or 0.0
  return (rhs - lhs if cond["op"] in ("<", "<=") else lhs - rhs) - noise


def outcome(conditions: list[dict]) -> str:
  """"holds" when every condition holds (`judge`), "does not hold" when one fails,
  "inconclusive" when one is undecidable (a number missing, None / NaN, or within the seeds'
  noise) or there is no condition (no evidence, no verdict)."""
  if not conditions:
    return "inconclusive"
  result_text = "holds"
  for cond in conditions:
    result = judge(cond)
    if result is None:
      return "inconclusive"
    if not result:
      result_text = "does not hold"
  return result_text


def etf_dist_of(k: int) -> float:
  """dist_of of the simplex ETF of K classes (`geometry.metrics.dist_of`), the distance
  between the two geometries the paper contrasts: 0.320 at K = 10, 0.100 at K = 100 (about
  1/sqrt(K) for large K)."""
  return metrics.dist_of(frames.simplex_etf(k, k))


def relative_threshold(run, absolute, fraction: float, name: str) -> dict:
  """The threshold of a "geometry is an OF / an ETF" verdict on `run`: `absolute` when set,
  else ``fraction x dist_of(ETF_K)`` for the run's K, as a record naming K (missing when K
  is unknown)."""
  if absolute is not None:
    return {"value": absolute, "derived": "threshold", "name": name}
  k = num_classes(run)
  if not k or k < 2:
    return missing(f"run {run.name}: number of classes unknown, so the {name} threshold "
                   f"({fraction} x dist_of(ETF_K)) is unknown")
  ref = etf_dist_of(k)
  return {"value": fraction * ref, "derived": "threshold", "name": name, "fraction": fraction,
          "K": k, "etf_dist_of": ref, "formula": f"{fraction} x dist_of(ETF_{k}) = "
          f"{fraction} x {ref:.4g}"}


def noise_of_difference(a: dict, b: dict, z: float = 2.0) -> dict:
  """z standard errors of the difference of two seed means a - b:
  z sqrt(s_a^2 / n_a + s_b^2 / n_b), s the seeds' sample standard deviation (ddof 1). A
  number of one run (no seeds) has no spread: 0."""
  parts, per = [], []
  for rec in (a, b):
    values = [value_of(r) for r in (rec or {}).get("from", [])] \
        if (rec or {}).get("derived") == "mean" else []
    values = [v for v in values if finite_number(v)]
    per.append(values)
    if len(values) >= 2:
      parts.append(float(np.var(values, ddof=1)) / len(values))
  value = z * math.sqrt(math.fsum(parts)) if parts else 0.0
  return {"value": value, "derived": "standard_errors", "z": z, "seeds": [len(v) for v in per],
          "from": [rec for rec in (a, b) if rec]}
