"""Strict JSON, atomic writes and provenance of geometry.runfiles."""

import json
import math
import os
import subprocess

import numpy as np
import pytest

from geometry import runfiles


def test_to_json_makes_strict_json():
  value = {"a": float("nan"), "b": [np.float32(1.5), np.inf, -np.inf], "c": np.int64(3),
           "d": np.bool_(True), "e": np.arange(3), (1): (np.float64(2.0),)}
  got = runfiles.to_json(value)
  assert got == {"a": None, "b": [1.5, None, None], "c": 3, "d": True, "e": [0, 1, 2],
                 "1": [2.0]}
  text = runfiles.dumps(value)
  assert "NaN" not in text and "Infinity" not in text
  assert json.loads(text) == got


def test_write_json_is_atomic_and_keeps_old_file_on_failure(tmp_path):
  path = tmp_path / "result.json"
  runfiles.write_json(path, {"loss": 1.0})
  assert runfiles.read_json(path) == {"loss": 1.0}

  class Boom:
    pass

  with pytest.raises(TypeError):
    runfiles.write_json(path, {"loss": Boom()})
  assert runfiles.read_json(path) == {"loss": 1.0}   # the old file, whole
  assert sorted(os.listdir(tmp_path)) == ["result.json"]   # no temporary left behind


def test_read_json_names_the_file(tmp_path):
  bad = tmp_path / "broken.json"
  bad.write_text('{"loss": 1.0')
  with pytest.raises(ValueError, match="broken.json: not valid JSON"):
    runfiles.read_json(bad)
  with pytest.raises(ValueError, match="missing.json: no such file"):
    runfiles.read_json(tmp_path / "missing.json")
  bad.write_bytes(b"\xff\xfe{")
  with pytest.raises(ValueError, match="broken.json: cannot be read"):
    runfiles.read_json(bad)


def test_git_state_reads_commit_and_dirty_flag(tmp_path):
  run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,
                                  capture_output=True, text=True).stdout.strip()
  run("init", "-q")
  (tmp_path / "f.txt").write_text("1")
  run("add", "f.txt")
  run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
  head = run("rev-parse", "HEAD")
  assert runfiles.git_state(tmp_path) == {"commit": head, "dirty": False}
  (tmp_path / "f.txt").write_text("2")
  assert runfiles.git_state(tmp_path) == {"commit": head, "dirty": True}
  outside = tmp_path / "nogit"
  outside.mkdir()
  (outside / ".git").write_text("not a checkout")   # git refuses this folder
  assert runfiles.git_state(outside) == {"commit": None, "dirty": None}


def test_provenance_lists_the_stack():
  import importlib.metadata
  import platform

  import jax
  info = runfiles.provenance()
  assert info["python"] == platform.python_version()
  assert info["jax"] == importlib.metadata.version("jax") == jax.__version__
  assert info["numpy"] == np.__version__
  for key in ("jaxlib", "flax", "optax", "orbax"):
    assert key in info
  assert info["device_kind"] == jax.devices()[0].device_kind
  assert set(info["git"]) == {"commit", "dirty"}
  assert math.isfinite(info["device_count"])


def _record(kind="train", **changes):
  parts = dict(
      data={"name": "digits", "source": None}, class_sizes=[3, 1],
      model={"name": "mlp", "embedding_dim": 4, "relu_before_embedding": True,
             "before_embedding": "backbone"},
      loss={"name": "scl", "temperature": 0.1},
      batching={"scheme": "shuffle", "batch_size": 2, "binding": 0}, seeds=[0],
      epochs={"unit": "epochs" if kind == "train" else "steps", "planned": 5, "reached": None},
      extra={"num_train": 4})
  parts.update(changes)
  return runfiles.run_record(kind, "a run", **parts)


def test_run_record_has_the_same_keys_for_both_kinds(tmp_path):
  train, ufm = _record("train"), _record("ufm", seeds=[0, 1])
  assert list(train) == list(ufm) == list(runfiles.RUN_KEYS)
  assert train["schema"] == ufm["schema"] == 2
  assert train["num_classes"] == 2 and ufm["seeds"] == [0, 1]
  assert set(train["provenance"]) >= {"python", "jax", "git"}
  json.loads(runfiles.dumps(train))   # strict JSON throughout
  (tmp_path / "run.json").write_text(runfiles.dumps(ufm))
  assert runfiles.read_run(tmp_path) == ufm
  with pytest.raises(ValueError, match="kind must be one of"):
    _record("solve")
  with pytest.raises(ValueError, match="model must be an object with name, embedding_dim"):
    _record(model={"name": "mlp"})
  with pytest.raises(ValueError, match="relu_before_embedding must be true or false"):
    _record(model={"name": "mlp", "embedding_dim": 4, "relu_before_embedding": 1,
                   "before_embedding": "backbone"})
  with pytest.raises(ValueError, match="epochs.unit of a ufm run is 'steps'"):
    _record("ufm", epochs={"unit": "epochs", "planned": 5, "reached": None})


def test_read_run_names_an_old_folder_and_the_way_out(tmp_path):
  with pytest.raises(runfiles.OldRunRecord) as e:
    runfiles.read_run(tmp_path)
  assert str(e.value) == (f"{tmp_path}: no run.json (a run folder from before run records); "
                          f"re-run it, or write one with `scl-report --upgrade {tmp_path}`")
  (tmp_path / "run.json").write_text(json.dumps({"kind": "train", "setup": "x"}))
  with pytest.raises(runfiles.OldRunRecord, match=r"run.json has schema 1, older than the "
                     r"schema 2 this code reads; re-run it, or write one with `scl-report "
                     r"--upgrade"):
    runfiles.read_run(tmp_path)
  (tmp_path / "run.json").write_text(json.dumps({"schema": 2, "kind": "train"}))
  with pytest.raises(runfiles.RunRecordError, match="run.json: no setup, data, class_sizes"):
    runfiles.read_run(tmp_path)
  (tmp_path / "run.json").write_text("{cut")
  with pytest.raises(runfiles.RunRecordError, match="not valid JSON") as e:
    runfiles.read_run(tmp_path)
  assert not isinstance(e.value, runfiles.OldRunRecord)   # damage, not an old folder
  (tmp_path / "run.json").write_text(json.dumps({"schema": 3}))
  with pytest.raises(runfiles.RunRecordError, match="schema 3 is not the schema 2"):
    runfiles.read_run(tmp_path)


def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path):
  old = os.umask(0o022)
  try:
    runfiles.write_json(tmp_path / "a.json", {"x": 1})
    with open(tmp_path / "b.json", "w") as f:
      f.write("{}")
  finally:
    os.umask(old)
  assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
  assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644


def test_read_jsonl_gives_every_line_its_number_and_fault(tmp_path):
  path = tmp_path / "m.jsonl"
  path.write_bytes(b'{"epoch": 1}\n\n[1, 2]\n{"epoch": \xff2}\n{"epoch": 3}\n{"epo')
  assert runfiles.read_jsonl(path) == [
      (1, {"epoch": 1}, None), (3, None, "not a JSON object ([1, 2])"),
      (4, None, "not JSON (cut short?)"), (5, {"epoch": 3}, None),
      (6, None, "not JSON (cut short?)")]
