"""The sweep runner: finished runs are skipped, an interrupted training run is resumed.

Real commands throughout: a `ufm solve` and two tiny digits trainings, each over two seeds
(one folder per seed run). The sweep is started in its own process group; once the first seed
of the long training run has written its first checkpoint the group is frozen (SIGSTOP, so the
run cannot finish meanwhile), interrupted with SIGINT (Ctrl-C) and let go. Running the sweep
again must skip the three finished runs (their files untouched), resume the interrupted seed
run from its checkpoint to the end and then run the other seed.
"""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import spec, sweep

REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = '''
from experiments.spec import train_run, ufm_run

TINY = {"model.mlp_widths": (32, 32), "data.imbalance": "step", "data.ratio": 10.0}


def get_experiment(preset="cpu"):
  return {"name": "tiny", "title": "tiny sweep", "seeds": [0, 1], "runs": [
      ufm_run("ufm_plus", "--sizes", "10,10,2,2", "--dim", 8, "--temperature", 1),
      train_run("short", "experiments/configs/digits_mlp.py",
                {**TINY, "num_epochs": NUM_SHORT, "log_epochs": (1, NUM_SHORT)}),
      train_run("long", "experiments/configs/digits_mlp.py",
                {**TINY, "num_epochs": 150, "checkpoint_every_epochs": 5,
                 "log_epochs": (1, 75, 150)}),
  ]}
'''


def _write_experiment(path: Path, num_short: int = 2) -> Path:
  path.write_text(EXPERIMENT.replace("NUM_SHORT", str(num_short)))
  return path


def _has_checkpoint(run_dir: Path) -> bool:
  ckpt = run_dir / "checkpoints"
  return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _epochs(path: Path):
  return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_sweep_skips_finished_and_resumes_interrupted(tmp_path):
  exp_file = _write_experiment(tmp_path / "tiny_exp.py")
  out = tmp_path / "sweep"
  proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", str(exp_file), "--out",
                           str(out), "--no-report"], cwd=REPO, start_new_session=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          # A test process started in the background (as CI may be) inherits
                          # an ignored SIGINT, and Python then installs no KeyboardInterrupt
                          # handler: restore the default so Ctrl-C is what a user would send.
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  deadline = time.time() + 300
  try:
    while not _has_checkpoint(out / "long_seed0"):
      assert proc.poll() is None, proc.stdout.read()
      assert time.time() < deadline, "the long run wrote no checkpoint in time"
      time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGSTOP)
    # Frozen mid-run: the long run must not be finished, or the test would prove nothing.
    assert not (out / "long_seed0" / "embeddings_final.npz").exists()
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGCONT)
    output, _ = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  assert proc.returncode != 0, output
  assert "run the same command again to resume" in output
  assert not (out / "long_seed0" / "embeddings_final.npz").exists()
  assert not (out / "long_seed1").exists()
  state = json.loads((out / "sweep.json").read_text())
  assert state["runs"]["long_seed0"]["status"] == "interrupted"
  assert state["runs"]["ufm_plus"]["status"] == "done"
  assert state["runs"]["short_seed0"]["status"] == "done"
  assert state["runs"]["short_seed1"]["status"] == "done"
  for seed in (0, 1):
    config = json.loads((out / f"short_seed{seed}" / "config.json").read_text())
    assert config["seed"] == seed
  logged_before = _epochs(out / "long_seed0" / "metrics.jsonl")
  assert logged_before and logged_before[-1] < 150

  finished = [out / "ufm_plus" / "result.json"] + [
      out / f"short_seed{s}" / f for s in (0, 1) for f in ("embeddings_final.npz",
                                                           "metrics.jsonl")]
  stamps = [p.stat().st_mtime_ns for p in finished]

  # The dry run reports what will happen.
  exp = sweep.load_experiment(str(exp_file))
  lines = []
  sweep.run_experiment(exp, out, dry_run=True, log=lines.append)
  assert [l.split(":")[0].split()[-1] for l in lines] == ["(done)", "(done)", "(done)",
                                                          "(resume)", "(new)"]

  lines = []
  summary = sweep.run_experiment(exp, out, report=False, log=lines.append)
  assert summary["failed"] == []
  text = "\n".join(lines)
  assert "ufm_plus: finished already, skipped" in text
  assert "short_seed0: finished already, skipped" in text
  assert "short_seed1: finished already, skipped" in text
  assert "long_seed0: resuming" in text and "long_seed1: starting" in text
  assert [p.stat().st_mtime_ns for p in finished] == stamps
  # The trainer resumed from its checkpoint (not from scratch) and finished.
  log = (out / "logs" / "long_seed0.log").read_text()
  # The stop lands on an epoch boundary or inside an epoch, by timing: either checkpoint is a
  # resume, and a run started from scratch says neither.
  assert "resuming" in log and ("from the checkpoint of epoch" in log
                                or "from the mid-epoch checkpoint of epoch" in log), log
  for seed in (0, 1):
    assert (out / f"long_seed{seed}" / "embeddings_final.npz").exists()
    assert _epochs(out / f"long_seed{seed}" / "metrics.jsonl") == [1, 75, 150]
  # The sweep repeats each run's progress lines (logged epochs, "done:") after its prefix.
  progress = [l for l in lines if "long_seed1" in l and l.split("long_seed1", 1)[1].startswith(
      "   ")]
  assert any(" epoch  150 " in l for l in progress), lines
  assert any(" done: epoch 150" in l for l in progress), lines
  assert any(l.split("long_seed1", 1)[1].strip().startswith("epoch    1 ") for l in progress)
  # The UFM run solved docs/theory.md#ref-thm1's problem: the Thm 1 value at tau = 1.
  result = json.loads((out / "ufm_plus" / "result.json").read_text())
  assert result["loss"] == pytest.approx(61.824906, abs=1e-5)

  # A finished run is never reused for a different command.
  _write_experiment(exp_file, num_short=3)
  lines = []
  summary = sweep.run_experiment(sweep.load_experiment(str(exp_file)), out, report=False,
                                 log=lines.append)
  assert summary["failed"] == ["short_seed0", "short_seed1"]
  # Judged by each folder's own config.json: it is another run (num_epochs differs).
  assert any("holds another run" in l and "num_epochs" in l for l in lines), lines
  assert [p.stat().st_mtime_ns for p in finished] == stamps


