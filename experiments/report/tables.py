"""Tables of the report: training runs at their last epoch, NCC accuracies (and the paired
differences the accuracy check reads), and the UFM / UFM+ solves."""

from __future__ import annotations

from experiments.report.labels import run_label, setup_text
from experiments.report.numbers import Numbers, value_of
from experiments.report.runs import finite, group_runs

ACCURACY_KEYS = ("ncc_acc_train", "ncc_acc_test", "ncc_maj_test", "ncc_min_test")
UFM_KEYS = ("loss", "of_loss", "optimal_loss", "gap", "dist_of", "dist_etf", "nc1",
            "mean_cos", "converged", "steps", "seconds", "fraction_of")
# Paired switches: (the fields the pair may differ in, the switch).
PAIRS = ((["model.final_relu", "model.extra_linear"], "model.final_relu"),
         (["binding"], "binding"))


def _table(table_id: str, title: str, caption: str, columns, rows) -> dict:
  return {"id": table_id, "title": title, "caption": caption, "columns": list(columns),
          "rows": rows}


def accuracy_pairs(num, runs) -> list:
  """[(switch, fields, run with it on, run with it off, [difference records])]: SCL runs
  that differ only in a switch, with their differences of the last-epoch test accuracies
  (balanced, majority, minority)."""
  out = []
  for fields, flag in PAIRS:
    for group in group_runs(runs, fields):
      on = [r for r in group if r.flat.get(flag)]
      off = [r for r in group if not r.flat.get(flag)]
      for a in on:
        for b in off:
          if a.loss != "scl":
            continue
          diffs = []
          for key in ACCURACY_KEYS[1:]:
            ra, rb = num.evidence(a, key), num.evidence(b, key)
            diff = (None if ra is None or rb is None or not finite(value_of(ra)) or
                    not finite(value_of(rb)) else value_of(ra) - value_of(rb))
            diffs.append(Numbers.derived("difference", [ra, rb], diff))
          out.append((flag, fields, a, b, diffs))
  return out


def add_accuracy_table(b):
  rows = []
  for run in b.train:
    if run.final_line is None:
      continue
    rows.append([run.name, run_label(run), setup_text(run)]
                + [b.num.final(run, k) for k in ACCURACY_KEYS])
  if not rows:
    return
  b.tables.append(_table(
      "accuracy", "NCC accuracy at the last logged epoch",
      "Nearest-class-centre accuracy with the train class means (docs/theory.md#ncc): "
      "balanced train / balanced test / test majority / test minority classes.",
      ["run", "variant", "setup", "train (balanced)", "test (balanced)", "test majority",
       "test minority"], rows))
  pairs = [["ReLU - no ReLU" if flag == "model.final_relu" else "binding - no binding",
            on.name, off.name, setup_text(on, skip=fields)] + diffs
           for flag, fields, on, off, diffs in accuracy_pairs(b.num, b.train)]
  if pairs:
    b.tables.append(_table(
        "accuracy_pairs", "Accuracy differences of paired runs",
        "Differences of the last-epoch NCC test accuracies between runs that differ only in "
        "the named switch.", ["comparison", "run A", "run B", "setup", "Δ test (balanced)",
                              "Δ test majority", "Δ test minority"], pairs))


def add_geometry_table(b):
  keys = ("dist_of", "dist_etf", "nc1", "mean_cos", "train_loss", "optimal_loss",
          "test_dist_of", "of_unique_so_far")
  rows = []
  for run in b.train:
    line = run.final_line
    if line is None:
      continue
    rows.append([run.name, run_label(run), b.num.line_value(run, line, "epoch")]
                + [b.num.final(run, k) for k in keys])
  if rows:
    b.tables.append(_table(
        "final_geometry", "Training runs at the last logged epoch",
        "Train-set geometry (docs/theory.md#metrics), the mean training loss of the epoch and "
        "its OF floor, the test-set dist_of, and whether the batches seen so far certify the "
        "OF as the unique UFM+ minimizer (C1 and C2).",
        ["run", "variant", "epoch", "dist_of", "dist_etf", "nc1", "mean_cos", "train loss",
         "OF floor", "test dist_of", "OF unique so far"], rows))


def add_ufm_table(b):
  if not b.ufm:
    return
  rows = []
  for run in b.ufm:
    rec = {k: b.num.field(run, k) for k in UFM_KEYS}
    weighted = b.num.computed(run, "dist_etf_weighted")
    rows.append([run.name, setup_text(run)] + [rec[k] for k in UFM_KEYS] + [weighted])
  b.tables.append(_table(
      "ufm", "UFM / UFM+ solves",
      "Objective (sum form), the closed-form OF objective of the batching, the gap to the "
      "Theorem 1/2 minimum (UFM+ SCL only), geometry of the solution, and dist_etf after "
      "centering by the class-size-weighted mean (docs/theory.md#centering).",
      ["run", "setup", *UFM_KEYS, "dist_etf (weighted centering)"], rows))
