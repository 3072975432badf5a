"""The lr schedules against hand-computed tables, and a config that lacks a field."""

import importlib
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepnet import config as config_lib
from deepnet import optim
from deepnet import run_setup
from experiments.configs import digits_mlp

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _config(**fields):
  config = digits_mlp.get_config()
  for key, value in fields.items():
    config[key] = value
  return config


def _table(schedule, num_steps):
  return np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(num_steps, dtype=jnp.int32)))


def test_multistep_table_taken_as_given():
  # 10 epochs of S = 2 steps, decays x0.5 after epochs 3 and 7 (no scaling): epoch e (1-based)
  # runs steps 2(e-1), 2e-1, so steps 0-5 are at 0.1, 6-13 at 0.05 and 14-19 at 0.025.
  config = _config(num_epochs=10, lr_decay_epochs=(3, 7), lr_decay_base_epochs=0,
                   lr_decay_factor=0.5)
  expected = [0.1] * 6 + [0.05] * 8 + [0.025] * 6
  np.testing.assert_allclose(_table(optim.learning_rate_schedule(config, 2), 20), expected,
                             rtol=1e-6)


def test_multistep_table_of_the_paper_decays_scaled_to_35_epochs():
  # (116, 232) of 350 -> round(11.6) = 12 and round(23.2) = 23; S = 3: the first decayed step
  # is 12 * 3 = 36, the second 23 * 3 = 69.
  config = _config(num_epochs=35)
  table = _table(optim.learning_rate_schedule(config, 3), 105)
  expected = np.asarray([0.1] * 36 + [0.01] * 33 + [0.001] * 36)
  np.testing.assert_allclose(table, expected, rtol=1e-6)


def test_cosine_and_warmup_tables():
  # Cosine over E S = 2 x 2 = 4 steps: 0.1 (1 + cos(pi t / 4)) / 2.
  cosine = _table(optim.learning_rate_schedule(_config(num_epochs=2, lr_schedule="cosine"), 2),
                  4)
  np.testing.assert_allclose(cosine, [0.1, 0.1 * (1 + math.sqrt(0.5)) / 2, 0.05,
                                      0.1 * (1 - math.sqrt(0.5)) / 2], rtol=1e-6)
  # One warm-up epoch of 4 steps on the multistep schedule with one decay (x0.1 after epoch
  # 2 of 3): (t + 1) / 4 of 0.1, then 0.1, then 0.01 from step 8.
  config = _config(num_epochs=3, warmup_epochs=1, lr_decay_epochs=(2,), lr_decay_base_epochs=0)
  warm = _table(optim.learning_rate_schedule(config, 4), 12)
  np.testing.assert_allclose(warm, [0.025, 0.05, 0.075, 0.1] + [0.1] * 4 + [0.01] * 4,
                             rtol=1e-6)


@pytest.mark.parametrize("field", ["grad_clip_norm", "data.views", "model.mlp_norm"])
def test_a_missing_field_is_one_config_error_naming_it(tmp_path, field):
  config = digits_mlp.get_config()
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  del node[leaf]
  with pytest.raises(config_lib.ConfigError, match=f"'{field}' is missing"):
    run_setup.setup_run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_every_recipe_config_defines_every_trainer_field():
  configs = os.path.join(REPO, "experiments", "configs")
  for name in ("cifar10_resnet18", "cifar100_resnet18", "digits_mlp", "fashion_mnist_cpu",
               "fashion_mnist_resnet18", "mnist1d_mlp", "mnist_resnet18"):
    assert os.path.exists(os.path.join(configs, f"{name}.py"))
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    config_lib.check_fields(config)   # raises on the first missing field


def test_cli_with_a_config_that_lacks_a_field_exits_2_with_one_line(tmp_path):
  path = tmp_path / "short_config.py"
  path.write_text("from experiments.configs import digits_mlp\n\n\ndef get_config():\n"
                  "  config = digits_mlp.get_config()\n  del config['lr_decay_factor']\n"
                  "  return config\n")
  proc = subprocess.run([sys.executable, "-m", "deepnet.main", f"--config={path}",
                         f"--workdir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                        text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert lines[0].startswith("error: config field 'lr_decay_factor' is missing")
  assert not os.path.exists(tmp_path / "run")
