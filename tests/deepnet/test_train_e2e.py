"""End-to-end training steps of every model family through train.train_and_evaluate (the code path of
`make train`), on tiny widths and sizes."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepnet import data
from deepnet import models
from deepnet import train
from experiments.configs import cifar10_resnet18
from experiments.configs import digits_mlp
from geometry import losses
from geometry import runfiles

jax.config.update("jax_disable_most_optimizations", True)

# docs/contracts.md "Training runs" and the issue: keys every metrics.jsonl line must have.
REQUIRED_KEYS = (
    "epoch", "step", "lr", "train_loss", "optimal_loss", "dist_of", "dist_etf", "nc1",
    "nc1_over_k", "mean_cos", "class_mean_norms", "test_dist_of", "test_dist_etf", "test_nc1",
    "test_nc1_over_k", "test_mean_cos", "test_class_mean_norms", "ncc_acc_train",
    "ncc_acc_test", "ncc_maj_train", "ncc_min_train", "ncc_maj_test", "ncc_min_test",
    "of_unique_epoch", "of_unique_so_far", "gram", "angle_values", "seconds",
    "images_per_second", "train_seconds", "eval_seconds", "test_examples", "param_norms")


def gaussian_config(**changes):
  """A tiny SCL MLP run on the synthetic gaussian mixture (K = 4, sizes 12, 12, 6, 6)."""
  config = digits_mlp.get_config()
  config.data.name = "gaussian"
  config.data.num_classes, config.data.dim, config.data.n_test_per_class = 4, 8, 5
  config.data.imbalance, config.data.ratio, config.data.n_max = "step", 2.0, 12
  config.data.views = "vflip"
  config.model.mlp_widths = (16, 8)
  config.batch_size = 36
  config.num_epochs = 1
  config.checkpoint_every_epochs = 1
  for key, value in changes.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def of_floor(class_rows, tau, scale=1.0):
  """docs/theory.md#ref-code-floor by hand for one batch with `class_rows` rows per class."""
  m = np.asarray(class_rows, np.float64)
  n = m.sum()
  return scale / n * float(np.sum(m * np.log(m - 1 + (n - m) * math.exp(-1 / tau))))


def check_run_files(workdir, trainer, epochs):
  lines = read_metrics(workdir)
  assert [r["epoch"] for r in lines] == trainer.log_epochs
  for record in lines:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    assert not missing, missing
    assert math.isfinite(record["train_loss"])
    k = trainer.num_classes
    assert np.asarray(record["gram"]).shape == (k, k)
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(epochs)))
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["num_epochs"] == epochs
  npz = np.load(os.path.join(workdir, "embeddings_final.npz"))
  np.testing.assert_array_equal(npz["train_labels"], trainer.dataset.train_y)
  np.testing.assert_array_equal(npz["test_labels"], trainer.dataset.test_y)
  assert npz["train_embeddings"].shape == (len(trainer.dataset.train_y), trainer.embedding_dim)
  assert npz["test_embeddings"].shape == (len(trainer.dataset.test_y), trainer.embedding_dim)
  return lines, npz


def test_mlp_scl_step_loss_floor_and_files(tmp_path):
  config = gaussian_config()
  trainer = train.setup_run(config, str(tmp_path))
  # Before the step: the loss an independent computation gives for the initial network.
  ds = trainer.dataset
  variables = jax.jit(trainer.model.init, static_argnames="train")(
      jax.random.key(config.seed), jnp.zeros((2, 8)), train=False)
  result = train.run(trainer)
  lines, npz = check_run_files(str(tmp_path), trainer, 1)
  (record,) = lines
  assert record["step"] == 1 and result.metrics["epoch"] == 1
  assert ds.class_sizes == [12, 12, 6, 6]

  # One step: a batch of all 36 examples (shuffled), the vflip view doubles every class.
  x = jnp.asarray(ds.train_x)
  views = jnp.concatenate([x, x[:, ::-1]])
  out, _ = trainer.model.apply(variables, views, train=True, mutable=["batch_stats"])
  labels = jnp.concatenate([ds.train_y, ds.train_y])
  expected = float(losses.supcon_loss(out["embedding"], labels, temperature=0.1))
  assert record["train_loss"] == pytest.approx(expected, rel=1e-4)

  floor = of_floor([24, 24, 12, 12], 0.1)
  assert record["optimal_loss"] == pytest.approx(floor, rel=1e-9)
  # Theorem 2: with the final ReLU the embeddings are non-negative and the loss is >= floor.
  assert record["train_loss"] >= record["optimal_loss"]
  assert record["of_unique_epoch"] and record["of_unique_so_far"]   # one full batch
  assert record["lr"] == pytest.approx(0.1)
  np.testing.assert_allclose(np.linalg.norm(npz["train_embeddings"], axis=1), 1.0, atol=1e-5)
  assert str(npz["output"]) == "embedding"
  # run.json: the record's facts against what the run did (its embeddings, its data).
  run = runfiles.read_run(tmp_path)
  assert run["kind"] == "train" and run["class_sizes"] == [12, 12, 6, 6]
  assert run["model"]["embedding_dim"] == npz["train_embeddings"].shape[1]
  assert run["model"]["relu_before_embedding"] and (npz["train_embeddings"] >= 0).all()
  assert run["loss"] == {"name": "scl", "temperature": 0.1}
  # Rewritten at the end of the run with the epoch it reached.
  assert run["epochs"] == {"unit": "epochs", "planned": 1, "reached": 1}
  assert run["batching"]["batch_size"] == config.batch_size


