"""A short end-to-end run of experiments/configs/fashion_mnist_cpu.py on the real IDX files."""

import json
import math
import os

import jax
import numpy as np
import pytest

from deepnet import idx
from deepnet import train
from experiments.configs import fashion_mnist_cpu

jax.config.update("jax_disable_most_optimizations", True)

pytestmark = pytest.mark.skipif(
    idx.find_idx_files("fashion_mnist", None) is None,
    reason="the real Fashion-MNIST IDX files are not in /usr/share/datasets/fashion-mnist "
           "(`make data` installs Debian's dataset-fashion-mnist)")


def test_fashion_mnist_cpu_recipe_runs_end_to_end(tmp_path):
  config = fashion_mnist_cpu.get_config()
  # The recipe as it is but tiny: 5 x 10 + 5 x 1 images, 2 epochs, a narrow MLP.
  config.data.n_max = 10
  config.model.mlp_widths = (32, 16)
  config.batch_size = 16
  config.num_epochs = 2
  trainer = train.setup_run(config, str(tmp_path))
  ds = trainer.dataset
  assert ds.class_sizes == [10] * 5 + [1] * 5 and ds.train_x.shape == (55, 32, 32, 1)
  assert len(ds.test_y) == 10_000 and np.bincount(ds.test_y).tolist() == [1000] * 10
  assert trainer.steps_per_epoch == 55 // 16 and trainer.num_views == 2
  assert "batch_stats" not in trainer.init_variables()   # the recipe's MLP has no BN

  train.run(trainer)
  with open(tmp_path / "metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  assert [r["epoch"] for r in lines] == [1, 2]
  for record in lines:
    assert math.isfinite(record["train_loss"]) and math.isfinite(record["dist_of"])
    # Theorem 2 (non-negative embeddings behind the final ReLU): the loss is >= the OF floor.
    assert record["train_loss"] >= record["optimal_loss"] - 1e-5
    assert 0.0 <= record["ncc_acc_test"] <= 1.0
  npz = np.load(os.path.join(tmp_path, "embeddings_final.npz"))
  assert npz["train_embeddings"].shape == (55, 16) and npz["test_embeddings"].shape == (10_000, 16)
  assert (npz["train_embeddings"] >= 0).all()
  np.testing.assert_allclose(np.linalg.norm(npz["test_embeddings"], axis=1), 1.0, atol=1e-5)
