"""The report reads run folders that a fault left broken: each broken run is named on one
line of stderr and left out, and every good run is still reported."""

import json

import numpy as np

from experiments_synthetic import make_synthetic_runs, write_run_json
from experiments import report


def test_broken_files_are_named_and_the_good_runs_reported(tmp_path, capsys):
  root = make_synthetic_runs(tmp_path)
  # A result.json cut short by a kill, an empty metrics.jsonl (a kill inside a rewrite), a
  # run.json that is not JSON, and embeddings.npy cut short.
  text = (root / "ufm_plus" / "result.json").read_text()
  (root / "ufm_plus" / "result.json").write_text(text[: len(text) // 2])
  (root / "relu_R10" / "metrics.jsonl").write_text("")
  (root / "relu_R1" / "run.json").write_bytes(b"\xff\xfe not json")
  emb = (root / "ufm" / "embeddings.npy").read_bytes()
  (root / "ufm" / "embeddings.npy").write_bytes(emb[: len(emb) // 2])
  broken = {"ufm_plus": "result.json", "relu_R10": "metrics.jsonl", "relu_R1": "run.json",
            "ufm": "embeddings.npy"}

  # Two good runs (one of each kind) keep the report small; the broken ones cost nothing.
  good = ["norelu_R10", "ufm_c1"]
  code = report.main([str(root / name) for name in sorted(set(broken) | set(good))]
                     + ["--out", str(tmp_path / "report")])
  _, err = capsys.readouterr()
  assert code == 0, err
  assert "Traceback" not in err
  lines = err.strip().splitlines()
  assert len(lines) == len(broken)
  for name, file in broken.items():
    [line] = [l for l in lines if f"{name}/{file}" in l]
    assert line.startswith("report: warning:") and "left out" in line
  shown = json.loads((tmp_path / "report" / "report.json").read_text())
  assert sorted(r["name"] for r in shown["runs"]) == good


def test_no_readable_run_is_one_line_and_exit_2(tmp_path, capsys):
  run = tmp_path / "only"
  run.mkdir()
  (run / "result.json").write_text('{"loss": 1.0, "dim"')
  write_run_json(run, "ufm", class_sizes=[2, 2], dim=2, relu=True, loss="scl", tau=1.0,
                 batching="full", batch_size=None, binding=0, seeds=[0], planned=10, reached=10,
                 extra={})
  code = report.main([str(run), "--out", str(tmp_path / "report")])
  _, err = capsys.readouterr()
  assert code == 2 and "Traceback" not in err
  assert err.strip().splitlines()[-1].startswith("report: error:")
  assert "only/result.json" in err
  assert not (tmp_path / "report" / "report.json").exists()
  np.testing.assert_equal(sorted(p.name for p in run.iterdir()), ["result.json", "run.json"])


def test_a_folder_from_before_run_records_is_one_line_saying_how_to_get_one(tmp_path, capsys):
  root = make_synthetic_runs(tmp_path)
  old = root / "relu_R10"
  (old / "run.json").unlink()
  code = report.main([str(root), "--out", str(tmp_path / "report")])
  _, err = capsys.readouterr()
  assert code == 2 and "Traceback" not in err
  assert err.strip().splitlines() == [
      f"report: error: {old}: no run.json (a run folder from before run records); re-run it, "
      f"or write one with `scl-report --upgrade {old}`"]
  # A run.json of the first format (no schema) is as old.
  (old / "run.json").write_text(json.dumps({"kind": "train", "setup": "x", "config": {}}))
  code = report.main([str(root), "--out", str(tmp_path / "report")])
  _, err = capsys.readouterr()
  assert code == 2 and err.strip().splitlines() == [
      f"report: error: {old}: run.json has schema 1, older than the schema 2 this code reads; "
      f"re-run it, or write one with `scl-report --upgrade {old}`"]
  assert not (tmp_path / "report" / "report.json").exists()
