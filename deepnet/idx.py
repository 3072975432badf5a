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
Debian's location ``/usr/share/datasets/<name with a dash>`` (package
``dataset-fashion-mnist``). ``load_idx_dataset`` returns the same uint8 arrays as the TFDS
builders (``[N, 28, 28, 1]`` images, int64 labels), so both sources normalise identically.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

# IDX element-type byte -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"

IDX_DATASETS = ("mnist", "fashion_mnist")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_ROOT = "/usr/share/datasets"
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}
# Where the original files can be downloaded on a machine with internet.
DOWNLOAD_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


class IDXFormatError(ValueError):
  """A file that is not a well-formed IDX file."""


def _open(path: str):
  with open(path, "rb") as f:
    magic = f.read(2)
  return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
  """The array stored in the IDX file ``path`` (plain or gzip), in native byte order.

  Raises:
    IDXFormatError: a bad magic number, an unknown element type, or a size that does not
      match the header (the message names the file).
  """
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise IDXFormatError(f"cannot read IDX file {path}: {e}") from e
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
  """Directories searched for the IDX files of ``name``, in order."""
  dirs = []
  if data_dir:
    base = os.path.abspath(os.path.expanduser(data_dir))
    dirs += [base, os.path.join(base, name), os.path.join(base, name.replace("_", "-"))]
  dirs.append(os.path.join(DEBIAN_ROOT, name.replace("_", "-")))
  return dirs


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


def how_to_get(name: str, data_dir: str | None) -> str:
  """How to obtain the IDX files of ``name`` (the second half of a missing-data message)."""
  where = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else "DIR"
  files = ", ".join(f"{stem}.gz" for stems in IDX_FILES.values() for stem in stems)
  package = DEBIAN_PACKAGES.get(name)
  debian = (f"`sudo apt-get install {package}` (Debian/Ubuntu; or `make data`), or " if package
            else "")
  return (f"{debian}download {files} from {DOWNLOAD_URLS[name]} into {where} and pass "
          f"--config.data.data_dir={where}")


def load_idx_dataset(name: str, paths: dict):
  """((train_x, train_y), (test_x, test_y)) from the paths of ``find_idx_files``: uint8
  images [N, H, W, 1] and int64 labels, as TFDS gives them."""
  splits = []
  for split in ("train", "test"):
    image_path, label_path = paths[split]
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise IDXFormatError(f"{name} {split}: expected [N, H, W] images and [N] labels, got "
                           f"{images.shape} ({image_path}) and {labels.shape} ({label_path})")
    splits.append((images.astype(np.uint8)[..., None], labels.astype(np.int64)))
  return tuple(splits)
