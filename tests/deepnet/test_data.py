"""Tests of deepnet.data: embedded data sets, imbalance recipes, views, the TFDS path."""

import os
import time

import jax
import numpy as np
import pytest

from deepnet import config as config_lib
from deepnet import data
from deepnet_train_helper import data_config

jax.config.update("jax_disable_most_optimizations", True)

# docs/theory.md#ref-class-counts (n_max = 5000, K = 10).
EXP_R10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
EXP_R100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
STEP_R10 = [5000] * 5 + [500] * 5
STEP_R100 = [5000] * 5 + [50] * 5
# scikit-learn's digits: images per class (a property of the shipped data set).
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.mark.parametrize("imbalance,ratio,expected", [
    ("exp", 10, EXP_R10), ("exp", 100, EXP_R100), ("step", 10, STEP_R10),
    ("step", 100, STEP_R100), ("none", 10, [5000] * 10)])
def test_gaussian_imbalance_counts_match_paper(imbalance, ratio, expected):
  ds = data.load_dataset(data_config(name="gaussian", num_classes=10, dim=3, n_max=5000,
                                     imbalance=imbalance, ratio=ratio, n_test_per_class=7))
  assert ds.class_sizes == expected
  assert np.bincount(ds.train_y, minlength=10).tolist() == expected
  assert (np.diff(ds.train_y) >= 0).all()                     # sorted by class
  assert ds.train_x.shape == (sum(expected), 3) and ds.train_x.dtype == np.float32
  assert np.bincount(ds.test_y).tolist() == [7] * 10
  assert ds.kind == "vector" and ds.num_classes == 10
  expected_majority = list(range(5))                          # floor(rho K) = floor(K/2) = 5
  assert ds.majority == expected_majority


def test_gaussian_is_seeded_and_subsampling_follows_subsample_seed():
  config = data_config(name="gaussian", num_classes=3, dim=4, n_max=40, imbalance="step",
                       ratio=4)
  a = data.load_dataset(config)
  b = data.load_dataset(config)
  c = data.load_dataset(dict(config, subsample_seed=2))
  np.testing.assert_array_equal(a.train_x, b.train_x)
  np.testing.assert_array_equal(a.test_x, c.test_x)           # generation does not move
  assert a.class_sizes == c.class_sizes == [40, 10, 10]
  assert not np.array_equal(a.train_x, c.train_x)             # a different subsample
  # Class means are 3 apart from the origin: the class-0 sample mean has norm about 3.
  assert 2.5 < np.linalg.norm(a.train_x[a.train_y == 0].mean(0)) < 3.5


