"""TFDS data that cannot be used: a corrupt prepared folder and a download that cannot start
are reported as MissingDatasetError (one line from `deepnet.main`, exit 2) saying what to do."""

import importlib.util
import os

import pytest

from deepnet import data
from experiments.configs import cifar10_resnet18


def _data_config(data_dir, download=False):
  config = cifar10_resnet18.get_config()
  config.data.data_dir, config.data.download = str(data_dir), download
  return config.data


def test_a_corrupt_prepared_folder_says_to_prepare_it_again(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  version = tmp_path / "cifar10" / "3.0.2"
  version.mkdir(parents=True)
  (version / "dataset_info.json").write_text('{"name": "cifar10", "splits": [')   # cut short
  with pytest.raises(data.MissingDatasetError) as info:
    data.load_dataset(_data_config(tmp_path))
  message = str(info.value)
  assert "cannot be read" in message and "prepare it again" in message, message
  assert os.path.join(str(tmp_path), "cifar10") in message
  assert "\n" not in message


@pytest.mark.skipif(importlib.util.find_spec("importlib_resources") is not None,
                    reason="importlib_resources is installed: the download would start")
def test_download_without_importlib_resources_names_the_package_to_install(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(data.MissingDatasetError,
                     match=r"needs the package importlib_resources.*pip install "
                           r"importlib_resources"):
    data.load_dataset(_data_config(tmp_path / "tfds", download=True))


def test_the_preparation_hint_names_what_the_tfds_command_needs(tmp_path):
  with pytest.raises(data.MissingDatasetError) as info:
    data.load_dataset(_data_config(tmp_path / "nothing_here"))
  message = str(info.value)
  assert "tfds build cifar10" in message and "apache-beam" in message, message
  assert "importlib_resources" in message
