"""`scl-report --upgrade`: a schema-2 run.json for folders written before it, equal to the one
the solver writes itself, after which the report reads the folder."""

import json

import numpy as np

from experiments import report
from experiments_synthetic import training_config, write_train
from ufm import cli as ufm_cli


def test_an_upgraded_solve_has_the_record_the_solver_writes(tmp_path, capsys):
  out = tmp_path / "solve"
  assert ufm_cli.main(["solve", "--sizes", "3,3", "--dim", "2", "--temperature", "1", "--steps", "40",
                       "--quiet", "--out", str(out)]) == 0
  written = json.loads((out / "run.json").read_text())
  (out / "run.json").unlink()
  capsys.readouterr()
  assert report.main([str(out), "--upgrade"]) == 0
  assert capsys.readouterr().out.strip() == f"{out}: wrote a schema-2 run.json"
  upgraded = json.loads((out / "run.json").read_text())
  assert upgraded["extra"].pop("upgraded_from_schema") == 0
  result = json.loads((out / "result.json").read_text())
  # The run's own provenance (result.json's), not the upgrading process's.
  assert upgraded.pop("provenance") == result["provenance"]
  written.pop("provenance")
  assert upgraded == written
  # A second upgrade leaves it alone.
  assert report.main([str(out), "--upgrade"]) == 0
  assert "schema 2 already; left as it is" in capsys.readouterr().out


def test_a_solve_with_the_old_key_names_upgrades_to_the_same_record(tmp_path, capsys):
  out = tmp_path / "solve"
  assert ufm_cli.main(["solve", "--sizes", "3,3", "--dim", "2", "--temperature", "0.5",
                       "--no-final-relu", "--steps", "40", "--quiet", "--out", str(out)]) == 0
  written = json.loads((out / "run.json").read_text())
  (out / "run.json").unlink()
  # result.json as solves before the one vocabulary wrote it: tau and relu.
  result = json.loads((out / "result.json").read_text())
  for fields in (result, result["problem"]):
    fields["tau"], fields["relu"] = fields.pop("temperature"), fields.pop("final_relu")
  (out / "result.json").write_text(json.dumps(result))
  assert report.main([str(out), "--upgrade"]) == 0
  upgraded = json.loads((out / "run.json").read_text())
  assert upgraded["loss"]["temperature"] == 0.5
  assert upgraded["model"]["relu_before_embedding"] is False
  assert upgraded["extra"]["problem"] == written["extra"]["problem"]


def test_an_old_training_folder_gets_the_model_facts_and_is_reported(tmp_path, capsys):
  root = tmp_path / "runs"
  config = training_config()
  # The trainer's model fields that the synthetic config leaves out (deepnet.config).
  config["model"].update(projection_dim=0, projection_relu=True, mlp_norm="all")
  write_train(root / "old", config, final_means=np.eye(4, 8), dist_of_curve=[0.9, 0.5, 0.2, 0.1],
              acc_curve=[0.5, 0.8, 1.0, 1.0])
  # The first run.json format: the config and the derived facts at the top level.
  first = {"kind": "train", "setup": "mlp", "config": config, "class_sizes": [7, 7, 2, 2],
           "num_classes": 4, "num_train": 18, "data_source": {"kind": "embedded"},
           "provenance": {"python": "3.11.7", "git": {"commit": "abc", "dirty": False}}}
  (root / "old" / "run.json").write_text(json.dumps(first))
  assert report.main([str(root), "--out", str(tmp_path / "report")]) == 2
  assert "run.json has schema 1" in capsys.readouterr().err
  assert report.main([str(root), "--upgrade"]) == 0
  record = json.loads((root / "old" / "run.json").read_text())
  # By hand: an MLP with widths (32, 16) and its final ReLU, the embedding its last layer.
  assert record["model"]["embedding_dim"] == 16 and record["model"]["relu_before_embedding"]
  assert record["model"]["before_embedding"] == "backbone"
  assert record["class_sizes"] == [7, 7, 2, 2] and record["num_classes"] == 4
  assert record["data"] == {"name": "digits", "source": {"kind": "embedded"}}
  assert record["loss"] == {"name": "scl", "temperature": 0.1}
  assert record["epochs"] == {"unit": "epochs", "planned": 10, "reached": None}
  assert record["extra"]["num_train"] == 18 and record["extra"]["upgraded_from_schema"] == 1
  assert record["provenance"] == first["provenance"]
  capsys.readouterr()
  assert report.main([str(root), "--out", str(tmp_path / "report")]) == 0
  shown = json.loads((tmp_path / "report" / "report.json").read_text())
  assert [r["label"] for r in shown["runs"]] == ["SCL, ReLU"]
