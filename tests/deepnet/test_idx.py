"""The IDX reader (deepnet.idx) and the IDX source of mnist / fashion_mnist in deepnet.data."""

import gzip
import os
import struct
import time

import numpy as np
import pytest

from deepnet import data
from deepnet import idx
from deepnet_train_helper import data_config

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
  """An IDX file by the format's definition: 0, 0, type, ndim, big-endian uint32 sizes, data."""
  header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
  header += b"".join(struct.pack(">I", s) for s in array.shape)
  return header + array.tobytes()


def _write(path, payload: bytes, compress: bool):
  with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
    f.write(payload)


def _write_split_files(directory, images, labels, test_images, test_labels, compress=True):
  os.makedirs(directory, exist_ok=True)
  suffix = ".gz" if compress else ""
  for stem, array, code in (("train-images-idx3-ubyte", images, 0x08),
                            ("train-labels-idx1-ubyte", labels, 0x08),
                            ("t10k-images-idx3-ubyte", test_images, 0x08),
                            ("t10k-labels-idx1-ubyte", test_labels, 0x08)):
    _write(os.path.join(directory, stem + suffix),
           _idx_bytes(np.asarray(array, np.uint8), code), compress)


@pytest.mark.parametrize("compress", [False, True])
def test_reads_hand_written_image_and_label_files(tmp_path, compress):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 3, 4), dtype=np.uint8)   # non-square: catches H/W swaps
  labels = np.array([3, 0, 9, 1, 1], np.uint8)
  _write(tmp_path / "img", _idx_bytes(images, 0x08), compress)
  _write(tmp_path / "lab", _idx_bytes(labels, 0x08), compress)
  got = idx.read_idx(str(tmp_path / "img"))
  assert got.shape == (5, 3, 4) and got.dtype == np.uint8
  np.testing.assert_array_equal(got, images)
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "lab")), labels)


def test_multi_byte_types_are_big_endian(tmp_path):
  values = np.array([[1, -2], [300, 70000]], np.int32)
  # 0x0C = int32, stored most significant byte first.
  _write(tmp_path / "i32", _idx_bytes(values.astype(">i4"), 0x0C), False)
  raw = (tmp_path / "i32").read_bytes()
  assert raw[:4] == b"\x00\x00\x0c\x02" and raw[4:12] == b"\x00\x00\x00\x02" * 2
  assert raw[12:16] == b"\x00\x00\x00\x01"                   # 1, big-endian
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "i32")), values)
  # write_idx round-trips through the same layout.
  idx.write_idx(str(tmp_path / "again.gz"), values)
  with gzip.open(tmp_path / "again.gz", "rb") as f:
    assert f.read() == raw


