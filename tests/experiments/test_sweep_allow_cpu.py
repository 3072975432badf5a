"""--allow_cpu of the sweep: passed to every training run's trainer command when asked, never
otherwise, never to a UFM solve, and not part of what a run computes (its signature)."""

import os
import shutil
import subprocess

import pytest

from experiments import spec, sweep

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_command_has_allow_cpu_only_when_asked(tmp_path):
  train = spec.train_run("r", "experiments/configs/cifar10_resnet18.py", {"data.ratio": 10.0})
  solve = spec.ufm_run("u", "--sizes", "4,4", "--dim", "2")
  assert "--allow_cpu" not in sweep.command(train, tmp_path / "r")
  assert "--allow_cpu" not in sweep.command(train, tmp_path / "r", allow_cpu=False)
  asked = sweep.command(train, tmp_path / "r", {"data.data_dir": "/d"}, allow_cpu=True)
  assert asked[:3] == [asked[0], "-m", "deepnet.main"] and asked[-1] == "--allow_cpu"
  assert asked.count("--allow_cpu") == 1 and "--config.data.data_dir=/d" in asked
  assert "--allow_cpu" not in sweep.command(solve, tmp_path / "u", allow_cpu=True)


def test_dry_run_of_the_paper_preset_shows_it_on_every_training_run(tmp_path, capsys):
  out = tmp_path / "sweep"
  assert sweep.main(["e2_relu", "--preset", "paper", "--dry-run", "--allow_cpu",
                     "--out", str(out)]) == 0
  runs = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[")]
  train = [l for l in runs if "deepnet.main" in l]
  assert train and all(l.endswith(" --allow_cpu") for l in train), runs
  assert all("--allow_cpu" not in l for l in runs if "deepnet.main" not in l)
  assert sweep.main(["e2_relu", "--preset", "paper", "--dry-run", "--out", str(out)]) == 0
  assert "--allow_cpu" not in capsys.readouterr().out


def test_make_sweep_passes_preset_and_allow_cpu(tmp_path):
  if shutil.which("make") is None:
    pytest.skip("make is not installed")
  # A stamp newer than pyproject.toml: make has nothing to install.
  stamp = tmp_path / "installed"
  stamp.touch()
  os.utime(stamp, (os.path.getmtime(os.path.join(REPO, "pyproject.toml")) + 1,) * 2)

  def line(*variables):
    proc = subprocess.run(["make", "-n", "sweep", f"STAMP={stamp}", "BIN=bin", *variables],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (cmd,) = [l.split() for l in proc.stdout.splitlines() if "experiments.sweep" in l]
    return cmd
  assert line("EXP=e1", "PRESET=paper", "ALLOW_CPU=1") == [
      "bin/python", "-m", "experiments.sweep", "e1", "--preset", "paper", "--allow_cpu"]
  assert line("EXP=e1") == ["bin/python", "-m", "experiments.sweep", "e1"]
