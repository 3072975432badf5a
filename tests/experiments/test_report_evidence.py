"""No evidence, no verdict: a check whose runs are missing, unfinished, without the metric or
with a non-finite final value is "inconclusive" with a reason naming the run and epoch; a
complete set is judged on its numbers (docs/experiments.md#evidence).

The run folders are written here (experiments_synthetic.write_train: config.json with
num_epochs 10, metrics.jsonl at epochs 1, 3, 5, 10), then damaged by hand.
"""

import json

import numpy as np
import pytest

from experiments_synthetic import training_config, write_train
from experiments import report, spec
from experiments.report.numbers import outcome

FINAL = {"a": 0.02, "b": 0.04}       # final train dist_of, both below 0.1


def _runs(root):
  for name, ratio in (("a", 1.0), ("b", 10.0)):
    write_train(root / name, training_config(**{"data.ratio": ratio}), final_means=np.eye(4, 8),
                dist_of_curve=[0.9, 0.4, 0.07, FINAL[name]], acc_curve=[0.5, 0.9, 1.0, 1.0])
  return root


def _verdicts(root, names=("a", "b")):
  runs = report.discover([root])
  b = report.Builder(runs, root, checks=[spec.check("of_reached", runs=list(names),
                                                    thresholds={"train_of": 0.1})])
  return b.run_checks().verdicts


def _rewrite_last_line(path, change):
  lines = path.read_text().splitlines()
  last = json.loads(lines[-1])
  change(last)
  lines[-1] = json.dumps(last)       # json.dumps writes a NaN as NaN, None as null
  path.write_text("\n".join(lines) + "\n")


def test_no_condition_is_no_verdict():
  assert outcome([]) == "inconclusive"


def test_a_complete_set_holds_with_its_numbers(tmp_path):
  [v] = _verdicts(_runs(tmp_path))
  assert v["verdict"] == "holds" and v["missing"] == []
  assert [n["value"] for n in v["numbers"][:2]] == [FINAL["a"], FINAL["b"]]
  assert [n["epoch"] for n in v["numbers"][:2]] == [10, 10]
  # The threshold, decided per run, and the margin: 0.1 - dist_of.
  assert [c["margin"] for c in v["conditions"]] == pytest.approx([0.08, 0.06])


def test_a_deleted_run_is_named(tmp_path):
  root = _runs(tmp_path)
  for f in (root / "b").iterdir():
    f.unlink()
  (root / "b").rmdir()
  [v] = _verdicts(root)
  assert v["verdict"] == "inconclusive" and v["missing"] == ["run b is missing"]


def test_an_unfinished_run_is_named_with_its_last_epoch(tmp_path):
  root = _runs(tmp_path)
  metrics = root / "b" / "metrics.jsonl"
  metrics.write_text("\n".join(metrics.read_text().splitlines()[:2]) + "\n")   # epochs 1, 3
  (root / "b" / "embeddings_final.npz").unlink()                              # still running
  [v] = _verdicts(root)
  assert v["verdict"] == "inconclusive"
  assert v["missing"] == ["run b is unfinished: last logged epoch 3 < num_epochs 10"]


@pytest.mark.parametrize("change, said", [
    (lambda line: line.pop("dist_of"), "run b: no dist_of at its last logged epoch 10"),
    (lambda line: line.update(dist_of=float("nan")), "run b: dist_of at epoch 10 is nan"),
    (lambda line: line.update(dist_of=None), "run b: dist_of at epoch 10 is null")])
def test_a_final_line_without_a_finite_metric_is_never_replaced(tmp_path, change, said):
  # Epoch 5 logged dist_of 0.07 < 0.1: taking it as "final" would say "holds".
  root = _runs(tmp_path)
  _rewrite_last_line(root / "b" / "metrics.jsonl", change)
  [v] = _verdicts(root)
  assert v["verdict"] == "inconclusive" and v["missing"] == [said]


def test_an_empty_experiment_is_named(tmp_path):
  [v] = _verdicts(_runs(tmp_path), names=("x", "y"))
  assert v["verdict"] == "inconclusive"
  assert v["missing"][:2] == ["run x is missing", "run y is missing"]
  assert "x, y" in v["claim"]


def test_a_relu_symmetry_group_of_missing_runs_is_named(tmp_path):
  root = _runs(tmp_path)
  runs = report.discover([root])
  b = report.Builder(runs, root, checks=[spec.check("relu_symmetry", runs=["norelu"])])
  [v] = b.run_checks().verdicts
  assert v["verdict"] == "inconclusive" and "run norelu is missing" in v["missing"]
