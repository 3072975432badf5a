"""Data sets of the training runs: loading, imbalance and the two views.

Public interface (used by deepnet/train.py)::

  load_dataset(data_config, *, seed=1) -> Dataset
  make_views(x, key, mode, kind, *, crop_pad=None, hflip=False, max_shift=2,
             noise_std=0.1) -> jax.Array
  MissingDatasetError(Exception)

``make_views`` is pure jnp and jittable: ``mode``, ``kind`` and the keyword options are
Python values (close over them or mark them static, e.g.
``jax.jit(make_views, static_argnames=("mode", "kind", "crop_pad", "hflip", "max_shift",
"noise_std"))``). The per-data-set augmentation choice lives in ``Dataset.view_options``;
call ``make_views(x, key, mode, ds.kind, **ds.view_options)`` (or ``ds.make_views(x, key,
mode)``, the same thing).

Data sets (``data_config.name``):

- TFDS (``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist``), read from
  ``data_config.data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``; downloaded
  only with ``data_config.download=True``. ``mnist`` and ``fashion_mnist`` can also come from
  their original IDX files (``deepnet.idx``): ``data_config.source`` is ``"auto"`` (TFDS when
  prepared, else the IDX files in ``data_dir`` or Debian's ``/usr/share/datasets/<name>``),
  ``"tfds"`` or ``"idx"``; both sources give the same uint8 arrays, so the same normalised
  arrays. A data set that is not there raises ``MissingDatasetError`` within seconds (file
  checks before TFDS is even imported), with both ways to get it.
  TensorFlow Datasets is the optional ``tfds`` extra (``pip install 'scl-geometry[tfds]'``);
  without it these names raise ``MissingDatasetError`` naming the extra. TensorFlow is kept
  off the GPUs before it reads anything.
  Normalisation (docs/theory.md#data-protocol): pixels / 255, then CIFAR-10 mean (0.4914, 0.4822, 0.4465) and
  std (0.2023, 0.1994, 0.2010); CIFAR-100 its usual statistics, mean (0.5071, 0.4865, 0.4409)
  and std (0.2673, 0.2564, 0.2762); MNIST 0.1307 / 0.3081 at 28x28; Fashion-MNIST zero-padded
  to 32x32 (black border, as torchvision's Pad on the image) and then 0.5 / 0.5.
- ``digits``: scikit-learn's ``load_digits`` (real 8x8 handwritten digits, 16 grey levels,
  shipped in the wheel): scaled to [0, 1], then standardised with the train split's mean and
  std (one scalar, as for MNIST). Fixed split, independent of every run seed: 54 images per
  class (540 = 30 %) drawn with ``default_rng(0)`` form the balanced test set; the rest
  (120-129 per class, 1257 in all) is the train split. Balanced digits runs need
  ``n_max <= 120``.
- ``mnist1d``: the ``mnist1d`` package's ``make_dataset(get_dataset_args())`` (5000 signals of
  length 40, 500 per class, generated locally with the package's seed 42; the download path
  of the package is never touched; the global NumPy/``random`` states it seeds are restored).
  The package's own 80/20 split is not class-balanced, so the 5000 signals are re-split with
  ``default_rng(0)`` into 400 train and 100 test signals per class.
- ``gaussian``: a seeded synthetic mixture (generation seed 0, fixed): ``num_classes`` classes
  in ``dim`` dimensions, class means 3 u_c with u_c uniform random unit directions, isotropic
  noise of std 1; ``n_max`` train and ``n_test_per_class`` test points per class.

Imbalance (docs/theory.md#data-protocol) is applied to the train split only:
``geometry.imbalance.class_sizes(K, imbalance, ratio, n_max, rho)`` gives the per-class counts
(for ``imbalance="none"`` every class keeps min(n_max, available)), and
``geometry.imbalance.subsample_indices(labels, sizes, seed=subsample_seed)`` picks them, sorted
by class. The test split stays full.

Views (``make_views``): rows [0, B) are view 1 (the batch itself) and rows [B, 2B) view 2,
whose row B + i comes from row i (the caller repeats the labels with concatenate([y, y])).

- ``"single"``: x (one view).
- ``"vflip"``: the paper's noAugment second view, a deterministic flip of the whole batch:
  images along H (vertical flip), vectors along the feature axis.
- ``"noise"``: x + N(0, noise_std^2) per entry (images and vectors alike), on the normalised
  input. On 8x8 digits a 1-pixel shift moves a stroke by an eighth of the image and makes the
  two views of one digit far apart; small noise keeps the views close while still making them
  distinct (docs/results.md measures the effect).
- ``"augment"``: images get a per-sample random crop of the zero-padded image (offsets uniform
  in [0, 2 crop_pad] per axis, the padding value 0 being the data set's mean after
  normalisation) and, with ``hflip=True``, a per-sample horizontal flip with probability 1/2.
  Per-sample (not batch-shared as in the paper's code, docs/theory.md#released-code-defects). ``crop_pad=None``
  means 4 px for images of 28 px or more and round(side / 8) (>= 1) below, i.e. 1 px for
  8x8 digits. Per data set (``Dataset.view_options``): cifar10, cifar100 and fashion_mnist
  crop + flip (a mirrored shirt is still a shirt); digits and mnist shift only (the crop is a
  random translation), since a mirrored digit can change class (2/5, 3/E-like strokes).
  Vectors get a per-sample random circular shift in [-max_shift, max_shift] (2) plus Gaussian
  noise of std ``noise_std`` (0.1, i.e. a tenth of the per-feature scale of the standardised
  mnist1d / gaussian inputs).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import random
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from deepnet import idx as idx_lib
from geometry import imbalance as imbalance_lib

TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist")
SOURCES = ("auto", "tfds", "idx")
EMBEDDED_DATASETS = ("digits", "mnist1d", "gaussian")
DATASETS = TFDS_DATASETS + EMBEDDED_DATASETS
VIEW_MODES = ("augment", "vflip", "noise", "single")
# Config fields of ``data`` that set make_views options (None: the data set's default).
VIEW_OPTION_FIELDS = ("crop_pad", "hflip", "max_shift", "noise_std")
KINDS = ("image", "vector")

# (mean, std) per channel, applied after scaling pixels to [0, 1] (docs/theory.md#data-protocol).
_NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.5,), (0.5,)),
}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion_mnist": 10,
                "digits": 10, "mnist1d": 10}
# Augmentation per data set; see the module docstring for the reasons.
_VIEW_OPTIONS = {
    "cifar10": {"hflip": True}, "cifar100": {"hflip": True}, "fashion_mnist": {"hflip": True},
    "mnist": {"hflip": False}, "digits": {"hflip": False},
    "mnist1d": {}, "gaussian": {},
}
DIGITS_TEST_PER_CLASS = 54
MNIST1D_TEST_PER_CLASS = 100
_SPLIT_SEED = 0          # fixed split seed of the embedded data sets, independent of run seeds
_GAUSSIAN_SEED = 0
_TFDS_CHUNK = 10_000
_GAUSSIAN_MEAN_NORM = 3.0
_GAUSSIAN_NOISE = 1.0


class MissingDatasetError(Exception):
  """A data set is neither prepared for TFDS (with download off) nor, for mnist and
  fashion_mnist, present as IDX files."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A loaded data set; the train split is subsampled and sorted by class.

  Attributes:
    name: the data set's name (``data.name``).
    kind: "image" (train_x [N, H, W, C]) or "vector" (train_x [N, D]).
    train_x: float32, normalised.
    train_y: int32 [N], sorted by class.
    test_x, test_y: the full test split.
    num_classes: K.
    class_sizes: per-class train counts, list of K ints.
    majority: the majority classes (geometry.imbalance.majority_classes).
    view_options: keyword options of ``make_views`` for this data set.
  """
  name: str
  kind: str
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray
  num_classes: int
  class_sizes: list
  majority: list
  view_options: dict = dataclasses.field(default_factory=dict)

  def make_views(self, x, key, mode: str):
    """``make_views(x, key, mode, self.kind, **self.view_options)``."""
    return make_views(x, key, mode, self.kind, **self.view_options)


def _get(config, name: str, default: Any = None) -> Any:
  """Reads a field from a ConfigDict, a dict or any object with attributes."""
  if isinstance(config, dict):
    value = config.get(name, default)
  else:
    try:
      value = getattr(config, name)
    except (AttributeError, KeyError):
      value = default
  return default if value is None else value


# ----------------------------------------------------------------------------------------------
# TFDS data sets


def resolve_data_dir(data_dir: str | None) -> str:
  """``data_dir``, else ``$TFDS_DATA_DIR``, else TFDS's default ``~/tensorflow_datasets``."""
  data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return os.path.abspath(os.path.expanduser(data_dir))


