"""A finished run's command started again: exit 0 "finished already" whatever the disk,
writing nothing (docs/faults_training.md)."""

import errno
import os
import subprocess
import sys
import uuid

import pytest

import deepnet_train_helper as helper
from deepnet import checkpoints
from deepnet import train
from deepnet import workdir as workdir_lib
from geometry import runfiles


def _snapshot(folder):
  """(bytes, mtime_ns) of every file under ``folder`` except the lock file, whose holder
  line each start rewrites in place."""
  out = {}
  for root, _, names in os.walk(folder):
    for name in names:
      if name == workdir_lib.LOCK_NAME:
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
  return out


def test_finished_run_rerun_with_no_free_space_writes_nothing(tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(helper.tiny_config(), workdir)
  before = _snapshot(workdir)
  assert "embeddings_final.npz" in before

  def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  # No free space, and any write of the run's files fails the way a full disk does.
  monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                      lambda _p: type("U", (), {"free": 0, "total": 1, "used": 1})())
  monkeypatch.setattr(runfiles, "atomic_open", no_space)
  monkeypatch.setattr(train.evaluate_lib, "compile_eval_step", no_space)
  capsys.readouterr()
  again = train.train_and_evaluate(helper.tiny_config(), workdir)
  captured = capsys.readouterr()
  assert "finished already" in captured.out + captured.err
  assert again.epochs_run == 0
  assert again.metrics == first.metrics
  assert _snapshot(workdir) == before


def _mount_tmpfs(path, size):
  if os.geteuid() != 0:
    return "not root: cannot mount a tmpfs"
  os.makedirs(path)
  proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                        capture_output=True, text=True, check=False)
  if proc.returncode:
    return f"mount -t tmpfs failed: {proc.stderr.strip() or proc.returncode}"
  return None


def test_finished_run_rerun_on_a_full_tmpfs_exits_0(tmp_path):
  mount = str(tmp_path / "fs")
  reason = _mount_tmpfs(mount, "64m")
  if reason:
    pytest.skip(reason)
  try:
    workdir = os.path.join(mount, "run")
    train.train_and_evaluate(helper.tiny_config(), workdir)
    with open(os.path.join(mount, f"fill-{uuid.uuid4().hex}"), "wb") as f:
      try:
        while True:
          f.write(b"\0" * (1 << 20))
          f.flush()
      except OSError as e:
        assert e.errno == errno.ENOSPC
    before = _snapshot(workdir)
    args = ["--config=" + os.path.join(helper.REPO, "experiments/configs/digits_mlp.py"),
            "--workdir=" + workdir]
    config = helper.tiny_config()
    for key in ("data.name", "data.num_classes", "data.dim", "data.n_test_per_class",
                "data.imbalance", "data.ratio", "data.n_max", "data.views",
                "model.mlp_widths", "batch_size", "binding", "num_epochs",
                "checkpoint_every_epochs", "eval_batch_size"):
      node = config
      for part in key.split("."):
        node = node[part]
      args.append(f"--config.{key}={node}")
    env = dict(os.environ, PYTHONPATH=helper.REPO)
    proc = subprocess.run([sys.executable, os.path.abspath(helper.__file__), "main"] + args,
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished already" in proc.stdout + proc.stderr
    assert _snapshot(workdir) == before
  finally:
    subprocess.run(["umount", mount], check=False)
