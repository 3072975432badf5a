"""Subprocess side of the multi-device, multi-process and resume tests of deepnet/train.py.

  python deepnet_train_helper.py train WORKDIR 'JSON_OVERRIDES' [PROCESS_ID NUM_PROCESSES PORT]
  python deepnet_train_helper.py main ARGS...       # deepnet.main.main(ARGS), the real CLI

Both set jax_disable_most_optimizations first (as the in-process tests do), so subprocess
and in-process runs compile the same programs. XLA_FLAGS (the device count) comes from the
environment the test gives the subprocess.
"""

import json
import os
import sys

import jax

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def assert_same_records(expected, got, tol=1e-6, path=""):
  """``got`` equals ``expected`` key by key (the same keys, None only where None; numbers to
  ``tol`` relative and absolute; lists element-wise), timing keys aside."""
  import math  # pylint: disable=g-import-not-at-top
  from deepnet import train  # pylint: disable=g-import-not-at-top
  if isinstance(expected, dict):
    assert isinstance(got, dict) and set(got) == set(expected), (path, set(got) ^ set(expected))
    for key in expected:
      if key not in train.TIMING_KEYS:
        assert_same_records(expected[key], got[key], tol, f"{path}.{key}")
  elif isinstance(expected, list):
    assert isinstance(got, list) and len(got) == len(expected), path
    for i, (want, have) in enumerate(zip(expected, got)):
      assert_same_records(want, have, tol, f"{path}[{i}]")
  elif isinstance(expected, float) and not isinstance(expected, bool):
    assert isinstance(got, (int, float)) and math.isclose(
        got, expected, rel_tol=tol, abs_tol=tol), (path, expected, got)
  else:
    assert got == expected, (path, expected, got)


def assert_same_run(expected, got, expected_dir, got_dir):
  """The metrics lines ``got`` equal ``expected`` (`assert_same_records`, to 1e-6) and the
  final train embeddings of ``got_dir`` those of ``expected_dir``, to 1e-6."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert [r["epoch"] for r in got] == [r["epoch"] for r in expected]
  assert_same_records(expected, got)
  ref = np.load(os.path.join(expected_dir, "embeddings_final.npz"))
  out = np.load(os.path.join(got_dir, "embeddings_final.npz"))
  np.testing.assert_allclose(out["train_embeddings"], ref["train_embeddings"], atol=1e-6)


def tiny_config(overrides=None):
  """A tiny SCL MLP run on the gaussian mixture: K = 4, sizes (12, 12, 6, 6), batch 10 plus
  one binding example per class (14 rows, which 4 or 8 devices do not divide), views with
  random augmentation, two epochs of three steps."""
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  from experiments.configs import digits_mlp  # pylint: disable=g-import-not-at-top
  config = digits_mlp.get_config()
  config.data.name = "gaussian"
  config.data.num_classes, config.data.dim, config.data.n_test_per_class = 4, 8, 5
  config.data.imbalance, config.data.ratio, config.data.n_max = "step", 2.0, 12
  config.data.views = "augment"
  config.model.mlp_widths = (16, 8)
  config.batch_size, config.binding = 10, 1
  config.num_epochs, config.checkpoint_every_epochs = 2, 1
  config.eval_batch_size = 10
  for key, value in (overrides or {}).items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def _base_section(section, overrides):
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  from experiments.configs import cifar10_resnet18  # pylint: disable=g-import-not-at-top
  fields = cifar10_resnet18.get_config()[section].to_dict()
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise KeyError(f"the base recipe's {section} section has no field {unknown}")
  fields.update(overrides)
  return fields


def model_config(**overrides):
  """The base recipe's ``model`` section (experiments/configs/cifar10_resnet18.py) as a dict,
  with ``overrides`` (fields of that section only)."""
  return _base_section("model", overrides)


def data_config(**overrides):
  """The base recipe's ``data`` section as a dict, with ``overrides`` (fields of that section
  only). Its imbalance is the recipe's "step"; pass imbalance="none" for balanced classes."""
  return _base_section("data", overrides)


def main(argv):
  jax.config.update("jax_disable_most_optimizations", True)
  if REPO not in sys.path:
    sys.path.insert(0, REPO)
  if argv[1] == "main":
    from deepnet import main as main_lib  # pylint: disable=g-import-not-at-top
    return main_lib.main(["deepnet.main"] + argv[2:])
  workdir, overrides = argv[2], json.loads(argv[3])
  if len(argv) > 4:
    process_id, num_processes, port = (int(a) for a in argv[4:7])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id)
  from deepnet import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(tiny_config(overrides), workdir)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