def _prepare_hint(name: str, data_dir: str) -> str:
  return f"data set {name!r} is not prepared in {data_dir}: {_tfds_how(name, data_dir)}"


def _tfds_how(name: str, data_dir: str) -> str:
  return (f"on a machine with internet pass --config.data.download=True (needs the package "
          f"importlib_resources, which tensorflow-datasets 4.9.x imports but does not install), "
          f"or run `tfds build {name} --data_dir {data_dir}` (the tfds command of 4.9.x also "
          f"needs apache-beam: `pip install importlib_resources apache-beam`), then copy "
          f"{data_dir} here and pass --config.data.data_dir={data_dir} or set TFDS_DATA_DIR")


def _prepared_versions(name: str, data_dir: str) -> list[str]:
  """Version folders DIR/NAME/X.Y.Z holding a dataset_info.json (no TFDS import needed)."""
  infos = glob.glob(os.path.join(data_dir, name, "*", "dataset_info.json"))
  return sorted((os.path.basename(os.path.dirname(p)) for p in infos),
                key=lambda v: tuple(int(t) if t.isdigit() else -1 for t in v.split(".")))


def _missing_tfds_error(name: str) -> MissingDatasetError:
  return MissingDatasetError(
      f"data set {name!r} is read with TensorFlow Datasets, which is not installed: "
      "pip install 'scl-geometry[tfds]' (make install has it), or use a data set that needs "
      "no TensorFlow (digits, mnist1d, gaussian)")