def test_digits_split_normalisation_and_limits():
  ds = data.load_dataset(data_config(name="digits", imbalance="none", n_max=5000))
  test_per_class = 54
  expected_train = [n - test_per_class for n in DIGITS_COUNTS]
  assert ds.kind == "image" and ds.num_classes == 10
  assert ds.train_x.shape == (sum(expected_train), 8, 8, 1)
  assert ds.test_x.shape == (540, 8, 8, 1)
  assert np.bincount(ds.test_y).tolist() == [test_per_class] * 10
  assert ds.class_sizes == expected_train
  assert (np.diff(ds.train_y) >= 0).all()
  # Standardised with the train split's statistics.
  assert abs(ds.train_x.mean()) < 1e-4 and abs(ds.train_x.std() - 1) < 1e-4
  # Still 17 grey levels (0..16) after the affine map.
  levels = np.unique(np.round(np.concatenate([ds.train_x.ravel(), ds.test_x.ravel()]), 4))
  assert len(levels) == 17
  np.testing.assert_allclose(np.diff(levels), np.diff(levels)[0], rtol=1e-3)
  # The split does not depend on the run: a second load gives the same test set.
  np.testing.assert_array_equal(
      data.load_dataset(data_config(name="digits", imbalance="none")).test_x, ds.test_x)
  # Balanced subsample: n_max 100 per class.
  small = data.load_dataset(data_config(name="digits", imbalance="none", n_max=100))
  assert np.bincount(small.train_y).tolist() == [100] * 10
  # Step R = 10 needs n_max <= the smallest majority-class count, 177 - 54 = 123.
  limit = min(expected_train[:5])
  ok = data.load_dataset(data_config(name="digits", imbalance="step", ratio=10, n_max=limit))
  assert ok.class_sizes == [limit] * 5 + [limit // 10] * 5
  with pytest.raises(ValueError, match=f"n_max <= {limit}"):
    data.load_dataset(data_config(name="digits", imbalance="step", ratio=10, n_max=limit + 1))


def test_mnist1d_is_generated_locally_balanced_and_leaves_global_rng_alone(monkeypatch):
  import requests  # pylint: disable=g-import-not-at-top

  def no_network(*args, **kwargs):
    raise AssertionError("mnist1d tried to download")

  monkeypatch.setattr(requests, "get", no_network)
  np.random.seed(123)
  before = np.random.get_state()[1].copy()
  ds = data.load_dataset(data_config(name="mnist1d", imbalance="none", n_max=5000))
  np.testing.assert_array_equal(np.random.get_state()[1], before)
  assert ds.kind == "vector"
  assert ds.train_x.shape == (4000, 40) and ds.test_x.shape == (1000, 40)
  assert ds.class_sizes == [400] * 10
  assert np.bincount(ds.test_y).tolist() == [100] * 10
  assert not os.path.exists("mnist1d_data.pkl")


def test_bad_names_are_rejected():
  with pytest.raises(ValueError, match="data.name"):
    data.load_dataset(data_config(name="imagenet"))
  with pytest.raises(ValueError, match="data.imbalance"):
    data.load_dataset(data_config(name="gaussian", imbalance="linear"))


# The fields load_dataset reads (docs/contracts.md's data table), each required for every
# data set: the embedded digits read no TFDS or gaussian field, yet a config without one of
# them is refused by name.
LOAD_FIELDS = ("name", "data_dir", "download", "source", "imbalance", "ratio", "rho", "n_max",
               "subsample_seed", "num_classes", "dim", "n_test_per_class")


@pytest.mark.parametrize("field", LOAD_FIELDS)
def test_a_missing_data_field_is_one_config_error_naming_it(field):
  config = data_config(name="digits", imbalance="none", n_max=5)
  del config[field]
  with pytest.raises(config_lib.ConfigError) as info:
    data.load_dataset(config)
  message = str(info.value)
  assert f"'data.{field}' is missing" in message and "\n" not in message


# --- views ----------------------------------------------------------------------------------


def _images(n=6, h=8, w=8, c=2, seed=0):
  return np.random.default_rng(seed).standard_normal((n, h, w, c)).astype(np.float32)


def test_view_shapes_and_vflip_pairing():
  x = _images()
  key = jax.random.key(0)
  assert data.make_views(x, key, "single", "image").shape == x.shape
  views = np.asarray(data.make_views(x, key, "vflip", "image"))
  assert views.shape == (12, 8, 8, 2)
  np.testing.assert_array_equal(views[:6], x)
  np.testing.assert_array_equal(views[6:], x[:, ::-1, :, :])      # flip along H, row by row
  twice = np.asarray(data.make_views(views[6:], key, "vflip", "image"))[6:]
  np.testing.assert_array_equal(twice, x)
  v = np.arange(12, dtype=np.float32).reshape(3, 4)
  vviews = np.asarray(data.make_views(v, key, "vflip", "vector"))
  np.testing.assert_array_equal(vviews[3:], [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]])


def test_augment_identity_settings_and_determinism():
  x = _images()
  key = jax.random.key(3)
  same = np.asarray(data.make_views(x, key, "augment", "image", crop_pad=0, hflip=False))
  np.testing.assert_array_equal(same[6:], x)
  v = _images()[:, :, 0, 0]
  same = np.asarray(data.make_views(v, key, "augment", "vector", max_shift=0, noise_std=0.0))
  np.testing.assert_array_equal(same[6:], v)
  a = np.asarray(data.make_views(x, key, "augment", "image", hflip=True))
  b = np.asarray(data.make_views(x, key, "augment", "image", hflip=True))
  c = np.asarray(data.make_views(x, jax.random.key(4), "augment", "image", hflip=True))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def _shifted(image, dy, dx):
  """image translated by (dy, dx) with zero fill (brute force)."""
  h, w = image.shape[:2]
  out = np.zeros_like(image)
  for i in range(h):
    for j in range(w):
      if 0 <= i - dy < h and 0 <= j - dx < w:
        out[i, j] = image[i - dy, j - dx]
  return out


@pytest.mark.parametrize("hflip", [False, True])
def test_augmented_row_is_a_shift_of_its_own_row(hflip):
  x = _images(n=16)
  pad = 1                                  # the default for 8x8 images
  views = np.asarray(data.make_views(x, jax.random.key(7), "augment", "image", hflip=hflip))
  assert views.shape == (32, 8, 8, 2)
  seen_flip, seen_shift = False, False
  for i in range(16):
    matches = []
    for flip in ([False, True] if hflip else [False]):
      source = x[i, :, ::-1] if flip else x[i]
      for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
          if np.array_equal(views[16 + i], _shifted(source, dy, dx)):
            matches.append((flip, dy, dx))
    assert matches, f"row {i} is not a shifted copy of its source"
    seen_flip |= any(m[0] for m in matches)
    seen_shift |= any(m[1:] != (0, 0) for m in matches)
  assert seen_shift and seen_flip == hflip


