"""`deepnet.load_config`: the config a `scl-train --config=FILE --config.FIELD=VALUE` command
trains, which the sweep's check of a finished run reads too."""

import importlib.util
import os

import pytest

import deepnet
from deepnet import config as config_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIGITS = "experiments/configs/digits_mlp.py"


def _digits_by_hand():
  module_spec = importlib.util.spec_from_file_location("digits_by_hand", os.path.join(REPO, DIGITS))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config()


def test_overrides_as_text_and_as_values_equal_the_config_set_by_hand():
  expected = _digits_by_hand()
  expected.lr = 0.5
  expected.model.final_relu = False
  expected.model.mlp_widths = (8, 4)
  expected.data.data_dir = "/data/tfds"
  expected.log_epochs = (1,)
  as_text = deepnet.load_config(DIGITS, {"lr": "0.5", "model.final_relu": "False",
                                         "model.mlp_widths": "(8,4)",
                                         "data.data_dir": "/data/tfds", "log_epochs": "(1,)"},
                                base_dir=REPO)
  as_values = deepnet.load_config(os.path.join(REPO, DIGITS),
                                  {"lr": 0.5, "model.final_relu": False,
                                   "model.mlp_widths": (8, 4), "data.data_dir": "/data/tfds",
                                   "log_epochs": [1]})
  want = config_lib.config_to_dict(expected)
  assert config_lib.config_to_dict(as_text) == want
  assert config_lib.config_to_dict(as_values) == want
  assert isinstance(as_text.lr, float) and as_text.model.mlp_widths == (8, 4)
  with pytest.raises(AttributeError):   # locked, as the command's config is
    as_text.no_such_field = 1


@pytest.mark.parametrize("overrides,fragment", [
    ({"data.no_such": "1"}, "unknown config field 'data.no_such'"),
    ({"batch_size": "fifty"}, "batch_size"),
    ({"loss": "mse"}, "loss must be one of"),
    ({"model": "1"}, "model"),
])
def test_a_bad_override_is_one_config_error_naming_it(overrides, fragment):
  with pytest.raises(config_lib.ConfigError) as info:
    deepnet.load_config(DIGITS, overrides, base_dir=REPO)
  assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_config_file_that_does_not_load_is_named(tmp_path):
  (tmp_path / "no_get.py").write_text("X = 1\n")
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  cases = [(tmp_path / "missing.py", "cannot be read"), (tmp_path / "no_get.py", "get_config"),
           (tmp_path / "broken.py", "SyntaxError")]
  # The digits config first: a file without get_config() must not find the one loaded before.
  deepnet.load_config(DIGITS, base_dir=REPO)
  for path, fragment in cases:
    with pytest.raises(config_lib.ConfigError) as info:
      deepnet.load_config(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_override_text_is_what_the_command_line_carries():
  assert [config_lib.override_text(v) for v in (True, 0.1, (8, 4), (3,), None, "/a b")] == [
      "True", "0.1", "(8,4)", "(3,)", "None", "/a b"]


def test_split_overrides_takes_the_config_fields_out_of_a_command_line():
  argv = ["scl-train", "--config=c.py", "--config.lr=0.5", "--workdir=w", "--config.seed=1",
          "--config.lr=0.25", "--config.model.final_relu", "--noconfig.tensorboard"]
  rest, overrides = config_lib.split_overrides(argv)
  assert rest == ["scl-train", "--config=c.py", "--workdir=w"]
  assert overrides == {"seed": "1", "lr": "0.25", "model.final_relu": "True",
                       "tensorboard": "False"}
  assert list(overrides) == ["seed", "lr", "model.final_relu", "tensorboard"]