def _require_tfds(name: str) -> None:
  """MissingDatasetError naming the ``tfds`` extra when TFDS or TensorFlow is not installed
  (checked without importing either)."""
  try:
    found = all(importlib.util.find_spec(m) is not None
                for m in ("tensorflow_datasets", "tensorflow"))
  except (ImportError, ValueError):
    found = False
  if not found:
    raise _missing_tfds_error(name)


def _import_tfds(name: str):
  """``tensorflow_datasets``, with TensorFlow kept off the GPUs: it only reads files here, and
  the GPUs' memory belongs to JAX (as in the Flax examples)."""
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise _missing_tfds_error(name) from e
  try:
    tf.config.experimental.set_visible_devices([], "GPU")
  except RuntimeError:  # TensorFlow's devices were set up earlier in this process
    pass
  return tfds


def _load_tfds(name: str, data_dir: str, download: bool):
  """Whole train and test splits as uint8 NHWC arrays and int labels."""
  _require_tfds(name)
  versions = _prepared_versions(name, data_dir)
  if not download and not versions:
    # Fail before importing TFDS/TensorFlow, so a missing data set costs well under a second.
    raise MissingDatasetError(_prepare_hint(name, data_dir))
  try:
    return _read_tfds(name, data_dir, download, versions)
  except MissingDatasetError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # A folder cut short by a kill or a full disk, or edited by hand: TFDS and tf.data raise
    # many types for it; all mean "prepare it again".
    text = " ".join(str(e).split())[:200] or type(e).__name__
    if download and not versions:
      raise MissingDatasetError(
          f"downloading data set {name!r} into {data_dir} failed ({type(e).__name__}: {text})"
      ) from None
    raise MissingDatasetError(
        f"data set {name!r} in {data_dir} cannot be read ({type(e).__name__}: {text}); remove "
        f"{os.path.join(data_dir, name)} and prepare it again") from None


def _read_tfds(name: str, data_dir: str, download: bool, versions: list[str]):
  tfds = _import_tfds(name)
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    if download:
      try:
        builder.download_and_prepare()
      except ModuleNotFoundError as e:
        # tensorflow-datasets 4.9.10 imports importlib_resources to build a data set but
        # declares it for Python < 3.9 only.
        raise MissingDatasetError(
            f"data.download=True needs the package {e.name}, which tensorflow-datasets "
            f"{tfds.__version__} imports to download {name!r} but does not install: run `pip "
            f"install {e.name}` in this environment and start again") from None
    elif versions and versions[-1] != str(builder.version):
      # Prepared with another version of the builder than this TFDS's default.
      builder = tfds.builder(f"{name}:{versions[-1]}", data_dir=data_dir)
      if not builder.is_prepared():
        raise MissingDatasetError(_prepare_hint(name, data_dir))
    else:
      raise MissingDatasetError(_prepare_hint(name, data_dir))
  splits = {}
  for split in ("train", "test"):
    # Chunked reads instead of batch_size=-1, which asks tf.data for a batch of
    # sys.maxsize rows whenever the split sizes are unknown (e.g. under tfds.testing.mock_data)
    # and then aborts the process.
    chunks = list(tfds.as_numpy(builder.as_dataset(split=split).batch(_TFDS_CHUNK)))
    splits[split] = (np.concatenate([c["image"] for c in chunks]),
                     np.concatenate([c["label"] for c in chunks]))
  return splits["train"], splits["test"]


