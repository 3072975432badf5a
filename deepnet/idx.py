"""The IDX file format of MNIST and Fashion-MNIST, and the data sets stored in it.

An IDX file (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header followed
by the raw array in C order:

  bytes 0-1   zero
  byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
              0x0E float64 (multi-byte types big-endian)
  byte  3     number of dimensions n
  then n      big-endian uint32 sizes, then prod(sizes) elements.

Images are ``idx3`` files ([N, 28, 28] uint8), labels ``idx1`` files ([N] uint8). The files
may be gzip-compressed (``.gz``, detected from the magic bytes, not the name).

``find_idx_files(name, data_dir)`` looks for the four files of a split pair
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each plain or ``.gz``) in ``data_dir``, ``data_dir/<name>`` and
``data_dir/<name with a dash>`` when a folder is given, else in Debian's location
``/usr/share/datasets/<name with a dash>`` (package ``dataset-fashion-mnist``): a given folder
is never replaced by another copy. ``load_idx_dataset`` returns the same uint8 arrays as the
TFDS builders (``[N, 28, 28, 1]`` images, int64 labels), so both sources normalise
identically, after checking them (28 x 28 uint8 images, uint8 labels in [0, 10)), together
with the record of the files read (path, bytes, sha256) that run.json keeps.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib

import numpy as np

# IDX element-type byte -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"

IDX_DATASETS = ("mnist", "fashion_mnist")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# Image side and number of classes of each IDX data set: what a file must hold to be used.
IDX_SHAPES = {"mnist": ((28, 28), 10), "fashion_mnist": ((28, 28), 10)}
DEBIAN_ROOT = "/usr/share/datasets"
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
# Where the original files can be downloaded on a machine with internet.
DOWNLOAD_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


class IDXFormatError(ValueError):
  """A file that is not a well-formed IDX file."""


def _read_bytes(path: str) -> bytes:
  """The file's bytes as stored (compressed or not)."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise IDXFormatError(f"cannot read IDX file {path}: {e}") from e


def _payload(path: str, stored: bytes) -> bytes:
  """The IDX bytes of a file stored as ``stored`` (gunzipped when it starts with gzip's magic)."""
  if not stored:
    raise IDXFormatError(f"{path} is empty (0 bytes): copy the file again")
  if stored[:2] != _GZIP_MAGIC:
    return stored
  try:
    return gzip.decompress(stored)
  # A damaged deflate stream raises zlib.error, a cut one EOFError, a bad header OSError.
  except (OSError, EOFError, zlib.error) as e:
    raise IDXFormatError(f"{path}: the gzip stream is damaged ({e}); copy the file "
                         "again") from None


def parse_idx(path: str, raw: bytes) -> np.ndarray:
  """The array of the IDX bytes ``raw`` (uncompressed) read from ``path``, native byte order.

  Raises:
    IDXFormatError: a bad magic number, an unknown element type, or a size that does not
      match the header (the message names the file).
  """
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise IDXFormatError(f"{path} is not an IDX file (bad magic number)")
  dtype = _IDX_DTYPES.get(raw[2])
  if dtype is None:
    raise IDXFormatError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise IDXFormatError(f"{path}: truncated IDX header")
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(raw) - header != expected:
    raise IDXFormatError(f"{path}: the header gives shape {shape} ({expected} bytes of data) "
                         f"but the file holds {len(raw) - header}")
  array = np.frombuffer(raw, dtype, offset=header).reshape(shape)
  return array.astype(dtype.newbyteorder("="))


def read_idx_file(path: str) -> tuple[np.ndarray, dict]:
  """(the array of the IDX file ``path``, plain or gzip; the record of what was read:
  ``{"path", "bytes", "sha256"}`` of the file as stored). Raises IDXFormatError (one line
  naming the file) for an empty, unreadable, badly compressed or malformed file."""
  stored = _read_bytes(path)
  record = {"path": os.path.abspath(path), "bytes": len(stored),
            "sha256": hashlib.sha256(stored).hexdigest()}
  return parse_idx(path, _payload(path, stored)), record


def read_idx(path: str) -> np.ndarray:
  """The array stored in the IDX file ``path`` (plain or gzip), in native byte order
  (``read_idx_file`` without the record)."""
  return read_idx_file(path)[0]


