"""Training under faults (in-process runs, plus subprocesses where a real kill is needed): a
kill inside the metrics rewrite, a corrupted newest checkpoint, SIGTERM / SIGINT at a step
boundary, divergence. Every run that is interrupted and resumed must end with the metrics of an
uninterrupted run (the reference), computed once per module."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import deepnet_train_helper as helper
from deepnet import checkpoints
from deepnet import interrupts
from deepnet import train
from geometry import runfiles

jax.config.update("jax_disable_most_optimizations", True)

FAULTS_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults_helper.py")
NUM_EPOCHS = 4
# 3 steps per epoch (36 examples, batch 10 + 4 binding rows), a checkpoint and a metrics line
# at every epoch.
OVERRIDES = {"num_epochs": NUM_EPOCHS, "checkpoint_every_epochs": 1,
             "log_epochs": list(range(1, NUM_EPOCHS + 1)), "batching": "shuffle"}
STEPS_PER_EPOCH = 3


def _config(**extra):
  return helper.tiny_config({**OVERRIDES, **extra})


def _metrics_text(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return f.read()


def _records(workdir):
  if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    return []
  return [json.loads(line) for line in _metrics_text(workdir).splitlines()]


def _reached(workdir):
  """``epochs.reached`` of the workdir's run.json."""
  return runfiles.read_run(workdir)["epochs"]["reached"]


def _assert_same_run(expected_dir, got_dir):
  """Same metrics lines (timings aside) and the same final embeddings."""
  helper.assert_same_run(_records(expected_dir), _records(got_dir), expected_dir, got_dir)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  train.train_and_evaluate(_config(), workdir)
  assert [r["epoch"] for r in _records(workdir)] == list(range(1, NUM_EPOCHS + 1))
  return workdir


def _copy_of(reference, workdir):
  """The finished reference run copied to ``workdir`` (what a fresh run there would write)."""
  shutil.copytree(reference, workdir)
  return workdir


def _drop_checkpoints(workdir, epochs):
  for epoch in epochs:
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(epoch)))


def test_kill_inside_the_metrics_rewrite_loses_no_line(reference, tmp_path):
  workdir = _copy_of(reference, str(tmp_path / "run"))
  # As if killed before the saves of epochs 3 and 4: the resume keeps the lines of epochs 1-2
  # and rewrites metrics.jsonl without those of epochs 3-4.
  _drop_checkpoints(workdir, (3, 4))
  before = _metrics_text(workdir)
  proc = subprocess.run([sys.executable, FAULTS_HELPER, "kill-in-metrics-rewrite", workdir,
                         json.dumps(OVERRIDES)], capture_output=True, text=True, timeout=300)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert "resuming" in proc.stdout
  # Killed halfway through writing the new file: the old one is there, whole.
  assert _metrics_text(workdir) == before
  train.train_and_evaluate(_config(), workdir)
  _assert_same_run(reference, workdir)


def _largest_array_file(folder):
  """The largest chunk of array data (orbax/OCDBT keeps the bytes under .../d/)."""
  files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
           if os.path.basename(root) == "d"]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys,
                                                                  damage):
  workdir = _copy_of(reference, str(tmp_path / "run"))
  _drop_checkpoints(workdir, (4,))   # as if killed before the last save: resumes at epoch 3
  victim = _largest_array_file(os.path.join(workdir, "checkpoints", "3"))
  with open(victim, "r+b") as f:
    if damage == "truncate":
      f.truncate(os.path.getsize(victim) // 2)
    else:
      f.seek(os.path.getsize(victim) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0x10]))
  capsys.readouterr()
  train.train_and_evaluate(_config(), workdir)
  out = capsys.readouterr().out
  lines = [line for line in out.splitlines() if line.startswith("checkpoint of")]
  assert len(lines) == 1, out
  assert re.search(r"checkpoint of epoch 3 is corrupt \(.+\).*falling back to checkpoint of "
                   r"epoch 2", lines[0]), lines[0]
  assert "from the checkpoint of epoch 2" in out
  assert os.path.isdir(os.path.join(workdir, "checkpoints.corrupt", "3"))  # kept, moved aside
  _assert_same_run(reference, workdir)


class _SignalAtStep:
  """Wraps a run's jitted step: sends ``signum`` to this process after call ``at``."""

  def __init__(self, setup, signum, at):
    self.step, self.signum, self.at, self.calls = train.compile_train_step(setup), signum, at, 0

  def __call__(self, *args):
    out = self.step(*args)
    self.calls += 1
    if self.calls == self.at:
      os.kill(os.getpid(), self.signum)
    return out


@pytest.mark.parametrize("signum,at_step,code", [
    (signal.SIGTERM, STEPS_PER_EPOCH + 1, 143),   # mid-epoch 2: a mid-epoch checkpoint
    (signal.SIGINT, 2 * STEPS_PER_EPOCH, 130),    # at the end of epoch 2
])
def test_signal_stops_at_the_next_step_with_a_checkpoint(reference, tmp_path, signum, at_step,
                                                         code):
  workdir = str(tmp_path / "run")
  trainer = train.setup_run(_config(), workdir)
  step = _SignalAtStep(trainer, signum, at_step)
  with pytest.raises(interrupts.Stopped) as info:
    train.run(trainer, step)
  assert info.value.exit_code == code
  epoch, step = divmod(at_step - 1, STEPS_PER_EPOCH)
  assert f"after step {step + 1}/{STEPS_PER_EPOCH} of epoch {epoch + 1}" in str(info.value)
  assert signal.getsignal(signum) is not None   # the handlers of pytest are back
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                 if s.isdigit())
  assert saved[-1] == at_step // STEPS_PER_EPOCH
  preempted = os.path.join(workdir, train.PREEMPTED_DIR)
  if at_step % STEPS_PER_EPOCH:
    assert os.listdir(preempted) == [str(at_step)]
  # run.json names the last epoch whose steps all ran (epoch 1 when stopped inside epoch 2).
  assert _reached(workdir) == at_step // STEPS_PER_EPOCH
  train.train_and_evaluate(_config(), workdir)
  _assert_same_run(reference, workdir)
  assert _reached(workdir) == _reached(reference) == NUM_EPOCHS
  # The epoch checkpoints after it supersede the mid-epoch one.
  assert not os.path.isdir(preempted) or not os.listdir(preempted)


def test_divergence_stops_with_one_line_and_keeps_the_last_good_state(tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(train.Diverged) as info:
    train.train_and_evaluate(_config(lr=1e6), workdir)
  message = str(info.value)
  match = re.match(r"diverged at epoch (\d+) \((loss nan|loss inf|parameters not finite|embeddings not finite)\)",
                   message)
  assert match, message
  epoch = int(match.group(1))
  saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
                 if s.isdigit())
  assert saved == list(range(max(1, epoch - 3), epoch))   # max_to_keep=3, none at or after
  assert [r["epoch"] for r in _records(workdir)] == list(range(1, epoch))
  assert _reached(workdir) == epoch - 1
  for record in _records(workdir):
    assert np.isfinite(record["train_loss"])