def test_commands_and_loading(tmp_path):
  exp = sweep.load_experiment("e4")     # a unique prefix
  assert exp["name"] == "e4_minibatch_ufm" and exp["preset"] == "cpu"
  argv = sweep.command(exp["runs"][0], tmp_path / "x")
  assert argv[:4] == [sys.executable, "-m", "ufm.cli", "solve"]
  assert argv[-2:] == ["--out", str(tmp_path / "x")]
  run = spec.train_run("r", "experiments/configs/digits_mlp.py",
                       {"model.final_relu": False, "model.mlp_widths": (8, 4), "lr": 0.5})
  argv = sweep.command(run, tmp_path / "w", {"data.data_dir": "/d"})
  assert argv[3:] == ["--config=experiments/configs/digits_mlp.py", f"--workdir={tmp_path / 'w'}",
                      "--config.model.final_relu=False", "--config.model.mlp_widths=(8,4)",
                      "--config.lr=0.5", "--config.data.data_dir=/d"]
  for name in ("e1", "e2", "e3", "e4", "e5", "e6", "e7", "angles", "demo", "recipe"):
    for preset in ("cpu", "paper"):
      exp = sweep.load_experiment(name, preset)
      assert exp["runs"] and exp["title"]
  with pytest.raises(sweep.SweepError, match="unknown experiment"):
    sweep.load_experiment("nope")
  with pytest.raises(sweep.SweepError, match="ambiguous"):
    sweep.load_experiment("e")


def test_recipe_targets_checks_read_its_runs():
  exp = sweep.load_experiment("recipe_targets")
  runs = {r["name"]: r for r in exp["runs"]}
  assert len(runs) == 12 and all(r["config"] in (
      "experiments/configs/fashion_mnist_cpu.py", "experiments/configs/digits_mlp.py")
      for r in runs.values())
  for item in exp["checks"]:
    assert set(item.runs) <= set(runs), item
  for data in ("fashion_mnist", "digits"):
    bind = runs[f"{data}_relu_R100_bind1"]["overrides"]
    shuffled = runs[f"{data}_relu_R100_bind0"]["overrides"]
    # The binding pair differs in binding alone, so binding_speed pairs them.
    assert {k for k in bind if bind[k] != shuffled.get(k)} == {"binding"}
    logged = ast.literal_eval(bind["log_epochs"])
    assert logged[0] == 1 and logged[-1] == bind["num_epochs"] == 500
  speed = [c for c in exp["checks"] if c.name == "binding_speed"]
  assert speed and all(c.options == {"at_most": 0.5} for c in speed)


