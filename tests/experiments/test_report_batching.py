"""The report's batching section: observed certification epoch beside the advisor's prediction."""

import json

from experiments import report
from geometry import advisor, frames
from tests.experiments.experiments_synthetic import training_config, write_train


def _run(folder, so_far, advice):
  config = training_config(batch_size=5)
  write_train(folder, config, final_means=frames.orthogonal_frame(4, 4),
              dist_of_curve=[0.9, 0.5, 0.2, 0.05], acc_curve=[0.5, 0.8, 1.0, 1.0],
              extra={"batching_advice": advice})
  lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
  for line, value in zip(lines, so_far):
    line["of_unique_so_far"] = value
  (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_table_and_figure_show_observed_and_predicted_epochs(tmp_path):
  advice = advisor.advice_for_training([6, 6, 6, 6], 5, views=2, binding=0, batching="shuffle",
                                       seed=0, num_epochs=10, trials=100)
  # logged epochs 1, 3, 5, 10: the union first certified in (3, 5]
  _run(tmp_path / "runs" / "shuffled", [False, False, True, True], advice)
  _run(tmp_path / "runs" / "never", [False] * 4, advice)
  _run(tmp_path / "runs" / "no_advice", [False, True, True, True], None)
  out = tmp_path / "report"
  report.build_report([tmp_path / "runs"], out)
  data = json.loads((out / "report.json").read_text())
  table = next(t for t in data["tables"] if t["id"] == "batching_certification")
  rows = {row[0]: row for row in table["rows"]}
  assert set(rows) == {"shuffled", "never"}
  col = {name: i for i, name in enumerate(table["columns"])}
  shuffled = rows["shuffled"]
  assert shuffled[col["observed epoch"]]["value"] == 5
  assert shuffled[col["previous logged epoch"]]["value"] == 3
  assert rows["never"][col["observed epoch"]]["value"] is None
  mean = shuffled[col["predicted mean"]]
  assert mean["value"] == advice["epochs_until_of_unique"]["mean"]
  assert mean["source"].endswith("shuffled/run.json")
  assert shuffled[col["batch size"]]["value"] == 5
  assert shuffled[col["binding needed"]]["value"] == 1
  figure = next(f for f in data["figures"] if f["id"] == "batching")
  assert (out / figure["file"]).stat().st_size > 0
  assert [d["run"] for d in figure["data"]] == ["never", "shuffled"]
  html = (out / "index.html").read_text()
  assert "when the union first certified the OF" in html


def test_an_unreadable_run_json_drops_its_run_with_a_warning(tmp_path):
  _run(tmp_path / "runs" / "kept", [False, True, True, True], None)
  _run(tmp_path / "runs" / "broken", [False, True, True, True], None)
  (tmp_path / "runs" / "broken" / "run.json").write_text("{not json")
  out = tmp_path / "report"
  report.build_report([tmp_path / "runs"], out)
  data = json.loads((out / "report.json").read_text())
  assert not any(t["id"] == "batching_certification" for t in data["tables"])
  geometry = next(t for t in data["tables"] if t["id"] == "final_geometry")
  assert [row[0] for row in geometry["rows"]] == ["kept"]
  html = (out / "index.html").read_text()
  assert "broken left out:" in html and "broken/run.json: not valid JSON" in html
