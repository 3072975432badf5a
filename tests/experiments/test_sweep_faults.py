"""A sweep killed with `kill -9` leaves no training run behind it, and a sweep never starts a
second trainer on a run folder that a live process holds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepnet import workdir as workdir_lib
from experiments import sweep

REPO = Path(__file__).resolve().parents[2]
FAULTS_HELPER = REPO / "tests" / "deepnet" / "faults_helper.py"

EXPERIMENT = '''
from experiments.spec import train_run

def get_experiment(preset="cpu"):
  return {"name": "tiny", "title": "tiny sweep", "runs": [
      train_run("long", "experiments/configs/digits_mlp.py",
                {"model.mlp_widths": (16,), "data.name": "gaussian", "data.n_max": 12,
                 "data.num_classes": 4, "data.dim": 8, "data.n_test_per_class": 5,
                 "batch_size": 10, "num_epochs": 100000, "log_epochs": (1,),
                 "checkpoint_every_epochs": 1, "seed": 0}),   # one seed: one folder
  ]}
'''


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/status") as f:
      return "\nState:\tZ" not in f.read()
  except OSError:
    return False


@pytest.mark.slow
def test_sweep_killed_with_sigkill_takes_its_trainer_with_it(tmp_path):
  exp_file = tmp_path / "tiny_exp.py"
  exp_file.write_text(EXPERIMENT)
  out = tmp_path / "sweep"
  proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", str(exp_file), "--out",
                           str(out), "--no-report"], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  run_dir = out / "long"
  child = None
  try:
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "1").is_dir():
      assert proc.poll() is None and time.time() < deadline
      time.sleep(0.05)
    child = workdir_lib.lock_holder(run_dir)["pid"]
    assert child != proc.pid
    proc.send_signal(signal.SIGKILL)   # the sweep alone, not its process group
    proc.wait()
    deadline = time.time() + 120
    while _alive(child) and time.time() < deadline:
      time.sleep(0.05)
    assert not _alive(child), "the trainer outlived its sweep"
  finally:
    if child is not None and _alive(child):
      os.kill(child, signal.SIGKILL)
    if proc.poll() is None:
      proc.kill()
  assert workdir_lib.lock_holder(run_dir) is None
  log = (out / "logs" / "long.log").read_text()
  # The trainer got SIGTERM and stopped at a step boundary with a checkpoint.
  assert "stopped by SIGTERM after step" in log, log[-2000:]


def test_sweep_refuses_a_run_folder_held_by_a_live_process(tmp_path):
  exp_file = tmp_path / "tiny_exp.py"
  exp_file.write_text(EXPERIMENT)
  out = tmp_path / "sweep"
  run_dir = out / "long"
  holder = subprocess.Popen([sys.executable, str(FAULTS_HELPER), "hold-lock", str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    lines = []
    summary = sweep.run_experiment(sweep.load_experiment(str(exp_file)), out, report=False,
                                   log=lines.append)
  finally:
    holder.kill()
    holder.wait()
  assert summary["failed"] == ["long"]
  assert any(f"still running in pid {holder.pid}" in line for line in lines), lines
  assert not (out / "logs" / "long.log").exists()   # no second trainer was started
  state = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else {}
  assert state.get("runs", {}).get("long", {}).get("status") != "running"