def test_vector_augment_is_a_small_roll_plus_noise():
  v = np.random.default_rng(1).standard_normal((10, 40)).astype(np.float32)
  views = np.asarray(data.make_views(v, jax.random.key(2), "augment", "vector", noise_std=0.0))
  shifts = []
  for i in range(10):
    found = [s for s in range(-2, 3) if np.array_equal(views[10 + i], np.roll(v[i], s))]
    assert found
    shifts += found
  assert any(s != 0 for s in shifts)
  noisy = np.asarray(data.make_views(v, jax.random.key(2), "augment", "vector", max_shift=0,
                                     noise_std=0.1))
  assert 0.05 < np.std(noisy[10:] - v) < 0.15


def test_make_views_under_jit_matches_eager_and_dataset_options():
  x = _images()
  key = jax.random.key(5)
  ds_options = {"hflip": True}
  jitted = jax.jit(lambda x, key: data.make_views(x, key, "augment", "image", **ds_options))
  np.testing.assert_array_equal(np.asarray(jitted(x, key)),
                                np.asarray(data.make_views(x, key, "augment", "image",
                                                           hflip=True)))
  digits = data.load_dataset(data_config(name="digits", imbalance="none", n_max=10))
  assert digits.view_options == {"hflip": False}
  out = digits.make_views(digits.train_x[:4], key, "augment")
  assert out.shape == (8, 8, 8, 1)
  with pytest.raises(ValueError, match="views"):
    data.make_views(x, key, "mixup", "image")


# --- TFDS -------------------------------------------------------------------------------------


def test_missing_tfds_dataset_fails_fast_with_build_hint(tmp_path, monkeypatch):
  start = time.perf_counter()
  with pytest.raises(data.MissingDatasetError) as error:
    data.load_dataset(data_config(name="cifar10", imbalance="none", data_dir=str(tmp_path)))
  assert time.perf_counter() - start < 5
  assert f"tfds build cifar10 --data_dir {tmp_path}" in str(error.value)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
  with pytest.raises(data.MissingDatasetError, match="tfds build mnist --data_dir .*env"):
    data.load_dataset(data_config(name="mnist", imbalance="none", data_dir=None))


def _raw_mock_split(tfds, name, split, data_dir):
  batches = list(tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir).batch(1000)))
  return (np.concatenate([b["image"] for b in batches]),
          np.concatenate([b["label"] for b in batches]))


def test_tfds_cifar10_through_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from geometry import imbalance  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=30):
    # download=True is a no-op under mock_data: it exercises the builder path.
    ds = data.load_dataset(data_config(name="cifar10", imbalance="none", data_dir=str(tmp_path),
                                       download=True))
    raw_x, raw_y = _raw_mock_split(tfds, "cifar10", "train", str(tmp_path))
  assert ds.kind == "image" and ds.num_classes == 10
  assert ds.train_x.shape == (30, 32, 32, 3) and ds.train_x.dtype == np.float32
  assert ds.test_x.shape == (30, 32, 32, 3)
  counts = np.bincount(raw_y, minlength=10).tolist()
  assert ds.class_sizes == counts
  keep = imbalance.subsample_indices(raw_y, counts, seed=1)
  mean = np.array([0.4914, 0.4822, 0.4465])
  std = np.array([0.2023, 0.1994, 0.2010])
  expected = (raw_x[keep] / 255.0 - mean) / std
  np.testing.assert_allclose(ds.train_x, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(ds.train_y, raw_y[keep])


def test_tfds_prepared_path_without_download_mnist_and_fashion(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  for name in ("mnist", "fashion_mnist"):
    # A prepared-looking folder passes the cheap check; the builder is then told it is prepared.
    os.makedirs(tmp_path / name / "3.0.1")
    (tmp_path / name / "3.0.1" / "dataset_info.json").write_text("{}")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    mnist = data.load_dataset(data_config(name="mnist", imbalance="none",
                                          data_dir=str(tmp_path)))
    raw_x, _ = _raw_mock_split(tfds, "mnist", "test", str(tmp_path))
    fashion = data.load_dataset(data_config(name="fashion_mnist", imbalance="none",
                                            data_dir=str(tmp_path)))
  assert mnist.train_x.shape == (12, 28, 28, 1)
  np.testing.assert_allclose(mnist.test_x, (raw_x / 255.0 - 0.1307) / 0.3081, rtol=1e-5,
                             atol=1e-5)
  assert fashion.train_x.shape == (12, 32, 32, 1)
  # The 2-pixel black border maps to (0 - 0.5) / 0.5 = -1.
  np.testing.assert_array_equal(fashion.train_x[:, :2], -1.0)
  np.testing.assert_array_equal(fashion.train_x[:, :, -2:], -1.0)
  assert fashion.view_options == {"hflip": True} and mnist.view_options == {"hflip": False}
