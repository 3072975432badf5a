"""Faults seen from the command line (`python -m deepnet.main`, what `make train` runs): two
trainers on one workdir, a lock left by a killed process, signals during start-up and
training, divergence, disk full and bad input. Each case ends with one line on stderr and the
documented exit status, never a traceback."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import deepnet_train_helper as helper
from deepnet import train
from deepnet import workdir as workdir_lib

REPO = helper.REPO
FAULTS_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults_helper.py")
DIGITS = "experiments/configs/digits_mlp.py"


def _args(workdir, **overrides):
  """deepnet.main arguments of the tiny gaussian run of deepnet_train_helper.tiny_config."""
  config = helper.tiny_config(overrides)
  args = [f"--config={os.path.join(REPO, DIGITS)}", f"--workdir={workdir}"]
  for key in ("data.name", "data.num_classes", "data.dim", "data.n_test_per_class",
              "data.imbalance", "data.ratio", "data.n_max", "data.views", "model.mlp_widths",
              "batch_size", "binding", "num_epochs", "checkpoint_every_epochs",
              "eval_batch_size", "log_epochs", "lr"):
    node = config
    for part in key.split("."):
      node = node[part]
    args.append(f"--config.{key}={node}")
  return args


def _command(*args):
  return [sys.executable, os.path.abspath(helper.__file__), "main", *args]


def _one_error_line(stderr):
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
  assert "Traceback" not in stderr
  return lines[0]


def _wait_for(condition, proc, seconds=240):
  deadline = time.time() + seconds
  while not condition():
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline, "timed out"
    time.sleep(0.02)


@pytest.mark.slow
def test_second_trainer_on_a_workdir_refuses_at_once_and_a_killed_holder_does_not_block(
    tmp_path):
  workdir = str(tmp_path / "run")
  # A run long enough to be still going while the second one starts.
  args = _args(workdir, num_epochs=100000, log_epochs=[1], checkpoint_every_epochs=1)
  first = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  try:
    _wait_for(lambda: (workdir_lib.lock_holder(workdir) or {}).get("pid") == first.pid, first)
    _wait_for(lambda: os.path.isdir(os.path.join(workdir, "checkpoints", "1")), first)
    second = subprocess.run(_command(*args), capture_output=True, text=True, timeout=300)
    assert first.poll() is None
    assert second.returncode == 2
    line = _one_error_line(second.stderr)
    assert f"in use by pid {first.pid}" in line, line
    assert "training" not in second.stdout
  finally:
    first.kill()
    first.communicate()
  # The killed holder's lock file is still there, naming it, but it holds no lock: the same
  # command resumes. SIGTERM then stops it at a step boundary with a checkpoint (exit 143).
  with open(os.path.join(workdir, workdir_lib.LOCK_NAME)) as f:
    assert json.load(f)["pid"] == first.pid
  assert workdir_lib.lock_holder(workdir) is None
  resumed = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
  try:
    line = ""
    deadline = time.time() + 240
    while "resuming" not in line and time.time() < deadline:
      line = resumed.stdout.readline()
      assert line or resumed.poll() is None
    assert "from the checkpoint of epoch" in line, line
    resumed.stdout.readline()   # "training ... epochs N..100000": the loop has started
    resumed.send_signal(signal.SIGTERM)
    _, err = resumed.communicate(timeout=120)
  finally:
    resumed.kill()
  assert resumed.returncode == 143, err[-3000:]
  assert "stopped by SIGTERM after step" in _one_error_line(err)
  epochs = [json.loads(line)["epoch"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert epochs == sorted(set(epochs))   # no epoch written twice


def test_a_live_lock_refuses_and_the_lock_of_a_killed_process_does_not_block(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, FAULTS_HELPER, "hold-lock", workdir],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    assert workdir_lib.lock_holder(workdir)["pid"] == holder.pid
    with pytest.raises(train.ConfigError, match=f"in use by pid {holder.pid}"):
      train.train_and_evaluate(helper.tiny_config(), workdir)
    assert not os.path.exists(os.path.join(workdir, "config.json"))   # refused before writing
  finally:
    holder.kill()
    holder.wait()
  result = train.train_and_evaluate(helper.tiny_config(), workdir)
  assert result.epochs_run == 2
  assert workdir_lib.lock_holder(workdir) is None   # released at the end of the run


def _jax_loaded(pid):
  try:
    with open(f"/proc/{pid}/maps") as f:
      return "jaxlib" in f.read()
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_start_up_is_one_line(tmp_path, signum, code):
  workdir = str(tmp_path / "run")
  proc = subprocess.Popen([sys.executable, "-m", "deepnet.main", *_args(workdir)], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # JAX is imported by deepnet.main after the flags are parsed: start-up is under way.
  _wait_for(lambda: _jax_loaded(proc.pid), proc)
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == code, err[-3000:]
  assert "start-up" in _one_error_line(err)


@pytest.mark.slow
def test_divergence_is_one_line_and_a_nonzero_exit(tmp_path):
  workdir = str(tmp_path / "run")
  proc = subprocess.run(_command(*_args(workdir, lr=1e6, num_epochs=6)), capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-3000:]
  line = _one_error_line(proc.stderr)
  assert re.match(r"error: diverged at epoch \d+ \((loss nan|loss inf|parameters not finite|"
                  r"embeddings not finite)\)", line), line


@pytest.mark.parametrize("setup,override,fragment", [
    ("file", None, "is a file, not a folder"),
    ("under-file", None, "which is a file"),
    (None, "--config.num_epochs=1000000000", "int32"),
    (None, "--config.lr=inf", "lr must be finite"),
])
def test_unusable_workdir_and_impossible_values_exit_2(tmp_path, setup, override, fragment):
  workdir = tmp_path / "run"
  if setup:
    (tmp_path / "run").write_text("not a folder")
    if setup == "under-file":
      workdir = workdir / "sub"
  args = _args(str(workdir)) + ([override] if override else [])
  proc = subprocess.run(_command(*args), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert fragment in _one_error_line(proc.stderr)


@pytest.mark.parametrize("text,fragment", [
    ("this is not python\n", "does not load: NameError"),
    ("", "defines no get_config()"),
    ("def get_config(:\n", "invalid syntax"),
])
def test_a_config_file_that_is_not_a_config_exits_2(tmp_path, text, fragment):
  path = tmp_path / "config.py"
  path.write_text(text)
  proc = subprocess.run([sys.executable, "-m", "deepnet.main", f"--config={path}",
                         f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert fragment in _one_error_line(proc.stderr)


def _mount_tmpfs(path, size):
  if os.geteuid() != 0:
    return False
  os.makedirs(path, exist_ok=True)
  return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                        capture_output=True).returncode == 0


@pytest.mark.slow
def test_disk_full_during_training_is_one_line_and_loses_nothing(tmp_path):
  disk = tmp_path / "disk"
  if not _mount_tmpfs(disk, "600k"):
    pytest.skip("needs root to mount a small tmpfs")
  try:
    workdir = str(disk / "run")
    args = _args(workdir, num_epochs=30, log_epochs=list(range(1, 31)))
    # About 120 KiB left: the first checkpoints fit, a later save or append does not.
    with open(disk / "filler", "wb") as f:
      f.write(b"\0" * 480 * 1024)
    full = subprocess.run(_command(*args), capture_output=True, text=True, timeout=300)
    assert full.returncode == 1, full.stderr[-3000:]
    line = _one_error_line(full.stderr)
    assert f"[Errno {errno.ENOSPC}]" in line and "No space left on device" in line, line
    kept = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))
            if l.endswith("\n")]
    assert kept, "some epochs were written before the disk filled up"
    os.remove(disk / "filler")
    resumed = subprocess.run(_command(*args), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["epoch"] for r in records] == list(range(1, 31))
    for before in kept:   # what was written before the fault is still there, unchanged
      assert records[before["epoch"] - 1]["train_loss"] == before["train_loss"]
  finally:
    subprocess.run(["umount", str(disk)], check=False)
