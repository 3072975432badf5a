"""The TFDS data sets (cifar10, cifar100, mnist, fashion_mnist) and their IDX fallback:
finding, reading and normalising them (``deepnet.data`` documents the sets).

A data set that is not there raises ``MissingDatasetError`` within seconds (file checks
before TFDS is even imported), with both ways to get it.
"""

from __future__ import annotations

import glob
import importlib.util
import os

import numpy as np

from deepnet import idx as idx_lib

TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist")
SOURCES = ("auto", "tfds", "idx")

# (mean, std) per channel, applied after scaling pixels to [0, 1] (docs/theory.md#data-protocol).
_NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.5,), (0.5,)),
}
_TFDS_CHUNK = 10_000


class MissingDatasetError(Exception):
  """A data set is neither prepared for TFDS (with download off) nor, for mnist and
  fashion_mnist, present as IDX files."""


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


def load_raw_images(name: str, *, source: str, data_dir: str | None, download: bool):
  """(train, test, data_source): uint8 images and labels of both splits from the source
  ``source`` selects, and what was read (run.json's ``data_source``).

  "tfds": the TFDS builder; "idx" (mnist, fashion_mnist): the original IDX files
  (``deepnet.idx``); "auto": TFDS when prepared (or ``download=True``), else the IDX files.
  IDX files come from ``data_dir`` when it is given and from nowhere else: a folder that lacks
  one of the four files raises MissingDatasetError naming those it lacks.
  ``data_source`` is ``{"kind": "tfds", "folder": ...}`` or ``{"kind": "idx", "files":
  [{"path", "bytes", "sha256"}, ...]}``.
  """
  source = str(source)
  if source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
  if source == "idx" and name not in idx_lib.IDX_DATASETS:
    raise ValueError(f"data.source='idx' exists for {idx_lib.IDX_DATASETS}, not {name!r}: use "
                     "data.source='tfds'")
  raw_dir = data_dir
  data_dir = resolve_data_dir(raw_dir)
  download = bool(download)
  tfds_source = {"kind": "tfds", "folder": os.path.join(data_dir, name)}
  if source == "tfds" or name not in idx_lib.IDX_DATASETS:
    return (*_load_tfds(name, data_dir, download), tfds_source)
  if source == "auto" and (download or _prepared_versions(name, data_dir)):
    return (*_load_tfds(name, data_dir, download), tfds_source)
  paths = idx_lib.find_idx_files(name, raw_dir)
  if paths is None:
    idx_way = idx_lib.how_to_get(name, raw_dir)
    tfds_way = "" if source == "idx" else f"either {_tfds_how(name, data_dir)}, or "
    if raw_dir:
      folder, lacking = idx_lib.missing_files(name, raw_dir)
      raise MissingDatasetError(
          f"data set {name!r}: data.data_dir {folder} lacks {', '.join(lacking)} (plain or "
          f".gz); the given folder is used alone, never replaced by another copy: {tfds_way}"
          f"{idx_way}, or leave data.data_dir unset to use {idx_lib.DEBIAN_ROOT}")
    searched = ", ".join(idx_lib.candidate_dirs(name, raw_dir))
    if source == "idx":
      raise MissingDatasetError(f"data set {name!r}: no IDX files in {searched}; {idx_way}")
    raise MissingDatasetError(
        f"data set {name!r} is neither prepared for TFDS in {data_dir} nor found as IDX files "
        f"in {searched}: {tfds_way}{idx_way}")
  splits, files = idx_lib.load_idx_dataset(name, paths)
  return (*splits, {"kind": "idx", "files": files})


def normalise_images(name: str, images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W] or [N, H, W, C] -> normalised float32 NHWC (docs/theory.md#data-protocol)."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if name == "fashion_mnist" and images.shape[1:3] == (28, 28):
    images = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))  # black border to 32x32
  mean, std = (np.asarray(v, np.float32) for v in _NORMALISATION[name])
  return ((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
