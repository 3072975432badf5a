"""`python -m deepnet.main` (what `make train` runs): bad input gives one line on stderr and
exit status 2, never a traceback."""

import json
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIGITS = "experiments/configs/digits_mlp.py"


def _main(*args, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  start = time.time()
  proc = subprocess.run([sys.executable, "-m", "deepnet.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
  return proc, time.time() - start


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_missing_tfds_dataset_fails_fast_with_the_preparation_hint(tmp_path):
  proc, seconds = _main("--config=experiments/configs/cifar10_resnet18.py",
                        f"--workdir={tmp_path / 'run'}",
                        f"--config.data.data_dir={tmp_path / 'tfds'}")
  _assert_one_line_error(proc, "cifar10", "tfds build cifar10", str(tmp_path / "tfds"))
  assert seconds < 60
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("override,fragment", [
    ("--config.loss=mse", "loss must be one of"),
    ("--config.nonexistent_field=1", "nonexistent_field"),
    ("--config.batch_size=fifty", "batch_size"),
    ("--config.data.n_max=1000", "n_max"),
    ("--config.data.no_such=1", "'data.no_such'"),
    ("--config.model.no_such_either=1", "'model.no_such_either'"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, override, fragment):
  proc, _ = _main(f"--config={DIGITS}", f"--workdir={tmp_path}", override)
  _assert_one_line_error(proc, fragment)


def test_missing_config_file_and_foreign_workdir(tmp_path):
  proc, _ = _main("--config=experiments/configs/no_such_config.py", f"--workdir={tmp_path}")
  _assert_one_line_error(proc, "no_such_config.py")
  # A workdir that holds a run with another config is refused (no silent mix of two runs).
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"loss": "ce"}, f)
  proc, _ = _main(f"--config={DIGITS}", f"--workdir={tmp_path}")
  _assert_one_line_error(proc, "different config", str(tmp_path))
