"""The embedded data sets: scikit-learn's digits, MNIST-1D and the seeded gaussian mixture
(``deepnet.data`` documents them). Their train / test splits are fixed, independent of every
run seed.
"""

from __future__ import annotations

import random

import numpy as np

DIGITS_TEST_PER_CLASS = 54
MNIST1D_TEST_PER_CLASS = 100
_SPLIT_SEED = 0          # fixed split seed of the embedded data sets, independent of run seeds
_GAUSSIAN_SEED = 0
_GAUSSIAN_MEAN_NORM = 3.0
_GAUSSIAN_NOISE = 1.0


def _balanced_split(labels: np.ndarray, test_per_class: int, seed: int):
  """Train and test indices with exactly `test_per_class` test examples of every class."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    test.append(idx[:test_per_class])
    train.append(idx[test_per_class:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]   # [1797, 8, 8, 1] in [0, 1]
  labels = digits.target.astype(np.int32)
  train, test = _balanced_split(labels, DIGITS_TEST_PER_CLASS, _SPLIT_SEED)
  mean, std = images[train].mean(), images[train].std()
  images = (images - mean) / std
  return (images[train], labels[train]), (images[test], labels[test])


def load_mnist1d():
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  # make_dataset seeds the global NumPy and `random` generators; leave them as they were.
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    data = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
  y = np.concatenate([data["y"], data["y_test"]]).astype(np.int32)
  train, test = _balanced_split(y, MNIST1D_TEST_PER_CLASS, _SPLIT_SEED)
  return (x[train], y[train]), (x[test], y[test])


def make_gaussian(num_classes: int, dim: int, n_train_per_class: int, n_test_per_class: int,
                  seed: int = _GAUSSIAN_SEED):
  """Gaussian mixture: x = 3 u_y + N(0, I_dim), u_c random unit vectors (one draw per seed).

  Returns ((train_x, train_y), (test_x, test_y)), both splits sorted by class.
  """
  if num_classes < 2 or dim < 1 or n_train_per_class < 1 or n_test_per_class < 1:
    raise ValueError("gaussian data needs num_classes >= 2, dim >= 1 and positive counts")
  rng = np.random.default_rng(seed)
  directions = rng.standard_normal((num_classes, dim))
  means = _GAUSSIAN_MEAN_NORM * directions / np.linalg.norm(directions, axis=1, keepdims=True)

  def sample(per_class):
    y = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    x = means[y] + _GAUSSIAN_NOISE * rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y

  return sample(n_train_per_class), sample(n_test_per_class)

