"""The same run on 1 CPU device, on 8 (one process) and on 2 processes x 2 devices joined by
jax.distributed gives the same losses and metrics: the global batch, not the device count,
defines the computation (padding rows included)."""

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

import deepnet_train_helper as helper
from deepnet import train

jax.config.update("jax_disable_most_optimizations", True)

HELPER = os.path.abspath(helper.__file__)
TOL = 1e-4


def _env(devices):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  assert jax.device_count() == 1
  workdir = str(tmp_path_factory.mktemp("one_device"))
  train.train_and_evaluate(helper.tiny_config(), workdir)
  return _metrics(workdir)


def test_eight_devices_equal_one(one_device_run, tmp_path):
  workdir = str(tmp_path / "eight")
  proc = subprocess.run([sys.executable, HELPER, "train", workdir, "{}"], env=_env(8),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "run.json")) as f:
    info = json.load(f)["extra"]
  # 10 + 4 binding rows padded to 16 over 8 devices: the padding path is exercised.
  assert info["num_devices"] == 8 and info["rows_per_batch"] == 14
  assert info["padded_rows"] == 16
  runs = _metrics(workdir)
  assert [r["epoch"] for r in runs] == [1, 2] and len(one_device_run) == 2
  helper.assert_same_records(one_device_run, runs, TOL)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(one_device_run, tmp_path):
  workdir = str(tmp_path / "two_processes")
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, HELPER, "train", workdir, "{}", str(i), "2",
                             str(port)], env=_env(2), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = []
  for proc in procs:
    try:
      outputs.append(proc.communicate(timeout=300))
    finally:
      if proc.poll() is None:
        proc.kill()
  for proc, (_, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-3000:]
  with open(os.path.join(workdir, "run.json")) as f:
    info = json.load(f)["extra"]
  assert info["num_processes"] == 2 and info["num_devices"] == 4
  # Only process 0 reports; both processes trained (process 1 printed nothing).
  assert "done: epoch 2" in outputs[0][0] and "done:" not in outputs[1][0]
  helper.assert_same_records(one_device_run, _metrics(workdir), TOL)
