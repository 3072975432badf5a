"""The training config: how a config file and its overrides are loaded (`load_config`, the one
path of ``scl-train`` and the sweep), the fields the trainer reads, their checks, and the epoch
lists.

The defaults live in the config files only (``experiments/configs/cifar10_resnet18.py`` is
the base every recipe derives from): the trainer reads each field as ``config.FIELD`` after
``validate_config`` has checked that all of ``TRAINER_FIELDS`` are there, so a config that
lacks one fails with one ConfigError naming it, before any work.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from typing import Any, Mapping, Sequence

# The paper's recipe (docs/theory.md#training-protocol): a 350-epoch run, decays after epochs
# 116 and 232, and the epochs at which the released code logs.
PAPER_NUM_EPOCHS = 350
PAPER_LR_DECAY_EPOCHS = (116, 232)
PAPER_LOG_EPOCHS = (1, 3, 5, 7, 9, 11, 20, 30, 40, 60, 80, 101, 120, 140, 160, 180, 201, 220,
                    235, 245, 250, 260, 275, 280, 290, 299, 305, 310, 315, 320, 325, 330, 335,
                    340, 345, 349, 350)

LOSSES = ("scl", "ce")
BATCHINGS = ("shuffle", "fixed")
LR_SCHEDULES = ("multistep", "cosine")

# Every field that the trainer (deepnet.train, deepnet.optim, deepnet.run_setup, and
# deepnet.models / deepnet.data through them) reads.
TRAINER_FIELDS = (
    "loss", "temperature", "loss_scale", "batching", "binding", "batch_size", "num_epochs",
    "lr", "momentum", "weight_decay", "lr_schedule", "lr_decay_epochs", "lr_decay_base_epochs",
    "lr_decay_factor", "warmup_epochs", "grad_clip_norm", "decay_norm_and_bias", "log_epochs",
    "seed", "checkpoint_every_epochs", "eval_batch_size", "eval_test_examples", "tensorboard",
    "model.name", "model.width", "model.final_relu", "model.extra_linear", "model.head_dim",
    "model.mlp_widths", "model.mlp_norm", "model.projection_dim", "model.projection_relu",
    "model.dtype", "data.name", "data.data_dir", "data.download", "data.source",
    "data.imbalance", "data.ratio", "data.rho", "data.n_max", "data.views", "data.noise_std",
    "data.crop_pad", "data.hflip", "data.max_shift", "data.subsample_seed",
    "data.num_classes", "data.dim", "data.n_test_per_class")


class ConfigError(ValueError):
  """A config that cannot describe a run (bad value, missing field, foreign workdir)."""


def _has(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return False
    except TypeError:
      return False
    node = node[part]
  return True


def _missing(field: str) -> ConfigError:
  return ConfigError(
      f"config field {field!r} is missing; the config must define every field that "
      "experiments/configs/cifar10_resnet18.py defines (derive it from that file's "
      "get_config())")


def check_fields(config, fields: Sequence[str] = TRAINER_FIELDS) -> None:
  """Raises ConfigError naming the first of ``fields`` (dotted) that ``config`` lacks."""
  for field in fields:
    if not _has(config, field):
      raise _missing(field)


def read_field(section, field: str):
  """``section.NAME`` for the dotted ``field = "SECTION.NAME"``, e.g.
  ``read_field(config.model, "model.width")``; ``section`` is a ConfigDict, a dict or any
  object with attributes. There is no fallback value: a section that lacks NAME raises one
  ConfigError naming ``field``."""
  name = field.rsplit(".", 1)[-1]
  try:
    return section[name] if isinstance(section, dict) else getattr(section, name)
  except (AttributeError, KeyError):
    raise _missing(field) from None


def _round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def scale_epochs(epochs: Sequence[int], num_epochs: int,
                 base_epochs: int = PAPER_NUM_EPOCHS) -> list[int]:
  """Epochs of a ``base_epochs``-long run moved to a ``num_epochs``-long one.

  e -> round(e * num_epochs / base_epochs), clipped to [1, num_epochs], deduplicated, sorted.
  """
  scaled = {min(num_epochs, max(1, _round_half_up(e * num_epochs / base_epochs)))
            for e in epochs}
  return sorted(scaled)


def resolve_log_epochs(config) -> list[int]:
  """The logged epochs: ``config.log_epochs``, or the paper's list scaled to the run's length
  when it is empty; epoch 1 (for the empty default) and the last epoch are always in."""
  num_epochs = int(config.num_epochs)
  given = [int(e) for e in (config.log_epochs or ())]
  if not given:
    return sorted(set(scale_epochs(PAPER_LOG_EPOCHS, num_epochs)) | {1, num_epochs})
  bad = [e for e in given if not 1 <= e <= num_epochs]
  if bad:
    raise ConfigError(f"log_epochs must lie in [1, num_epochs={num_epochs}], got {bad}")
  return sorted(set(given) | {num_epochs})


def resolve_lr_decay_epochs(config) -> list[int]:
  """Epochs after which lr is multiplied by ``lr_decay_factor`` (multistep schedule).

  ``lr_decay_epochs`` are epochs of a ``lr_decay_base_epochs``-long run (350 in the recipes,
  the paper's, so (116, 232) are the paper's decays) scaled to ``num_epochs``:
  m -> round(m * num_epochs / base); with ``lr_decay_base_epochs = 0`` they are taken as they
  are. A decay at or after the last epoch never happens and is dropped.
  """
  num_epochs = int(config.num_epochs)
  epochs = [int(e) for e in (config.lr_decay_epochs or ())]
  base = int(config.lr_decay_base_epochs or 0)
  if base > 0:
    epochs = [_round_half_up(e * num_epochs / base) for e in epochs]
  return sorted({e for e in epochs if 1 <= e < num_epochs})


def validate_config(config) -> None:
  """Raises ConfigError for a missing field or a value that cannot describe a run (checked
  before any work)."""
  check_fields(config)

  def check(ok, message):
    if not ok:
      raise ConfigError(message)

  def finite_positive(name):
    value = float(config[name])
    check(math.isfinite(value) and value > 0, f"{name} must be finite and > 0, got {value}")

  check(config.loss in LOSSES, f"loss must be one of {LOSSES}, got {config.loss!r}")
  finite_positive("temperature")
  finite_positive("loss_scale")
  check(config.batching in BATCHINGS,
        f"batching must be one of {BATCHINGS}, got {config.batching!r}")
  check(int(config.binding) >= 0, f"binding must be >= 0, got {config.binding}")
  check(int(config.batch_size) >= 2, f"batch_size must be >= 2, got {config.batch_size}")
  check(int(config.num_epochs) >= 1, f"num_epochs must be >= 1, got {config.num_epochs}")
  finite_positive("lr")
  check(0 <= float(config.momentum) < 1, f"momentum must be in [0, 1), got {config.momentum}")
  check(math.isfinite(float(config.weight_decay)) and float(config.weight_decay) >= 0,
        f"weight_decay must be finite and >= 0, got {config.weight_decay}")
  check(config.lr_schedule in LR_SCHEDULES,
        f"lr_schedule must be one of {LR_SCHEDULES}, got {config.lr_schedule!r}")
  check(float(config.warmup_epochs or 0) >= 0,
        f"warmup_epochs must be >= 0, got {config.warmup_epochs}")
  check(float(config.grad_clip_norm or 0.0) >= 0,
        f"grad_clip_norm must be >= 0 (0: off), got {config.grad_clip_norm}")
  finite_positive("lr_decay_factor")
  check(int(config.checkpoint_every_epochs) >= 1,
        f"checkpoint_every_epochs must be >= 1, got {config.checkpoint_every_epochs}")
  check(int(config.eval_batch_size) >= 1,
        f"eval_batch_size must be >= 1, got {config.eval_batch_size}")
  check(int(config.eval_test_examples) >= 0,
        f"eval_test_examples must be >= 0 (0: every test example), got "
        f"{config.eval_test_examples}")
  resolve_log_epochs(config)


def config_to_dict(config) -> dict:
  """The config as plain JSON types (tuples become lists), keys sorted."""
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True, default=str))


def override_text(value) -> str:
  """A Python value as the VALUE text of a ``--config.FIELD=VALUE`` override (what the
  trainer's command line would carry): ``True``, ``0.1``, ``(8,4)``, ``None``, a path."""
  if isinstance(value, bool):
    return "True" if value else "False"
  if isinstance(value, (list, tuple)):
    return ("(" + ",".join(override_text(v) for v in value) + ("," if len(value) == 1 else "")
            + ")")
  if value is None:
    return "None"
  return str(value)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """A command line without its ``--config.FIELD=VALUE`` overrides, and the overrides for
  `load_config` (the last of a field wins, as for any flag); ``--config.FIELD`` and
  ``--noconfig.FIELD`` are ``True`` and ``False``, as ml_collections reads them."""
  rest, overrides = [], {}
  for arg in argv:
    if arg.startswith(("--config.", "--noconfig.")):
      name, sep, value = arg.partition("=")
      field = name.split(".", 1)[1]
      overrides.pop(field, None)
      overrides[field] = value if sep else str(not name.startswith("--no"))
    else:
      rest.append(arg)
  return rest, overrides


def load_config(config_file: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                *, base_dir: str | os.PathLike | None = None):
  """The run of ``scl-train --config=CONFIG_FILE --config.FIELD=VALUE ...``: the file's
  ``get_config()`` with ``overrides`` applied, validated (`validate_config`).

  Args:
    config_file: an ml_collections config file; a relative path is taken from ``base_dir``
      (default: the working directory).
    overrides: dotted field -> value. Text is parsed as the command line parses
      ``--config.FIELD=VALUE`` (ml_collections' parser of the field's type, so ``"0.1"`` for a
      float, ``"(8,4)"`` for a tuple, ``"True"`` for a bool, a path as it is); any other value
      is first written as that text (`override_text`), so a value and its text give one config.
    base_dir: the folder relative config paths start from.

  Returns:
    The locked ``ml_collections.ConfigDict``.

  Raises:
    ConfigError: one line naming the file or the field (a file that does not load, an unknown
      field, a value of the wrong type, a value that cannot describe a run).
  """
  path = os.fspath(config_file)
  if base_dir is not None and not os.path.isabs(path):
    path = os.path.join(os.fspath(base_dir), path)
  config = _config_from_file(path, os.fspath(config_file))
  overrides = dict(overrides or {})
  for field in overrides:
    if not _has(config, field):
      raise ConfigError(f"unknown config field {field!r} in a --config.FIELD=VALUE override")
  config = _with_overrides(config, overrides)
  validate_config(config)
  return config


def _config_from_file(path: str, shown: str):
  """``get_config()`` of the file at ``path`` (named ``shown`` in errors), loaded as a module
  of its own: two files never share one module object."""
  if not os.path.isfile(path):
    raise ConfigError(f"config file {shown} cannot be read (no such file)")
  name = "_scl_config_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(path))
  module_spec = importlib.util.spec_from_file_location(name, path)
  if module_spec is None or module_spec.loader is None:
    raise ConfigError(f"config file {shown} is not a Python file")
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    # Whatever a config file raises while it is executed (SyntaxError, NameError, ...).
    raise ConfigError(f"config file {shown} does not load: {type(e).__name__}: "
                      f"{_one_line(e)}") from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"config file {shown} defines no get_config(); see experiments/configs/ "
                      "for examples")
  try:
    return module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"config file {shown}: get_config() fails: {type(e).__name__}: "
                      f"{_one_line(e)}") from None


def _with_overrides(config, overrides: Mapping[str, Any]):
  """``config`` with the overrides applied by ml_collections' own flag parsers (those of
  ``--config.FIELD=VALUE``), on a flag set of their own rather than the process's."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ["load_config"] + [
      f"--config.{field}={value if isinstance(value, str) else override_text(value)}"
      for field, value in overrides.items()]
  flag_values = flags.FlagValues()
  try:
    holder = config_flags.DEFINE_config_dict("config", config, flag_values=flag_values,
                                             sys_argv=argv)
    flag_values(argv)
  except (flags.Error, ValueError, TypeError, AttributeError, KeyError) as e:
    raise ConfigError(f"bad config override: {_one_line(e)}") from None
  return holder.value


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return text or type(error).__name__
