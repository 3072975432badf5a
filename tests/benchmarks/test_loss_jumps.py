"""benchmarks/loss_jumps.py: the jump count against hand-made gap series, the rescaling
against a hand-made tree, and its epochs against the trainer's metrics.jsonl."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import loss_jumps
from deepnet import train

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "deepnet"))
from deepnet_train_helper import tiny_config  # noqa: E402  pylint: disable=g-import-not-at-top


def test_jump_episodes_by_hand():
  epochs = list(range(1, 11))
  # Running minimum: 0.3, 0.2, 0.04 (now below 0.05), ...; epochs 4-5 exceed 0.04 + 0.05
  # (one episode), 6 does not, 8 does again (0.10 > 0.09), 10 is below the new low + 0.05.
  gaps = [0.3, 0.2, 0.04, 0.10, 0.12, 0.06, 0.03, 0.10, 0.02, 0.06]
  assert loss_jumps.jump_episodes(epochs, gaps) == [4, 8]
  # A gap that never gets below 0.05 has no jumps, whatever it does.
  assert loss_jumps.jump_episodes(epochs, [0.3, 0.06, 0.4, 0.06, 0.5] * 2) == []


def test_summary_by_hand():
  records = [{"epoch": e, "loss_gap": g, "param_norms": {"a": e}, **d} for e, g, d in [
      (1, 0.3, {"dist_of": 0.7}), (2, 0.01, {}), (3, 0.0015, {"dist_of": 0.19}),
      (4, 0.001, {"dist_of": 0.1})]]
  got = loss_jumps.summarize(records)
  assert got == {"fit": 3, "jumps": [], "first_below_0.2": 3, "last_dist_of": (4, 0.1),
                 "last_param_norms": {"a": 4}}


def test_summary_command_and_plot(tmp_path):
  path = tmp_path / "run.jsonl"
  path.write_text("".join(json.dumps({"epoch": e, "loss_gap": g, "dist_of": 0.5 / e,
                                      "param_norms": {"backbone/dense3": 10.0 - e}}) + "\n"
                          for e, g in [(1, 0.3), (2, 0.04), (3, 0.2), (4, 0.001)]))
  fig = tmp_path / "fig.png"
  done = subprocess.run([sys.executable, "-m", "benchmarks.loss_jumps", "--summary",
                         f"--plot={fig}", str(path)], capture_output=True, text=True,
                        cwd=REPO, check=False)
  assert done.returncode == 0, done.stderr
  name, summary = done.stdout.split(" ", 1)
  assert name == "run"
  assert json.loads(summary) == {"fit": 4, "jumps": [3], "first_below_0.2": 3,
                                 "last_dist_of": [4, 0.125],
                                 "last_param_norms": {"backbone/dense3": 6.0}}
  assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  bad = subprocess.run([sys.executable, "-m", "benchmarks.loss_jumps", "--summary",
                        str(tmp_path / "missing.jsonl")], capture_output=True, text=True,
                       cwd=REPO, check=False)
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert bad.stderr.strip().startswith("loss_jumps: cannot read")


def test_rescaled_touches_only_the_module():
  tree = {"backbone": {"dense1": {"kernel": jnp.ones(2)}, "dense2": {"kernel": jnp.ones(3),
                                                                     "bias": jnp.ones(1)}}}
  out = loss_jumps._rescaled(tree, ("backbone", "dense2"), 2.5)
  np.testing.assert_array_equal(out["backbone"]["dense1"]["kernel"], [1.0, 1.0])
  np.testing.assert_array_equal(out["backbone"]["dense2"]["kernel"], [2.5] * 3)
  np.testing.assert_array_equal(out["backbone"]["dense2"]["bias"], [2.5])


def test_epochs_match_the_trainer(tmp_path):
  jax.config.update("jax_disable_most_optimizations", True)
  config = tiny_config({"num_epochs": 3, "log_epochs": (1, 2, 3), "binding": 0})
  train.train_and_evaluate(config, str(tmp_path / "run"))
  with open(tmp_path / "run" / "metrics.jsonl", encoding="utf-8") as f:
    logged = [json.loads(line) for line in f]
  out = tmp_path / "jumps.jsonl"
  state = loss_jumps.measure(tiny_config({"num_epochs": 3, "binding": 0}), str(out), epochs=3,
                             eval_every=2)
  with open(out, encoding="utf-8") as f:
    measured = [json.loads(line) for line in f]
  assert [r["epoch"] for r in measured] == [1, 2, 3]
  assert ["dist_of" in r for r in measured] == [False, True, True]
  for want, have in zip(logged, measured):
    for key in ("train_loss", "optimal_loss", "loss_gap"):
      np.testing.assert_allclose(have[key], want[key], rtol=1e-6)
    assert have["param_norms"] == pytest.approx(want["param_norms"], rel=1e-6)
  np.testing.assert_allclose(measured[-1]["dist_of"], logged[-1]["dist_of"], rtol=1e-6)
  # The norms are those of the final parameters, module by module.
  params = jax.device_get(state.params)
  for module, norm in measured[-1]["param_norms"].items():
    node = params
    for key in module.split("/"):
      node = node[key]
    squares = sum(float(np.sum(np.square(np.asarray(v, np.float64)))) for v in node.values())
    assert math.isclose(norm, math.sqrt(squares), rel_tol=1e-6), module