def write_idx(path: str, array, *, compress: bool | None = None) -> None:
  """Writes ``array`` as an IDX file (gzip when ``compress``, default: ``path`` ends in .gz)."""
  array = np.asarray(array)
  codes = {v.newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
  code = codes.get(array.dtype.newbyteorder("="))
  if code is None:
    raise ValueError(f"IDX cannot store dtype {array.dtype}")
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  payload = header + array.astype(_IDX_DTYPES[code]).tobytes()
  if compress is None:
    compress = path.endswith(".gz")
  with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
    f.write(payload)


def candidate_dirs(name: str, data_dir: str | None) -> list[str]:
  """Directories searched for the IDX files of ``name``, in order: those under ``data_dir``
  when it is given (only those: the data is the data the config names), else Debian's."""
  dirs = []
  if data_dir:
    base = os.path.abspath(os.path.expanduser(data_dir))
    return [base, os.path.join(base, name), os.path.join(base, name.replace("_", "-"))]
  return [os.path.join(DEBIAN_ROOT, name.replace("_", "-"))]


def _find(directory: str, stem: str) -> str | None:
  for candidate in (stem + ".gz", stem):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def find_idx_files(name: str, data_dir: str | None) -> dict | None:
  """``{"train": (images, labels), "test": (images, labels)}`` paths from the first directory
  of ``candidate_dirs`` that holds all four files, else None."""
  for directory in candidate_dirs(name, data_dir):
    found = {split: tuple(_find(directory, stem) for stem in stems)
             for split, stems in IDX_FILES.items()}
    if all(p is not None for pair in found.values() for p in pair):
      return found
  return None


def missing_files(name: str, data_dir: str | None) -> tuple[str, list[str]]:
  """(the searched directory holding most of the four files, the stems it lacks): what a
  refusal names when ``find_idx_files`` finds no complete set."""
  best = None
  for directory in candidate_dirs(name, data_dir):
    lacking = [stem for stems in IDX_FILES.values() for stem in stems
               if _find(directory, stem) is None]
    if best is None or len(lacking) < len(best[1]):
      best = (directory, lacking)
  return best


def how_to_get(name: str, data_dir: str | None) -> str:
  """How to obtain the IDX files of ``name`` (the second half of a missing-data message)."""
  where = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else "DIR"
  files = ", ".join(f"{stem}.gz" for stems in IDX_FILES.values() for stem in stems)
  package = DEBIAN_PACKAGES.get(name)
  debian = (f"`sudo apt-get install {package}` (Debian/Ubuntu; or `make data`), or " if package
            else "")
  return (f"{debian}download {files} from {DOWNLOAD_URLS[name]} into {where} and pass "
          f"--config.data.data_dir={where}")


def _check_split(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                 image_path: str, label_path: str) -> None:
  """Raises IDXFormatError unless the split is [N, H, W] uint8 images and [N] uint8 labels in
  [0, K), with (H, W) and K those of ``name`` (``IDX_SHAPES``)."""
  (height, width), num_classes = IDX_SHAPES[name]
  if images.ndim != 3 or images.shape[1:] != (height, width) or images.dtype != np.uint8:
    raise IDXFormatError(f"{image_path}: {name} {split} images must be [N, {height}, {width}] "
                         f"uint8, got {list(images.shape)} {images.dtype}")
  if labels.ndim != 1 or labels.dtype != np.uint8:
    raise IDXFormatError(f"{label_path}: {name} {split} labels must be [N] uint8, got "
                         f"{list(labels.shape)} {labels.dtype}")
  if len(images) != len(labels):
    raise IDXFormatError(f"{name} {split}: {len(images)} images ({image_path}) but "
                         f"{len(labels)} labels ({label_path})")
  bad = np.flatnonzero(labels >= num_classes)
  if len(bad):
    raise IDXFormatError(f"{label_path}: label {int(labels[bad[0]])} at row {int(bad[0])} "
                         f"({len(bad)} row(s) in all) is outside [0, {num_classes}) for "
                         f"{name}; copy the file again")


def load_idx_dataset(name: str, paths: dict):
  """(((train_x, train_y), (test_x, test_y)), files) from the paths of ``find_idx_files``:
  uint8 images [N, H, W, 1] and int64 labels, as TFDS gives them, checked by ``_check_split``;
  ``files`` is the ``read_idx_file`` record of each of the four files, in reading order."""
  splits, files = [], []
  for split in ("train", "test"):
    image_path, label_path = paths[split]
    (images, image_file), (labels, label_file) = (read_idx_file(image_path),
                                                  read_idx_file(label_path))
    _check_split(name, split, images, labels, image_path, label_path)
    files += [image_file, label_file]
    splits.append((images[..., None], labels.astype(np.int64)))
  return tuple(splits), files
