"""A damaged line or file of one run costs that run only: one warning naming the file and line
(stderr, report.json, the page), the run left out or its verdicts inconclusive, never judged on
an earlier epoch or on default settings; the other runs are reported (docs/faults.md)."""

import json

import numpy as np

from experiments_synthetic import training_config, write_train
from experiments import report, spec


def _runs(root):
  for name, ratio in (("a", 1.0), ("b", 10.0)):
    write_train(root / name, training_config(**{"data.ratio": ratio}), final_means=np.eye(4, 8),
                dist_of_curve=[0.9, 0.4, 0.07, 0.03], acc_curve=[0.5, 0.9, 1.0, 1.0])
  return root


def _report(tmp_path, capsys, check_runs=("a", "b")):
  out = tmp_path / "report"
  report.build_report([tmp_path / "runs"], out,
                      checks=[spec.check("of_reached", runs=list(check_runs))])
  _, err = capsys.readouterr()
  assert "Traceback" not in err
  shown = json.loads((out / "report.json").read_text())
  return shown, (out / "index.html").read_text(), err


def test_a_line_that_is_not_an_object_is_one_warning(tmp_path, capsys):
  root = _runs(tmp_path / "runs")
  lines = (root / "b" / "metrics.jsonl").read_text().splitlines()
  lines.insert(1, "42")
  (root / "b" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  shown, page, err = _report(tmp_path, capsys)
  [warning] = shown["warnings"]
  assert "b/metrics.jsonl: line 2 not a JSON object (42)" in warning
  assert warning in err and "line 2 not a JSON object" in page
  # The other epochs of b are intact (its last one included): both runs are judged.
  [v] = shown["verdicts"]
  assert v["verdict"] == "holds" and [n["value"] for n in v["numbers"][:2]] == [0.03, 0.03]


def test_a_half_cut_last_line_is_not_replaced_by_the_epoch_before(tmp_path, capsys):
  root = _runs(tmp_path / "runs")
  text = (root / "b" / "metrics.jsonl").read_text().rstrip("\n")
  (root / "b" / "metrics.jsonl").write_text(text[: len(text) - 40])   # inside the last line
  shown, page, _ = _report(tmp_path, capsys)
  [warning] = shown["warnings"]
  assert "b/metrics.jsonl: line 4 not JSON (cut short?)" in warning and "line 4" in page
  [v] = shown["verdicts"]
  # Epoch 5's dist_of is 0.07 < 0.1: read as final it would say "holds".
  assert v["verdict"] == "inconclusive"
  assert v["missing"] == ["run b is unfinished: last logged epoch 5 < num_epochs 10"]


def test_an_empty_config_is_left_out_not_judged_on_defaults(tmp_path, capsys):
  root = _runs(tmp_path / "runs")
  # The report reads a run's config from run.json (extra.config), never config.json.
  record = json.loads((root / "b" / "run.json").read_text())
  record["extra"]["config"] = {}
  (root / "b" / "run.json").write_text(json.dumps(record))
  shown, page, _ = _report(tmp_path, capsys)
  [warning] = shown["warnings"]
  assert warning.startswith("b left out:")
  assert ("b/run.json: no extra.config.seed, extra.config.data.imbalance, "
          "extra.config.data.ratio") in warning
  assert "b left out" in page
  assert [r["name"] for r in shown["runs"]] == ["a"]
  [v] = shown["verdicts"]
  assert v["verdict"] == "inconclusive" and v["missing"] == ["run b is missing"]
