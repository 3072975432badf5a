"""The sweep reuses a finished folder only when the folder itself says it is the run's result,
and a broken sweep.json does not stop it."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import spec, sweep
from ufm import cli

DIGITS = "experiments/configs/digits_mlp.py"


def _solve(out: Path, *args):
  assert cli.main(["solve", *args, "--steps", "30", "--quiet", "--out", str(out)]) == 0


def _experiment(*runs):
  exp = {"name": "reuse", "title": "reuse", "runs": list(runs), "report": {}}
  sweep.validate(exp)
  return exp


def _sweep(exp, out):
  lines = []
  summary = sweep.run_experiment(exp, out, report=False, log=lines.append)
  return summary, "\n".join(lines)


UFM_ARGS = ("--sizes", "3,3", "--dim", "2", "--temperature", "1", "--steps", "30")


def test_a_folder_of_another_problem_is_not_reused(tmp_path):
  out = tmp_path / "sweep"
  _solve(out / "u", "--sizes", "4,2", "--dim", "3", "--temperature", "0.5")     # made by hand
  before = (out / "u" / "result.json").read_bytes()
  summary, log = _sweep(_experiment(spec.ufm_run("u", *UFM_ARGS)), out)
  assert summary["failed"] == ["u"]
  assert "holds another run" in log and "sizes [4, 2] there, [3, 3] asked" in log
  assert (out / "u" / "result.json").read_bytes() == before


def test_a_folder_solved_with_other_settings_is_not_reused(tmp_path):
  out = tmp_path / "sweep"
  _solve(out / "u", "--sizes", "3,3", "--dim", "2", "--temperature", "1", "--seeds", "2")
  summary, log = _sweep(_experiment(spec.ufm_run("u", *UFM_ARGS)), out)
  assert summary["failed"] == ["u"] and "num_seeds 2 there, 1 asked" in log


def test_a_folder_of_the_same_problem_is_reused_and_a_broken_record_kept_aside(tmp_path):
  out = tmp_path / "sweep"
  _solve(out / "u", *UFM_ARGS[:-2])
  stamp = (out / "u" / "result.json").stat().st_mtime_ns
  (out / "sweep.json").write_text('{"runs": {"u": {"status": "do')   # cut short by a kill
  summary, log = _sweep(_experiment(spec.ufm_run("u", *UFM_ARGS)), out)
  assert summary["failed"] == []
  assert "u: finished already, skipped" in log
  assert "sweep.json: not valid JSON" in log and "sweep.json.broken" in log
  assert (out / "u" / "result.json").stat().st_mtime_ns == stamp
  assert (out / "sweep.json.broken").read_text() == '{"runs": {"u": {"status": "do'
  assert json.loads((out / "sweep.json").read_text())["experiment"] == "reuse"


def _training_folder(folder: Path, config: dict):
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps(config))
  (folder / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n')
  np.savez(folder / "embeddings_final.npz", embeddings=np.eye(2), labels=np.arange(2))


@pytest.fixture(scope="module")
def digits_config():
  """The digits config as the trainer writes it (ml_collections' own JSON, not reuse.py's)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("digits_cfg", sweep.REPO / DIGITS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)

  def make(**fields):
    config = module.get_config()
    for key, value in fields.items():
      node = config
      *parents, leaf = key.split(".")
      for part in parents:
        node = node[part]
      node[leaf] = value
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return make


def test_a_training_folder_of_another_config_is_not_reused(tmp_path, digits_config):
  out = tmp_path / "sweep"
  _training_folder(out / "t", digits_config(**{"data.ratio": 100.0}))
  run = spec.train_run("t", DIGITS, {"data.ratio": 10.0, "model.mlp_widths": (8, 4)})
  summary, log = _sweep(_experiment(run), out)
  assert summary["failed"] == ["t"] and "differs in: data.ratio, model.mlp_widths" in log


def test_an_unfinished_training_folder_of_another_config_is_refused_before_resuming(
    tmp_path, digits_config):
  out = tmp_path / "sweep"
  folder = out / "t"
  _training_folder(folder, digits_config(**{"data.ratio": 100.0}))
  (folder / "embeddings_final.npz").unlink()   # started, not finished: the sweep would resume
  run = spec.train_run("t", DIGITS, {"data.ratio": 10.0})
  summary, log = _sweep(_experiment(run), out)
  assert summary["failed"] == ["t"] and "differs in: data.ratio" in log
  assert "resuming" not in log and not (out / "logs" / "t.log").exists()


def test_a_training_folder_of_the_same_config_is_reused(tmp_path, digits_config):
  out = tmp_path / "sweep"
  # The data folder is where the data lives, not what the run computes.
  _training_folder(out / "t", digits_config(**{"data.ratio": 10.0, "model.mlp_widths": (8, 4),
                                              "data.data_dir": "/elsewhere"}))
  run = spec.train_run("t", DIGITS, {"data.ratio": 10.0, "model.mlp_widths": (8, 4)})
  summary, log = _sweep(_experiment(run), out)
  assert summary["failed"] == [] and "t: finished already, skipped" in log
  # --set values arrive as text and are parsed as the trainer's flags parse them.
  summary, log = sweep.run_experiment(_experiment(spec.train_run("t", DIGITS)), out,
                                      report=False, log=lambda _: None,
                                      overrides={"data.ratio": "10.0",
                                                 "model.mlp_widths": "(8,4)"}), None
  assert summary["failed"] == []


def test_a_harmless_set_does_not_make_a_finished_training_folder_a_conflict(tmp_path,
                                                                           digits_config):
  out = tmp_path / "sweep"
  overrides = {"data.ratio": 10.0, "model.mlp_widths": (8, 4)}
  _training_folder(out / "t", digits_config(**overrides))
  run = spec.train_run("t", DIGITS, overrides)
  exp = _experiment(run)
  # As the sweep records a run it made: its command signature.
  (out / "sweep.json").write_text(json.dumps({"experiment": "reuse", "runs": {
      "t": {"kind": "train", "signature": sweep.signature(run), "status": "done"}}}))
  # Another command signature, the same run: where the data lives is not what it computes.
  summary = sweep.run_experiment(exp, out, report=False, log=lambda _: None,
                                 overrides={"data.data_dir": "/elsewhere"})
  assert summary["failed"] == []
  lines = []
  summary = sweep.run_experiment(exp, out, report=False, log=lines.append,
                                 overrides={"lr": "0.5"})
  assert summary["failed"] == ["t"] and "differs in: lr" in "\n".join(lines)


def test_a_sweep_whose_only_run_is_broken_reports_that_in_one_line(tmp_path):
  out = tmp_path / "sweep"
  (out / "u").mkdir(parents=True)
  (out / "u" / "result.json").write_text('{"loss": 1.0, "pro')    # cut short
  exp = _experiment(spec.ufm_run("u", *UFM_ARGS))
  lines = []
  assert sweep.build_report(exp, out, log=lines.append) is None
  assert len(lines) == 1 and lines[0].startswith("no report:") and "u/result.json" in lines[0]