def test_malformed_files_are_rejected_with_their_name(tmp_path):
  good = _idx_bytes(np.zeros((2, 2, 2), np.uint8), 0x08)
  cases = {"magic": b"\x01" + good[1:], "type": good[:2] + b"\x07" + good[3:],
           "short": good[:-1], "header": good[:6]}
  for name, payload in cases.items():
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(idx.IDXFormatError, match=str(path)):
      idx.read_idx(str(path))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_source_arrays_normalisation_and_padding(tmp_path, compress):
  rng = np.random.default_rng(1)
  train = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
  train_y = rng.permutation(10).astype(np.uint8)           # one per class, out of order
  test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
  test_y = np.arange(10, dtype=np.uint8)
  _write_split_files(tmp_path / "fashion_mnist", train, train_y, test, test_y, compress)
  _write_split_files(tmp_path, train, train_y, test, test_y, compress)   # mnist: in data_dir
  common = data_config(data_dir=str(tmp_path), source="idx", imbalance="none", n_max=1)
  fashion = data.load_dataset(dict(common, name="fashion_mnist"))
  mnist = data.load_dataset(dict(common, name="mnist"))
  # The train split comes sorted by class. Fashion-MNIST: a 2-pixel black border to 32x32,
  # then (x / 255 - 0.5) / 0.5.
  order = np.argsort(train_y)
  padded = np.zeros((10, 32, 32), np.float64)
  padded[:, 2:30, 2:30] = train[order]
  np.testing.assert_allclose(fashion.train_x[..., 0], (padded / 255 - 0.5) / 0.5, atol=1e-6)
  assert fashion.test_x.shape == (10, 32, 32, 1)
  np.testing.assert_allclose(mnist.test_x[..., 0], (test / 255 - 0.1307) / 0.3081, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(mnist.train_y, np.arange(10))
  np.testing.assert_allclose(mnist.train_x[..., 0], (train[order] / 255 - 0.1307) / 0.3081,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(fashion.test_y, test_y)
  assert fashion.class_sizes == [1] * 10 and fashion.kind == "image"


def test_idx_source_equals_tfds_source_on_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  tfds_dir, idx_dir = tmp_path / "tfds", tmp_path / "idx"
  os.makedirs(tfds_dir / "fashion_mnist" / "3.0.1")
  (tfds_dir / "fashion_mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    raw = {}
    for split in ("train", "test"):
      rows = list(tfds.as_numpy(tfds.load("fashion_mnist", split=split,
                                          data_dir=str(tfds_dir)).batch(100)))
      raw[split] = (np.concatenate([r["image"] for r in rows])[..., 0],
                    np.concatenate([r["label"] for r in rows]))
    config = data_config(name="fashion_mnist", imbalance="none", n_max=1000, source="tfds",
                         data_dir=str(tfds_dir))
    from_tfds = data.load_dataset(config)
    # "auto" takes TFDS when it is prepared.
    from_auto = data.load_dataset(dict(config, source="auto"))
  _write_split_files(idx_dir, *raw["train"], *raw["test"])
  from_idx = data.load_dataset(dict(config, source="idx", data_dir=str(idx_dir)))
  for field in ("train_x", "train_y", "test_x", "test_y"):
    np.testing.assert_array_equal(getattr(from_idx, field), getattr(from_tfds, field))
    np.testing.assert_array_equal(getattr(from_auto, field), getattr(from_tfds, field))
    assert getattr(from_idx, field).dtype == getattr(from_tfds, field).dtype
  assert from_idx.class_sizes == from_tfds.class_sizes
  assert from_idx.view_options == from_tfds.view_options


def test_missing_idx_data_fails_fast_with_both_ways(tmp_path):
  start = time.perf_counter()
  for source in ("auto", "idx"):
    with pytest.raises(data.MissingDatasetError) as error:
      data.load_dataset(data_config(name="mnist", imbalance="none", data_dir=str(tmp_path),
                                    source=source))
    message = str(error.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path) in message
    if source == "auto":
      assert f"tfds build mnist --data_dir {tmp_path}" in message
  assert time.perf_counter() - start < 5
  with pytest.raises(ValueError, match="data.source"):
    data.load_dataset(data_config(name="mnist", imbalance="none", source="csv"))
  with pytest.raises(ValueError, match="tfds"):
    data.load_dataset(data_config(name="cifar10", imbalance="none", source="idx"))


@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION),
                    reason=f"the real Fashion-MNIST IDX files are not in {DEBIAN_FASHION} "
                           "(`make data` installs Debian's dataset-fashion-mnist)")
def test_real_fashion_mnist_files(tmp_path, monkeypatch):
  assert idx.find_idx_files("fashion_mnist", None) is not None
  # "auto" with no data_dir and no TFDS copy reads the Debian files: the whole balanced
  # train split.
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  ds = data.load_dataset(data_config(name="fashion_mnist", data_dir=None,
                                     source="auto", imbalance="none", n_max=6000))
  assert ds.train_x.shape == (60_000, 32, 32, 1) and ds.test_x.shape == (10_000, 32, 32, 1)
  assert np.bincount(ds.train_y).tolist() == [6000] * 10 and ds.class_sizes == [6000] * 10
  assert np.bincount(ds.test_y).tolist() == [1000] * 10
  # Pixels 0 and 255 both occur: the normalised range is exactly [-1, 1].
  assert ds.train_x.min() == -1.0 and ds.train_x.max() == 1.0


def _tiny_split_files(directory, compress=True, train_labels=None):
  """Ten 28 x 28 train and test images, one per class (``train_labels`` replaces the train
  labels 0..9)."""
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
  labels = np.arange(10, dtype=np.uint8) if train_labels is None else train_labels
  _write_split_files(directory, images, labels, images, np.arange(10, dtype=np.uint8),
                     compress)


@pytest.mark.parametrize("source", ["auto", "idx"])
def test_a_given_data_dir_lacking_files_is_refused_naming_them(tmp_path, source):
  _tiny_split_files(tmp_path)
  os.remove(tmp_path / "train-images-idx3-ubyte.gz")
  os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
  # Only the two test files: refused even where Debian's complete copy exists.
  with pytest.raises(data.MissingDatasetError) as error:
    data.load_dataset(data_config(name="fashion_mnist", data_dir=str(tmp_path), source=source,
                                  imbalance="none", n_max=1))
  message = str(error.value)
  assert "\n" not in message and f"data.data_dir {tmp_path} lacks" in message, message
  assert "train-images-idx3-ubyte, train-labels-idx1-ubyte (plain or .gz)" in message
  assert "t10k-images-idx3-ubyte," not in message.split("lacks")[1].split("(plain")[0]


def test_the_files_read_are_recorded_with_size_and_sha256(tmp_path):
  import hashlib  # pylint: disable=g-import-not-at-top
  _tiny_split_files(tmp_path, compress=False)
  ds = data.load_dataset(data_config(name="mnist", data_dir=str(tmp_path), source="idx",
                                     imbalance="none", n_max=1))
  stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
           "t10k-labels-idx1-ubyte"]
  want = [{"path": str(tmp_path / stem), "bytes": os.path.getsize(tmp_path / stem),
           "sha256": hashlib.sha256((tmp_path / stem).read_bytes()).hexdigest()}
          for stem in stems]
  assert ds.data_source == {"kind": "idx", "files": want}
  # 10 x 28 x 28 bytes after the 16-byte header of an idx3 file.
  assert want[0]["bytes"] == 16 + 10 * 28 * 28 and want[1]["bytes"] == 8 + 10


