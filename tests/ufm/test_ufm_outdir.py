"""`ufm solve --out`: an unusable folder is refused before the work, another problem's result is
not overwritten silently, and result.json (the completion marker) is written last."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ufm import cli
from ufm_cli_helper import run_cli as _run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["solve", "--sizes", "3,3", "--dim", "2", "--temperature", "1", "--steps", "40", "--quiet"]


def _one_line(err):
  return len(err.strip().splitlines()) == 1 and "Traceback" not in err


_SOLUTIONS = {}


@pytest.fixture(autouse=True)
def solve_each_problem_once(monkeypatch):
  """These tests are about the folder, not the solve: a problem solved once (for real) in this
  module is answered from memory afterwards, which saves a compilation per test."""
  from ufm import solver
  real = solver.solve

  def cached(problem, options, progress=None):
    key = json.dumps(problem.describe(), sort_keys=True)
    if key not in _SOLUTIONS:
      _SOLUTIONS[key] = real(problem, options, progress=progress)
    return _SOLUTIONS[key]
  monkeypatch.setattr(solver, "solve", cached)


@pytest.fixture
def no_solve(monkeypatch):
  """Fails the test if the solver runs: the check must come before the work."""
  from ufm import solver

  def refuse(*args, **kwargs):
    raise AssertionError("the solve ran before the output folder was checked")
  monkeypatch.setattr(solver, "solve", refuse)


@pytest.mark.parametrize("where", ["file", "under_file", "empty", "unwritable"])
def test_unusable_out_is_refused_before_the_solve(where, tmp_path, capsys, no_solve):
  a_file = tmp_path / "a_file"
  a_file.write_text("keep me")
  out = {"file": str(a_file), "under_file": str(a_file / "sub"), "empty": "",
         "unwritable": "/sys/ufm-out-test"}[where]
  code, _, err = _run(SMALL + ["--out", out], capsys)
  assert code == 2 and _one_line(err) and err.startswith("ufm: error: --out"), err
  assert a_file.read_text() == "keep me"


def test_read_only_out_is_refused_before_the_solve(tmp_path, capsys, no_solve):
  if os.geteuid() == 0:
    pytest.skip("root writes into read-only folders (the /sys case covers an unwritable one)")
  out = tmp_path / "ro"
  out.mkdir()
  out.chmod(0o500)
  try:
    code, _, err = _run(SMALL + ["--out", str(out)], capsys)
  finally:
    out.chmod(0o700)
  assert code == 2 and _one_line(err) and "cannot be written" in err


def test_another_problem_is_refused_and_overwrite_clears_its_files(tmp_path, capsys):
  out = str(tmp_path / "run")
  ce = ["solve", "--sizes", "3,3", "--dim", "2", "--loss", "ce", "--steps", "40", "--quiet"]
  assert _run(ce + ["--out", out], capsys)[0] == 0
  assert os.path.exists(os.path.join(out, "classifier.npy"))
  before = open(os.path.join(out, "result.json")).read()

  code, _, err = _run(SMALL + ["--out", out], capsys)
  assert code == 2 and _one_line(err) and "--overwrite" in err and "another problem" in err
  assert open(os.path.join(out, "result.json")).read() == before   # nothing lost

  code, _, err = _run(SMALL + ["--out", out, "--overwrite"], capsys)
  assert code == 0, err
  assert sorted(f for f in os.listdir(out)) == ["embeddings.npy", "gram.png", "labels.npy",
                                               "result.json", "run.json"]
  result = json.load(open(os.path.join(out, "result.json")))
  assert result["problem"]["loss"] == "scl" and result["sizes"] == [3, 3]


def test_run_json_describes_the_run_and_a_refused_out_gets_none(tmp_path, capsys):
  out = tmp_path / "run"
  assert _run(SMALL + ["--out", str(out)], capsys)[0] == 0
  result = json.loads((out / "result.json").read_text())
  run = json.loads((out / "run.json").read_text())
  assert run["kind"] == "ufm" and run["schema"] == 2
  assert run["setup"] == result["setup"] and run["extra"]["problem"] == result["problem"]
  # The record's facts, in the keys a training run has, against the command line (SMALL).
  assert run["class_sizes"] == [3, 3] and run["num_classes"] == 2
  assert run["model"]["relu_before_embedding"] == result["final_relu"]
  assert run["model"]["embedding_dim"] == 2
  assert run["loss"] == {"name": "scl", "temperature": 1.0}
  assert run["epochs"] == {"unit": "steps", "planned": 40, "reached": result["steps"]}
  assert run["seeds"] == [s["seed"] for s in result["seeds"]]
  assert set(run["provenance"]) == set(result["provenance"])
  # A folder holding a file (an unusable --out) is refused before the solve: no run.json.
  blocked = tmp_path / "blocked"
  blocked.write_text("not a folder")
  code, _, err = _run(SMALL + ["--out", str(blocked / "sub")], capsys)
  assert code == 2 and _one_line(err)
  assert not (blocked / "sub").exists() and blocked.read_text() == "not a folder"
  # Another problem without --overwrite is refused: the earlier run.json stays as it was.
  before = (out / "run.json").read_bytes()
  other = ["solve", "--sizes", "4,4", "--dim", "2", "--steps", "40", "--quiet"]
  assert _run(other + ["--out", str(out)], capsys)[0] == 2
  assert (out / "run.json").read_bytes() == before


def test_the_same_problem_again_replaces_its_result(tmp_path, capsys):
  out = str(tmp_path / "run")
  assert _run(SMALL + ["--out", out], capsys)[0] == 0
  code, _, err = _run(SMALL[:-3] + ["--steps", "60", "--quiet", "--out", out], capsys)
  assert code == 0, err
  assert json.load(open(os.path.join(out, "result.json")))["solver"]["steps_budget"] == 60


def test_a_kill_while_writing_leaves_no_marker(tmp_path, capsys, monkeypatch):
  # The plot is drawn after the arrays: a solve stopped there must not look finished.
  def killed(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli, "_plot_gram", killed)
  out = tmp_path / "run"
  code, _, _ = _run(SMALL + ["--out", str(out)], capsys)
  assert code == 130
  assert not (out / "result.json").exists()
  assert not (out / "embeddings.npy").exists()


def test_a_kill_while_writing_keeps_the_earlier_result(tmp_path, capsys, monkeypatch):
  out = tmp_path / "run"
  assert _run(SMALL + ["--out", str(out)], capsys)[0] == 0
  files = {name: (out / name).read_bytes() for name in os.listdir(out)}
  monkeypatch.setattr(cli, "_plot_gram", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
  assert _run(SMALL + ["--out", str(out)], capsys)[0] == 130
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == files


def test_disk_full_while_writing_is_one_line_and_keeps_the_earlier_result(tmp_path, capsys):
  # 400 rows x 2 dims of float64 is 6.4 kB: a file-size limit of 4 kB makes embeddings.npy
  # fail the way a full disk does, after the solve.
  out = tmp_path / "run"
  args = ["solve", "--sizes", "200,200", "--dim", "2", "--temperature", "1", "--steps", "20",
          "--no-continuation", "--quiet", "--out", str(out)]
  argv = [sys.executable, "-m", "ufm.cli"] + args
  env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
  assert _run(args, capsys)[0] == 0
  files = {name: (out / name).read_bytes() for name in os.listdir(out)}
  # A shell sets the limit (no Python code between fork and exec in this threaded process);
  # with SIGXFSZ ignored a write past it fails with EFBIG, as one on a full disk fails.
  limited = ["bash", "-c", 'ulimit -f 4; trap "" XFSZ; exec "$@"', "bash"] + argv
  full = subprocess.run(limited, capture_output=True, text=True, cwd=ROOT, env=env)
  assert full.returncode == 1, full.stderr
  assert _one_line(full.stderr) and "cannot write the results" in full.stderr, full.stderr
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == files


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_folder_in_use_is_refused_and_a_dead_holder_blocks_nothing(tmp_path, capsys):
  out = tmp_path / "run"
  out.mkdir()
  # Another process holds the folder's lock, as a `ufm solve` writing there does.
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    code, _, err = _run(SMALL + ["--out", str(out)], capsys)
    assert code == 2 and _one_line(err) and "in use by another `ufm solve`" in err
    assert os.listdir(out) == []
  finally:
    holder.kill()   # SIGKILL: no clean-up runs in the holder
    holder.wait()
  code, _, err = _run(SMALL + ["--out", str(out)], capsys)
  assert code == 0, err
  assert (out / "result.json").exists()


def test_too_little_free_space_is_refused_before_the_solve(tmp_path, capsys, monkeypatch):
  import collections
  import shutil
  from ufm import api
  out = tmp_path / "run"
  args = ["solve", "--sizes", "200,200", "--dim", "2", "--temperature", "1", "--steps", "20",
          "--seeds", "3", "--no-continuation", "--quiet", "--out", str(out)]
  assert _run(args, capsys)[0] == 0
  files = {name: (out / name).read_bytes() for name in os.listdir(out)}
  written = sum(len(b) for b in files.values())
  # Free space one byte short of what this very solve wrote: the check must refuse it (its
  # estimate may only err on the large side), and before any solving.
  usage = collections.namedtuple("usage", "total used free")
  monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10 * written, 0, written - 1))
  monkeypatch.setattr(api, "run", lambda *a, **k: pytest.fail("the solve ran"))
  code, _, err = _run(args, capsys)
  assert code == 1 and _one_line(err) and "Traceback" not in err, err
  assert "free some space" in err and str(out) in err and "nothing was solved" in err, err
  assert {name: (out / name).read_bytes() for name in os.listdir(out)} == files
