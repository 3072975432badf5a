"""Data sets of the training runs: loading, imbalance and the two views.

Public interface (used by deepnet/run_setup.py)::

  load_dataset(data_config, *, seed=1) -> Dataset
  make_views(x, key, mode, kind, *, crop_pad=None, hflip=False, max_shift=2,
             noise_std=0.1) -> jax.Array
  MissingDatasetError(Exception)

The code lives by job: this module (the Dataset, the imbalance recipe, ``load_dataset``),
``deepnet/data_tfds.py`` (TFDS and IDX sets, normalisation), ``deepnet/data_embedded.py``
(digits, mnist1d, gaussian) and ``deepnet/views.py`` (views and augmentation); the names
callers use (``MissingDatasetError``, ``make_views``, ``view_options``) are importable from
here.

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

import numpy as np

from deepnet import config as config_lib
from deepnet import data_embedded
from deepnet import data_tfds
from deepnet import views as views_lib
from geometry import imbalance as imbalance_lib

# The public names of the split modules that callers use, importable from here.
MissingDatasetError = data_tfds.MissingDatasetError
make_views = views_lib.make_views
view_options = views_lib.view_options

EMBEDDED_DATASETS = ("digits", "mnist1d", "gaussian")
DATASETS = data_tfds.TFDS_DATASETS + EMBEDDED_DATASETS

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "mnist": 10, "fashion_mnist": 10,
                "digits": 10, "mnist1d": 10}
# Augmentation per data set; see the module docstring for the reasons.
_VIEW_OPTIONS = {
    "cifar10": {"hflip": True}, "cifar100": {"hflip": True}, "fashion_mnist": {"hflip": True},
    "mnist": {"hflip": False}, "digits": {"hflip": False},
    "mnist1d": {}, "gaussian": {},
}

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
    data_source: what was read (run.json's ``data_source``): ``{"kind": "idx", "files":
      [{"path", "bytes", "sha256"}, ...]}``, ``{"kind": "tfds", "folder": ...}``, or
      ``{"kind": "generated"}`` for the sets made in this process (digits, mnist1d,
      gaussian).
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
  data_source: dict = dataclasses.field(default_factory=lambda: {"kind": "generated"})

  def make_views(self, x, key, mode: str):
    """``make_views(x, key, mode, self.kind, **self.view_options)``."""
    return make_views(x, key, mode, self.kind, **self.view_options)


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
    data_config: the ``data`` ConfigDict (name, data_dir, download, source, imbalance, ratio,
      rho, n_max, subsample_seed; for gaussian also num_classes, dim, n_test_per_class). A
      dict works too. Every field read is required (the defaults live in
      experiments/configs/cifar10_resnet18.py); ``data_dir`` may be None ($TFDS_DATA_DIR,
      then ~/tensorflow_datasets).
    seed: the subsampling seed when ``data_config.subsample_seed`` is None.

  Returns:
    A Dataset whose train split is sorted by class (docs/theory.md#data-protocol).

  Raises:
    ConfigError: a field of ``data`` is missing (it names the field).
    MissingDatasetError: a TFDS data set is not prepared and download is off.
    ValueError: unknown name, or a recipe that asks for more examples than a class has.
  """
  def get(name):
    return config_lib.read_field(data_config, f"data.{name}")

  name = str(get("name"))
  if name not in DATASETS:
    raise ValueError(f"data.name must be one of {DATASETS}, got {name!r}")
  imbalance = str(get("imbalance"))
  if imbalance not in imbalance_lib.IMBALANCES:
    raise ValueError(f"data.imbalance must be one of {imbalance_lib.IMBALANCES}, got "
                     f"{imbalance!r}")
  ratio, rho, n_max = float(get("ratio")), float(get("rho")), int(get("n_max"))
  subsample_seed = get("subsample_seed")
  subsample_seed = int(seed if subsample_seed is None else subsample_seed)
  # Every field is read whatever the data set, so that a config lacking one fails alike.
  source, data_dir, download = get("source"), get("data_dir"), bool(get("download"))
  gaussian = dict(num_classes=int(get("num_classes")), dim=int(get("dim")),
                  n_test_per_class=int(get("n_test_per_class")))

  if name in data_tfds.TFDS_DATASETS:
    (train_x, train_y), (test_x, test_y), data_source = data_tfds.load_raw_images(
        name, source=source, data_dir=data_dir, download=download)
    train_x = data_tfds.normalise_images(name, train_x)
    test_x = data_tfds.normalise_images(name, test_x)
    num_classes, kind = _NUM_CLASSES[name], "image"
  elif name == "digits":
    (train_x, train_y), (test_x, test_y) = data_embedded.load_digits()
    num_classes, kind = 10, "image"
  elif name == "mnist1d":
    (train_x, train_y), (test_x, test_y) = data_embedded.load_mnist1d()
    num_classes, kind = 10, "vector"
  else:
    num_classes = gaussian["num_classes"]
    (train_x, train_y), (test_x, test_y) = data_embedded.make_gaussian(
        num_classes, gaussian["dim"], max(n_max, 1), gaussian["n_test_per_class"])
    kind = "vector"

  for split, labels in (("train", train_y), ("test", test_y)):
    check_labels(name, split, labels, num_classes)
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
      view_options=dict(_VIEW_OPTIONS[name]),
      data_source=data_source if name in data_tfds.TFDS_DATASETS else {"kind": "generated"})


def check_labels(name: str, split: str, labels, num_classes: int) -> None:
  """Raises ValueError unless every label is an integer in [0, K): a label outside would be
  trained on (train split) or crash the first evaluation (test split)."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"data set {name!r} {split}: labels must be a 1-D integer array, got "
                     f"{list(labels.shape)} {labels.dtype}")
  bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if len(bad):
    raise ValueError(f"data set {name!r} {split}: label {int(labels[bad[0]])} at row "
                     f"{int(bad[0])} ({len(bad)} row(s) in all) is outside [0, {num_classes}); "
                     "prepare the data set again")
