"""A run killed with SIGKILL and started again with the same command (deepnet.main) resumes
from its last checkpoint and ends with the same metrics.jsonl and embeddings as a run that was
never interrupted."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import jax

import deepnet_train_helper as helper
from deepnet import checkpoints
from deepnet import train

jax.config.update("jax_disable_most_optimizations", True)

NUM_EPOCHS = 12
OVERRIDES = {"num_epochs": NUM_EPOCHS, "checkpoint_every_epochs": 1, "binding": 0,
             "batching": "shuffle"}


def _command(workdir):
  args = ["--config=" + os.path.join(helper.REPO, "experiments/configs/digits_mlp.py"),
          "--workdir=" + workdir]
  config = helper.tiny_config(OVERRIDES)
  for key in ("data.name", "data.num_classes", "data.dim", "data.n_test_per_class",
              "data.imbalance", "data.ratio", "data.n_max", "data.views", "model.mlp_widths",
              "batch_size", "binding", "batching", "num_epochs", "checkpoint_every_epochs",
              "eval_batch_size"):
    node = config
    for part in key.split("."):
      node = node[part]
    args.append(f"--config.{key}={node}")
  return [sys.executable, os.path.abspath(helper.__file__), "main"] + args


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
  reference = str(tmp_path / "reference")
  train.train_and_evaluate(helper.tiny_config(OVERRIDES), reference)
  expected = _metrics(reference)
  assert expected[-1]["epoch"] == NUM_EPOCHS and len(expected) >= 6

  workdir = str(tmp_path / "killed")
  command = _command(workdir)
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  # A checkpoint is complete once its checksum file is written (deepnet.checkpoints).
  target = os.path.join(workdir, "checkpoints", "3", checkpoints.CHECKSUMS_NAME)
  deadline = time.time() + 240
  while not os.path.exists(target) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL, err[-3000:]
  assert not os.path.isdir(os.path.join(workdir, "checkpoints", str(NUM_EPOCHS)))

  resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  match = re.search(r"from the checkpoint of epoch (\d+)", resumed.stdout)
  assert match and 3 <= int(match.group(1)) < NUM_EPOCHS, resumed.stdout

  got = _metrics(workdir)
  helper.assert_same_run(expected, got, reference, workdir)
  assert math.isfinite(got[-1]["train_loss"])
