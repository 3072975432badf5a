"""experiments/configs/fashion_mnist_full.py on the real IDX files: the paper's class sizes,
batch size, epochs and logging, and a tiny end-to-end run of the recipe."""

import jax
import numpy as np
import pytest

from deepnet import config as config_lib
from deepnet import idx
from deepnet import train
from tests.deepnet import recipe_run
from experiments.configs import fashion_mnist_full

jax.config.update("jax_disable_most_optimizations", True)

pytestmark = pytest.mark.skipif(
    idx.find_idx_files("fashion_mnist", None) is None,
    reason="the real Fashion-MNIST IDX files are not in /usr/share/datasets/fashion-mnist "
           "(`make data` installs Debian's dataset-fashion-mnist)")


# The paper's sizes (n_max = 5000): R = 1 is 50,000 images, R = 10 27,500, R = 100 25,250.
@pytest.mark.parametrize("ratio,minority,total", [(1, 5000, 50_000), (10, 500, 27_500),
                                                  (100, 50, 25_250)])
def test_recipe_has_the_papers_class_sizes(tmp_path, ratio, minority, total):
  config = fashion_mnist_full.get_config()
  config.data.ratio = ratio
  trainer = train.setup_run(config, str(tmp_path))
  sizes = trainer.dataset.class_sizes
  assert sizes == [5000] * 5 + [minority] * 5 and sum(sizes) == total
  assert trainer.dataset.train_x.shape[0] == total
  # Balanced test split, whole (10,000 images) at every logged epoch.
  assert np.bincount(trainer.test_y[trainer.eval_test_rows]).tolist() == [1000] * 10


def test_recipe_uses_the_papers_batch_epochs_and_logging():
  config = fashion_mnist_full.get_config()
  assert (config.batch_size, config.num_epochs) == (50, 350)
  assert config_lib.resolve_log_epochs(config) == list(config_lib.PAPER_LOG_EPOCHS)
  assert config.model.name == "mlp" and config.model.final_relu


def test_recipe_trains_end_to_end(tmp_path):
  config = fashion_mnist_full.get_config()
  # The recipe as it is but tiny: 5 x 20 + 5 x 2 images, 2 epochs of 2 steps of 2 x 50 rows.
  config.data.n_max = 20
  config.num_epochs = 2
  config.lr_decay_epochs = (1,)
  config.log_epochs = (1, 2)
  lines = recipe_run.train_tiny(config, tmp_path)
  assert [r["epoch"] for r in lines] == [1, 2]
  assert [r["test_examples"] for r in lines] == [10_000, 10_000]