def _load_raw_images(name: str, data_config):
  """uint8 images and labels of both splits from the source ``data_config.source`` selects.

  "tfds": the TFDS builder; "idx" (mnist, fashion_mnist): the original IDX files
  (``deepnet.idx``); "auto": TFDS when prepared (or ``download=True``), else the IDX files.
  """
  source = str(_get(data_config, "source", "auto"))
  if source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
  if source == "idx" and name not in idx_lib.IDX_DATASETS:
    raise ValueError(f"data.source='idx' exists for {idx_lib.IDX_DATASETS}, not {name!r}: use "
                     "data.source='tfds'")
  raw_dir = _get(data_config, "data_dir", None)
  data_dir = resolve_data_dir(raw_dir)
  download = bool(_get(data_config, "download", False))
  if source == "tfds" or name not in idx_lib.IDX_DATASETS:
    return _load_tfds(name, data_dir, download)
  if source == "auto" and (download or _prepared_versions(name, data_dir)):
    return _load_tfds(name, data_dir, download)
  paths = idx_lib.find_idx_files(name, raw_dir)
  if paths is None:
    searched = ", ".join(idx_lib.candidate_dirs(name, raw_dir))
    idx_way = idx_lib.how_to_get(name, raw_dir)
    if source == "idx":
      raise MissingDatasetError(f"data set {name!r}: no IDX files in {searched}; {idx_way}")
    raise MissingDatasetError(
        f"data set {name!r} is neither prepared for TFDS in {data_dir} nor found as IDX files "
        f"in {searched}: either {_tfds_how(name, data_dir)}, or {idx_way}")
  return idx_lib.load_idx_dataset(name, paths)


def _normalise_images(name: str, images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W] or [N, H, W, C] -> normalised float32 NHWC (docs/theory.md#data-protocol)."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if name == "fashion_mnist" and images.shape[1:3] == (28, 28):
    images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))  # black border to 32x32
  mean, std = (np.asarray(v, np.float32) for v in _NORMALISATION[name])
  return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Embedded data sets


