"""The sweep command with no experiment, with --help and with a bad flag: a usage line, the
list of experiments, exit 0 or 2, never a traceback."""

import subprocess
import sys

import pytest

from experiments import spec


def _sweep(*args):
  return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], capture_output=True,
                        text=True, timeout=120)


def test_no_arguments_lists_every_experiment_file():
  proc = _sweep()
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  assert proc.stdout.startswith("usage:")
  names = {p.stem for p in spec.experiment_files()}
  assert names and all(f"  {n} " in proc.stdout for n in names)


@pytest.mark.parametrize("args,code", [(("--help",), 0), (("--no-such-flag",), 2)])
def test_help_and_a_bad_flag(args, code):
  proc = _sweep(*args)
  assert proc.returncode == code
  assert "usage:" in proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr
