"""The report reads a training run from its run.json and metrics, never its config.json.

A schema-2 run.json holds the run's whole config (``extra.config``), so a workdir whose
config.json was deleted after the run builds the same report, number for number; and the
report opens no config.json at all, even where one is there.
"""

import builtins
import json
import shutil

from benchmarks import report_diff
from experiments_synthetic import make_synthetic_runs
from experiments import report, spec
from geometry import runfiles


def _build(root, out):
  checks = spec.default_checks({"ufm", "train"})
  report.build_report([root], out, title="synthetic", checks=checks)
  return json.loads((out / "report.json").read_text())


def test_a_workdir_without_config_json_gives_the_same_report(tmp_path):
  root = make_synthetic_runs(tmp_path / "with")
  shown = _build(root, root.parent / "report")
  bare = tmp_path / "without" / "runs"
  shutil.copytree(root, bare)
  configs = sorted(bare.glob("*/config.json"))
  assert len(configs) == 7
  for path in configs:
    path.unlink()
  again = _build(bare, bare.parent / "report")
  # Sources are relative to the report, so both reports name the same files.
  assert report_diff.differences(shown, again) == []
  assert report_diff.verdicts(shown) == report_diff.verdicts(again)
  assert len(again["verdicts"]) > 10 and not again["warnings"]
  sources = json.dumps(again)
  assert "config.json" not in sources and "/run.json" in sources


def test_the_report_opens_no_config_json(tmp_path, monkeypatch):
  root = make_synthetic_runs(tmp_path)
  opened = []
  real_open, real_read_json = builtins.open, runfiles.read_json

  def watched_open(file, *args, **kwargs):
    if str(file).endswith("config.json"):
      opened.append(str(file))
    return real_open(file, *args, **kwargs)

  def refusing_read_json(path):
    if str(path).endswith("config.json"):
      raise AssertionError(f"the report read {path}")
    return real_read_json(path)

  monkeypatch.setattr(builtins, "open", watched_open)
  monkeypatch.setattr(runfiles, "read_json", refusing_read_json)
  shown = _build(root, tmp_path / "report")
  assert opened == []
  assert sorted(r["name"] for r in shown["runs"]) == sorted(p.name for p in root.iterdir())


def test_the_setup_line_of_run_json_is_shown(tmp_path):
  root = make_synthetic_runs(tmp_path)
  record = json.loads((root / "relu_R10" / "run.json").read_text())
  record["setup"] = "mlp on digits (step R=10), as the record words it"
  (root / "relu_R10" / "run.json").write_text(json.dumps(record))
  shown = _build(root, tmp_path / "report")
  entry = next(r for r in shown["runs"] if r["name"] == "relu_R10")
  assert entry["description"] == record["setup"]
  page = (tmp_path / "report" / "index.html").read_text()
  assert "<h2 id='runs'>Runs</h2>" in page and record["setup"] in page