def _balanced_split(labels: np.ndarray, test_per_class: int, seed: int):
  """Train and test indices with exactly `test_per_class` test examples of every class."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    test.append(idx[:test_per_class])
    train.append(idx[test_per_class:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _load_digits():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]   # [1797, 8, 8, 1] in [0, 1]
  labels = digits.target.astype(np.int32)
  train, test = _balanced_split(labels, DIGITS_TEST_PER_CLASS, _SPLIT_SEED)
  mean, std = images[train].mean(), images[train].std()
  images = (images - mean) / std
  return (images[train], labels[train]), (images[test], labels[test])


def _load_mnist1d():
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


# ----------------------------------------------------------------------------------------------
# Loading with imbalance


def _max_n_max(num_classes, imbalance, ratio, rho, available) -> int:
  """Largest n_max whose class_sizes fit in the available counts (0 if none)."""
  def fits(n):
    try:
      sizes = imbalance_lib.class_sizes(num_classes, imbalance, ratio, n, rho)
    except ValueError:
      return False
    return all(s <= a for s, a in zip(sizes, available))
  lo, hi = 0, int(max(available))           # sizes grow with n_max: bisect the largest fit
  while lo < hi:
    mid = (lo + hi + 1) // 2
    if fits(mid):
      lo = mid
    else:
      hi = mid - 1
  return lo


def train_class_sizes(available, imbalance: str, ratio: float, n_max: int,
                      rho: float) -> list[int]:
  """Per-class train counts for the recipe, checked against the available counts.

  Raises:
    ValueError: a class has fewer examples than the recipe asks; the message gives the
      largest n_max that fits.
  """
  num_classes = len(available)
  if imbalance == "none":
    if n_max < 1:
      raise ValueError(f"data.n_max must be >= 1, got {n_max}")
    return [int(min(n_max, a)) for a in available]
  sizes = imbalance_lib.class_sizes(num_classes, imbalance, ratio, n_max, rho)
  short = [c for c, (s, a) in enumerate(zip(sizes, available)) if s > a]
  if short:
    c = short[0]
    limit = _max_n_max(num_classes, imbalance, ratio, rho, available)
    raise ValueError(
        f"class {c} has only {available[c]} training examples but the {imbalance} recipe with "
        f"n_max={n_max}, ratio={ratio} asks for {sizes[c]}: use data.n_max <= {limit}")
  return sizes


def load_dataset(data_config, *, seed: int = 1) -> Dataset:
  """Loads ``data_config.name`` with the imbalance recipe applied to the train split.

  Args:
    data_config: the ``data`` ConfigDict (name, data_dir, download, imbalance, ratio, rho,
      n_max, subsample_seed; gaussian: num_classes, dim, n_test_per_class). A dict works too.
    seed: the subsampling seed used when ``data_config`` has no ``subsample_seed``.

  Returns:
    A Dataset whose train split is sorted by class (docs/theory.md#data-protocol).

  Raises:
    MissingDatasetError: a TFDS data set is not prepared and download is off.
    ValueError: unknown name, or a recipe that asks for more examples than a class has.
  """
  name = str(_get(data_config, "name", "digits"))
  if name not in DATASETS:
    raise ValueError(f"data.name must be one of {DATASETS}, got {name!r}")
  imbalance = str(_get(data_config, "imbalance", "none"))
  if imbalance not in imbalance_lib.IMBALANCES:
    raise ValueError(f"data.imbalance must be one of {imbalance_lib.IMBALANCES}, got "
                     f"{imbalance!r}")
  ratio = float(_get(data_config, "ratio", 10.0))
  rho = float(_get(data_config, "rho", 0.5))
  n_max = int(_get(data_config, "n_max", 5000))
  subsample_seed = int(_get(data_config, "subsample_seed", seed))

  if name in TFDS_DATASETS:
    (train_x, train_y), (test_x, test_y) = _load_raw_images(name, data_config)
    train_x, test_x = _normalise_images(name, train_x), _normalise_images(name, test_x)
    num_classes, kind = _NUM_CLASSES[name], "image"
  elif name == "digits":
    (train_x, train_y), (test_x, test_y) = _load_digits()
    num_classes, kind = 10, "image"
  elif name == "mnist1d":
    (train_x, train_y), (test_x, test_y) = _load_mnist1d()
    num_classes, kind = 10, "vector"
  else:
    num_classes = int(_get(data_config, "num_classes", 4))
    (train_x, train_y), (test_x, test_y) = make_gaussian(
        num_classes, int(_get(data_config, "dim", 16)), max(n_max, 1),
        int(_get(data_config, "n_test_per_class", 50)))
    kind = "vector"

  train_y = np.asarray(train_y, np.int32)
  available = np.bincount(train_y, minlength=num_classes).tolist()
  sizes = train_class_sizes(available, imbalance, ratio, n_max, rho)
  keep = imbalance_lib.subsample_indices(train_y, sizes, seed=subsample_seed)
  return Dataset(
      name=name, kind=kind,
      train_x=np.ascontiguousarray(train_x[keep], np.float32), train_y=train_y[keep],
      test_x=np.ascontiguousarray(test_x, np.float32), test_y=np.asarray(test_y, np.int32),
      num_classes=num_classes, class_sizes=[int(s) for s in sizes],
      majority=imbalance_lib.majority_classes(num_classes, imbalance, rho),
      view_options=dict(_VIEW_OPTIONS[name]))


# ----------------------------------------------------------------------------------------------
# Views (on the device, inside the jitted step)


def default_crop_pad(side: int) -> int:
  """4 px for images of 28 px or more (the CIFAR recipe), round(side / 8) >= 1 below."""
  return 4 if side >= 28 else max(1, int(round(side / 8)))


def _random_crop(x, key, pad: int):
  """Per-sample crop of the zero-padded batch back to its size; offsets uniform in [0, 2 pad]."""
  if pad == 0:
    return x
  n, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def _random_hflip(x, key):
  """Mirrors each image along W with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def _random_roll(x, key, max_shift: int):
  """Per-sample circular shift of the feature axis by s uniform in [-max_shift, max_shift]."""
  if max_shift == 0:
    return x
  n, dim = x.shape
  shifts = jax.random.randint(key, (n, 1), -max_shift, max_shift + 1)
  # out[i, j] = x[i, (j - s_i) mod D], i.e. jnp.roll(x[i], s_i).
  source = jnp.mod(jnp.arange(dim)[None, :] - shifts, dim)
  return jnp.take_along_axis(x, source, axis=1)


def augment(x, key, kind: str, *, crop_pad: int | None = None, hflip: bool = False,
            max_shift: int = 2, noise_std: float = 0.1):
  """One random view of the batch (see the module docstring); row i comes from row i."""
  crop_key, flip_key = jax.random.split(key)
  if kind == "image":
    if x.ndim != 4:
      raise ValueError(f"image batches must be [B, H, W, C], got shape {x.shape}")
    pad = default_crop_pad(min(x.shape[1], x.shape[2])) if crop_pad is None else int(crop_pad)
    out = _random_crop(x, crop_key, pad)
    return _random_hflip(out, flip_key) if hflip else out
  if x.ndim != 2:
    raise ValueError(f"vector batches must be [B, D], got shape {x.shape}")
  out = _random_roll(x, crop_key, int(max_shift))
  if noise_std:
    out = out + noise_std * jax.random.normal(flip_key, out.shape, out.dtype)
  return out


def view_options(data_config, dataset: Dataset) -> dict:
  """``make_views`` keyword options: the data set's defaults, then every field of
  ``VIEW_OPTION_FIELDS`` that ``data_config`` sets (not None)."""
  options = dict(getattr(dataset, "view_options", {}) or {})
  for field in VIEW_OPTION_FIELDS:
    value = _get(data_config, field, None)
    if value is not None:
      options[field] = value
  if options.get("crop_pad") is not None and int(options["crop_pad"]) < 0:
    raise ValueError(f"data.crop_pad must be >= 0, got {options['crop_pad']}")
  if "max_shift" in options and int(options["max_shift"]) < 0:
    raise ValueError(f"data.max_shift must be >= 0, got {options['max_shift']}")
  if "noise_std" in options and not float(options["noise_std"]) >= 0:
    raise ValueError(f"data.noise_std must be >= 0, got {options['noise_std']}")
  return options


def make_views(x, key, mode: str, kind: str, *, crop_pad: int | None = None,
               hflip: bool = False, max_shift: int = 2, noise_std: float = 0.1):
  """The batch's views concatenated along the batch axis.

  - ``"single"``: x, [B, ...].
  - ``"vflip"``: concat([x, flip(x)]), [2B, ...]; images are flipped along H (the paper's
    deterministic vertical flip), vectors along the feature axis. ``key`` is unused.
  - ``"augment"``: concat([x, aug(x)]), [2B, ...]: per-sample random crop of the zero-padded
    image (+ per-sample horizontal flip if ``hflip``) for images; per-sample random circular
    shift in [-max_shift, max_shift] plus N(0, noise_std^2) noise for vectors.
  - ``"noise"``: concat([x, x + noise_std * eps]), eps ~ N(0, I) per entry, [2B, ...].

  Args:
    x: [B, H, W, C] images or [B, D] vectors.
    key: a jax PRNG key (the result is a deterministic function of it).
    mode, kind, crop_pad, hflip, max_shift, noise_std: Python values (static under jit).

  Returns:
    An array of x's dtype.
  """
  if mode not in VIEW_MODES:
    raise ValueError(f"views must be one of {VIEW_MODES}, got {mode!r}")
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  x = jnp.asarray(x)
  if mode == "single":
    return x
  if mode == "vflip":
    if kind == "image" and x.ndim != 4:
      raise ValueError(f"image batches must be [B, H, W, C], got shape {x.shape}")
    # Axis 1 is H for NHWC images and the feature axis for [B, D] vectors.
    second = x[:, ::-1]
  elif mode == "noise":
    second = x + float(noise_std) * jax.random.normal(key, x.shape, x.dtype)
  else:
    second = augment(x, key, kind, crop_pad=crop_pad, hflip=hflip, max_shift=max_shift,
                     noise_std=noise_std)
  return jnp.concatenate([x, second.astype(x.dtype)], axis=0)
