"""experiments/configs/fashion_mnist_resnet_cpu.py on the real IDX files: its class sizes, and
a tiny end-to-end run of the recipe's network and evaluation subsample."""

import jax
import numpy as np
import pytest

from deepnet import idx
from deepnet import train
from tests.deepnet import recipe_run
from experiments.configs import fashion_mnist_resnet_cpu

jax.config.update("jax_disable_most_optimizations", True)

pytestmark = pytest.mark.skipif(
    idx.find_idx_files("fashion_mnist", None) is None,
    reason="the real Fashion-MNIST IDX files are not in /usr/share/datasets/fashion-mnist "
           "(`make data` installs Debian's dataset-fashion-mnist)")


@pytest.mark.parametrize("ratio,minority", [(10, 50), (100, 5)])
def test_recipe_keeps_at_least_five_images_per_minority_class(tmp_path, ratio, minority):
  config = fashion_mnist_resnet_cpu.get_config()
  config.data.ratio = ratio
  trainer = train.setup_run(config, str(tmp_path))
  assert trainer.dataset.class_sizes == [500] * 5 + [minority] * 5
  assert trainer.embedding_dim == 64          # width 1/8: 512 / 8 channels, d >= K = 10
  assert "batch_stats" in trainer.init_variables()   # the paper's network has BatchNorm
  assert np.bincount(trainer.test_y[trainer.eval_test_rows]).tolist() == [100] * 10


def test_recipe_trains_end_to_end(tmp_path):
  config = fashion_mnist_resnet_cpu.get_config()
  # The recipe as it is but tiny: 5 x 10 + 5 x 1 images, 2 epochs, width 1/32 (d = 16).
  config.data.n_max = 10
  config.model.width = 1 / 32
  config.batch_size = 16
  config.num_epochs = 2
  config.lr_decay_epochs = (1,)
  config.log_epochs = (1, 2)
  lines = recipe_run.train_tiny(config, tmp_path)
  assert [r["epoch"] for r in lines] == [1, 2]
  assert [r["test_examples"] for r in lines] == [1000, 10_000]