def test_bad_input_is_one_line():
  proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "nope"], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1 and "unknown experiment" in proc.stderr


def test_training_runs_expand_over_seeds(tmp_path):
  exp = {"name": "x", "seeds": 3, "runs": [
      spec.ufm_run("u", "--sizes", "3,3", "--dim", 2),
      spec.train_run("r", "experiments/configs/digits_mlp.py", {"lr": 0.5}),
      spec.train_run("fixed", "experiments/configs/digits_mlp.py", {"seed": 7})]}
  sweep.validate(exp)
  runs = sweep.expand_seeds(exp)
  assert [r["name"] for r in runs] == ["u", "r_seed0", "r_seed1", "r_seed2", "fixed"]
  argv = sweep.command(runs[2], tmp_path / "r_seed1")
  assert argv[-2:] == ["--config.lr=0.5", "--config.seed=1"]
  assert runs[4]["overrides"] == {"seed": 7}            # a run that sets its seed runs once
  # Each seed run has its own signature, so a finished seed is never reused for another.
  assert len({sweep.signature(r) for r in runs[1:4]}) == 3
  # --only: a run name selects all its seeds, a seed run name one of them.
  lines = []
  sweep.run_experiment(exp, tmp_path / "out", dry_run=True, only=["r"], log=lines.append)
  assert [l.split()[1] for l in lines] == ["r_seed0", "r_seed1", "r_seed2"]
  lines = []
  sweep.run_experiment({**exp, "seeds": [4, 9]}, tmp_path / "out", dry_run=True,
                       only=["r_seed9", "u"], log=lines.append)
  assert [l.split()[1] for l in lines] == ["u", "r_seed9"]
  with pytest.raises(sweep.SweepError, match="use --seeds"):
    sweep.run_experiment(exp, tmp_path / "out", dry_run=True, overrides={"seed": 1})
  for bad in (0, [], [1, 1], [-1], "3", True):
    with pytest.raises(sweep.SweepError, match="seeds"):
      sweep.validate({**exp, "seeds": bad})
  assert sweep.parse_seeds("2") == [0, 1] and sweep.parse_seeds("0,4,7") == [0, 4, 7]
  # The CPU presets run every training run for 3 seeds.
  exp = sweep.load_experiment("e7")
  names = [r["name"] for r in sweep.expand_seeds(exp)]
  assert exp["seeds"] == sweep.DEFAULT_SEEDS == 3 and len(names) == 3 * len(exp["runs"])
  assert names[:3] == [f"{exp['runs'][0]['name']}_seed{s}" for s in range(3)]
  # The paper preset runs each once, as the paper does (GPU hours per run).
  paper = sweep.load_experiment("e7", "paper")
  assert paper["seeds"] == 1 and len(sweep.expand_seeds(paper)) == len(paper["runs"])


def test_bad_seeds_is_one_line():
  proc = subprocess.run([sys.executable, "-m", "experiments.sweep", "e7", "--dry-run",
                         "--seeds", "two"], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert len(proc.stderr.strip().splitlines()) == 1 and "--seeds" in proc.stderr


def test_paper_scale_runs_the_two_recipes_with_their_seeds():
  exp = sweep.load_experiment("paper_scale")
  runs = {r["name"]: r for r in spec.expand_seeds(exp)}
  # 2 recipes x (3 seeds at R = 10 and at R = 100 bound, 1 seed in the 4 other settings).
  assert len(runs) == 2 * (3 + 3 + 4)
  for recipe, config in (("fashion_mnist_resnet", "fashion_mnist_resnet_cpu.py"),
                         ("fashion_mnist_full", "fashion_mnist_full.py")):
    mine = {n: r for n, r in runs.items() if n.startswith(recipe + "_")}
    assert all(r["config"] == f"experiments/configs/{config}" for r in mine.values())
    for name, run in mine.items():
      assert name == f"{run['setting']}_seed{run['overrides']['seed']}"
    seeds = sorted(r["overrides"]["seed"] for r in mine.values()
                   if r["setting"] == f"{recipe}_relu_R10")
    assert seeds == [0, 1, 2]
    bind = runs[f"{recipe}_relu_R100_bind1_seed0"]["overrides"]
    shuffled = runs[f"{recipe}_relu_R100_bind0_seed0"]["overrides"]
    assert {k for k in bind if bind[k] != shuffled.get(k)} == {"binding"}
  settings = {r["setting"] for r in runs.values()}
  for item in exp["checks"]:
    assert set(item.runs) <= settings, item
  assert len(exp["checks"]) == 2 * 5