def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path):
  _write(tmp_path / "good.gz", _idx_bytes(np.zeros((50, 28, 28), np.uint8), 0x08), True)
  stored = (tmp_path / "good.gz").read_bytes()
  # The 10-byte gzip header intact, the deflate stream after it overwritten.
  corrupt = stored[:10] + bytes(b ^ 0xFF for b in stored[10:30]) + stored[30:]
  (tmp_path / "corrupt.gz").write_bytes(corrupt)
  (tmp_path / "empty").write_bytes(b"")
  for name, fragment in (("corrupt.gz", "gzip stream is damaged"), ("empty", "is empty")):
    with pytest.raises(idx.IDXFormatError) as error:
      idx.read_idx(str(tmp_path / name))
    message = str(error.value)
    assert str(tmp_path / name) in message and fragment in message and "\n" not in message


def _bad_data_cli(tmp_path, data_dir):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
  proc = subprocess.run(
      [sys.executable, "-m", "deepnet.main", "--config=experiments/configs/digits_mlp.py",
       f"--workdir={tmp_path / 'run'}", "--config.data.name=mnist",
       "--config.data.source=idx", f"--config.data.data_dir={data_dir}",
       "--config.data.imbalance=none", "--config.data.n_max=1", "--config.batch_size=5"],
      cwd=repo, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=120)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "run")   # refused before anything is written
  return lines[0]


def test_a_corrupted_deflate_stream_and_a_bad_label_exit_2_before_training(tmp_path):
  corrupt = tmp_path / "corrupt"
  _tiny_split_files(corrupt)
  path = corrupt / "train-images-idx3-ubyte.gz"
  stored = path.read_bytes()
  path.write_bytes(stored[:10] + bytes(b ^ 0xFF for b in stored[10:40]) + stored[40:])
  line = _bad_data_cli(tmp_path, corrupt)
  assert str(path) in line and "gzip stream is damaged" in line, line
  # Label 10 in the train split of a 10-class set: refused before the first epoch.
  labels = np.arange(10, dtype=np.uint8)
  labels[7] = 10
  bad_label = tmp_path / "bad_label"
  _tiny_split_files(bad_label, train_labels=labels)
  line = _bad_data_cli(tmp_path, bad_label)
  assert str(bad_label / "train-labels-idx1-ubyte.gz") in line, line
  assert "label 10 at row 7" in line and "outside [0, 10)" in line, line


def test_images_of_the_wrong_shape_are_refused():
  with pytest.raises(idx.IDXFormatError, match=r"must be \[N, 28, 28\] uint8, got \[3, 8, 8\]"):
    idx._check_split("mnist", "train", np.zeros((3, 8, 8), np.uint8), np.zeros(3, np.uint8),
                     "img", "lab")
  with pytest.raises(ValueError, match=r"label -1 at row 2"):
    data.check_labels("digits", "test", np.array([0, 1, -1]), 10)


def test_run_json_names_the_files_read(tmp_path):
  from deepnet import run_record  # pylint: disable=g-import-not-at-top
  from deepnet import train  # pylint: disable=g-import-not-at-top
  from experiments.configs import digits_mlp  # pylint: disable=g-import-not-at-top
  _tiny_split_files(tmp_path / "data", compress=False)
  config = digits_mlp.get_config()
  config.data.name, config.data.source = "mnist", "idx"
  config.data.data_dir, config.data.imbalance, config.data.n_max = str(tmp_path / "data"), "none", 1
  config.batch_size = 5
  descriptor = run_record.run_descriptor(train.setup_run(config, str(tmp_path / "run")))
  files = descriptor["data"]["source"]["files"]
  assert [f["path"] for f in files] == [
      str(tmp_path / "data" / stem) for stem in ("train-images-idx3-ubyte",
                                                 "train-labels-idx1-ubyte",
                                                 "t10k-images-idx3-ubyte",
                                                 "t10k-labels-idx1-ubyte")]