def test_mlp_ce_step_measures_the_classifier_input(tmp_path):
  config = gaussian_config(loss="ce", **{"data.views": "augment"})
  trainer = train.setup_run(config, str(tmp_path))
  train.run(trainer)
  (record,), npz = check_run_files(str(tmp_path), trainer, 1)
  assert record["optimal_loss"] is None
  # CE on 4 classes starts near log(4).
  assert abs(record["train_loss"] - math.log(4)) < 1.0
  assert str(npz["output"]) == "features"
  assert not np.allclose(np.linalg.norm(npz["train_embeddings"], axis=1), 1.0, atol=1e-3)


def test_step_compiles_once_and_epochs_follow_the_schedule(tmp_path):
  # 36 = 4 x 9: no example is dropped, so binding certifies every epoch (a dropped example
  # would be an isolated vertex of its class graph).
  config = gaussian_config(batch_size=9, num_epochs=3, binding=1, batching="shuffle",
                           log_epochs=(1, 2))
  config.data.views = "augment"
  trainer = train.setup_run(config, str(tmp_path))
  step = train.compile_train_step(trainer)
  train.run(trainer, step)
  assert step._cache_size() == 1   # pylint: disable=protected-access
  lines = read_metrics(str(tmp_path))
  assert [r["epoch"] for r in lines] == [1, 2, 3]
  assert [r["step"] for r in lines] == [4, 8, 12]
  for r in lines:   # binding makes every epoch's batches certify the OF (docs/theory.md#batch-binding)
    assert r["of_unique_epoch"] and r["of_unique_so_far"]
    assert r["train_loss"] >= r["optimal_loss"]
  # A changed config in the same workdir is refused, with the differing field named.
  config.lr = 0.05
  with pytest.raises(train.ConfigError, match="lr"):
    train.train_and_evaluate(config, str(tmp_path))


def _mock_cifar_config(model_name, width, data_dir):
  config = cifar10_resnet18.get_config()
  config.model.name, config.model.width = model_name, width
  config.data.data_dir, config.data.download = data_dir, True
  config.data.imbalance = "none"
  config.batch_size, config.num_epochs, config.checkpoint_every_epochs = 30, 1, 1
  config.eval_batch_size = 16
  return config


@pytest.mark.parametrize("model_name,width", [("resnet18", 0.125), ("densenet40", 0.25)])
def test_convnet_step_on_mock_cifar10(tmp_path, model_name, width):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = _mock_cifar_config(model_name, width, str(tmp_path / "tfds"))
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=30):
    trainer = train.setup_run(config, workdir)
    train.run(trainer)
  assert trainer.dataset.train_x.shape == (30, 32, 32, 3)
  assert trainer.embedding_dim == models.embedding_dim(config.model, 10)
  (record,), _ = check_run_files(workdir, trainer, 1)
  counts = np.bincount(trainer.dataset.train_y, minlength=10)
  assert record["optimal_loss"] == pytest.approx(of_floor(2 * counts[counts > 0], 0.1, 10 / 7),
                                                 rel=1e-9)
  assert record["train_loss"] >= record["optimal_loss"]


def test_missing_tfds_dataset_is_reported_before_any_work(tmp_path):
  config = cifar10_resnet18.get_config()
  config.data.data_dir = str(tmp_path / "nothing_here")
  with pytest.raises(data.MissingDatasetError, match="tfds build cifar10"):
    train.setup_run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")
