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


def test_run_descriptor_has_one_format_for_both_kinds():
  ufm = runfiles.run_descriptor("ufm", "UFM+ SCL K=2", problem={"sizes": [2, 1]})
  train = runfiles.run_descriptor("train", "digits R=10", config={"seed": 0}, num_train=11)
  assert ufm["kind"] == "ufm" and ufm["problem"] == {"sizes": [2, 1]} and "config" not in ufm
  assert train["kind"] == "train" and train["config"] == {"seed": 0} and train["num_train"] == 11
  for d in (ufm, train):
    assert set(d["provenance"]) >= {"python", "jax", "git"}
    json.loads(runfiles.dumps(d))   # strict JSON throughout
  with pytest.raises(ValueError, match="exactly one"):
    runfiles.run_descriptor("ufm", "x")
  with pytest.raises(ValueError, match="described by its problem"):
    runfiles.run_descriptor("ufm", "x", config={})
  with pytest.raises(ValueError, match="kind"):
    runfiles.run_descriptor("solve", "x", problem={})
  with pytest.raises(ValueError, match="redefine"):
    runfiles.run_descriptor("train", "x", config={}, provenance={})


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
