"""The commands as a user meets them: --help and --version, console scripts, the refusal of a
paper-scale network on a CPU, a core install without TensorFlow, provenance in run.json, and
the compilation cache switch."""

import importlib
import json
import os
import platform
import subprocess
import sys
import tomllib

import pytest

from deepnet import main as main_lib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIGITS = "experiments/configs/digits_mlp.py"
PAPER_PRESETS = ("cifar10_resnet18", "cifar100_resnet18", "mnist_resnet18",
                 "fashion_mnist_resnet18")
# A digits run of one epoch with a small MLP: seconds on a CPU.
TINY = ["--config.num_epochs=1", "--config.model.mlp_widths=(16, 8)",
        "--config.checkpoint_every_epochs=1"]


def _run(args, *, code=None, timeout=240, env=None):
  argv = [sys.executable, "-c", code] if code else [sys.executable, *args]
  full_env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
                  JAX_DISABLE_MOST_OPTIMIZATIONS="1", **(env or {}))
  return subprocess.run(argv + (list(args) if code else []), cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=full_env)


def _one_line_error(proc):
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  return lines[0]


def _version_from_pyproject_source():
  # pyproject.toml reads the version from geometry/_version.py: parse that file as text.
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    attr = tomllib.load(f)["tool"]["setuptools"]["dynamic"]["version"]["attr"]
  module, _, name = attr.rpartition(".")
  with open(os.path.join(REPO, *module.split(".")) + ".py") as f:
    for line in f:
      if line.startswith(name):
        return line.split("=")[1].strip().strip('"')
  raise AssertionError("no version line")


def test_help_exits_0_and_lists_the_flags():
  proc = _run(["-m", "deepnet.main", "--help"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  for flag in ("--config", "--workdir", "--allow_cpu", "--[no]compilation_cache"):
    assert flag in proc.stdout, flag


@pytest.mark.parametrize("module,prog", [("deepnet.main", "scl-train"), ("ufm.cli", "ufm"),
                                         ("experiments.sweep", "scl-sweep"),
                                         ("experiments.report", "scl-report")])
def test_version_of_every_command(module, prog):
  proc = _run(["-m", module, "--version"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == [prog, _version_from_pyproject_source()]


def test_console_scripts_name_callables_that_exist():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  assert set(scripts) == {"ufm", "scl-train", "scl-sweep", "scl-report"}
  for target in scripts.values():
    module, _, func = target.partition(":")
    assert callable(getattr(importlib.import_module(module), func)), target


def test_paper_presets_are_paper_scale_and_the_cpu_recipes_are_not():
  for name in PAPER_PRESETS + ("digits_mlp", "mnist1d_mlp"):
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    assert main_lib.is_paper_scale(config) == (name in PAPER_PRESETS), name
  config = importlib.import_module("experiments.configs.cifar10_resnet18").get_config()
  config.model.width = 0.125
  assert not main_lib.is_paper_scale(config)
  config.model.name, config.model.width = "densenet40", 1.0
  assert main_lib.is_paper_scale(config)


def test_paper_preset_on_cpu_refuses_unless_allowed(tmp_path):
  # The preset's network on the embedded digits, so that the data check passes.
  args = ["-m", "deepnet.main", "--config=experiments/configs/cifar10_resnet18.py",
          f"--workdir={tmp_path / 'run'}", "--config.data.name=digits",
          "--config.data.n_max=100"]
  line = _one_line_error(_run(args))
  assert line.startswith("error: ") and "--allow_cpu" in line and "CPU" in line, line
  assert not os.path.exists(tmp_path / "run")
  # With the flag the check passes: this workdir holds another run, which is the next error.
  os.makedirs(tmp_path / "run")
  with open(tmp_path / "run" / "config.json", "w") as f:
    json.dump({"loss": "ce"}, f)
  line = _one_line_error(_run(args + ["--allow_cpu"]))
  assert "different config" in line, line


_WITHOUT_TF = """
import importlib.machinery
import sys

class NotInstalled(importlib.machinery.PathFinder):
  # As in a core install: TensorFlow, TFDS and PyTorch are not found on sys.path.
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets", "torch"):
      return None
    return super().find_spec(name, path, target)

sys.meta_path = [NotInstalled if f is importlib.machinery.PathFinder else f
                 for f in sys.meta_path]
import geometry, ufm.cli, ufm.solver, deepnet.train
from deepnet import main
sys.exit(main.main(["deepnet.main"] + sys.argv[1:]))
"""


def test_core_install_trains_on_digits_without_tensorflow_and_records_provenance(tmp_path):
  workdir = tmp_path / "run"
  proc = _run([f"--config={DIGITS}", f"--workdir={workdir}", "--nocompilation_cache", *TINY],
              code=_WITHOUT_TF)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert lines[-1]["epoch"] == 1 and lines[-1]["train_loss"] > 0
  provenance = json.load(open(workdir / "run.json"))["provenance"]
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  assert provenance["python"] == platform.python_version()
  assert provenance["jax"] == jax.__version__ and provenance["numpy"] == np.__version__
  for key in ("jaxlib", "flax", "optax", "orbax", "device_kind"):
    assert provenance[key], key
  head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                        text=True)
  if head.returncode == 0:
    assert provenance["git"]["commit"] == head.stdout.strip()
    assert isinstance(provenance["git"]["dirty"], bool)


def test_tfds_data_set_without_the_extra_names_it(tmp_path):
  proc = _run([f"--config=experiments/configs/cifar10_resnet18.py", f"--workdir={tmp_path}/r",
               f"--config.data.data_dir={tmp_path}/tfds"], code=_WITHOUT_TF)
  line = _one_line_error(proc)
  assert "scl-geometry[tfds]" in line and "cifar10" in line, line


def test_compilation_cache_fills_its_folder_and_the_flag_turns_it_off(tmp_path):
  cache = tmp_path / "cache"
  proc = _run(["-m", "deepnet.main", f"--config={DIGITS}", f"--workdir={tmp_path / 'a'}",
               f"--config.compilation_cache_dir={cache}", *TINY])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(os.listdir(cache)) >= 2   # at least the train step and the embedding pass
  off = tmp_path / "off"
  proc = _run(["-m", "deepnet.main", f"--config={DIGITS}", f"--workdir={tmp_path / 'b'}",
               f"--config.compilation_cache_dir={off}", "--nocompilation_cache", *TINY])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not off.exists()
