r"""Entry point of the training runs (``make train``).

  python -m deepnet.main --config=experiments/configs/digits_mlp.py --workdir=runs/digits \
      [--config.model.final_relu=False ...] [--distributed]

``--config`` is an ml_collections config file (its ``get_config()``); ``--config.FIELD=VALUE``
overrides any field (`deepnet.load_config`, which the sweep's check of a finished run uses
too). Starting the same command again resumes from the workdir's last checkpoint.
Multi-host: ``--distributed`` (or ``config.distributed=True``, or the environment variable
``JAX_COORDINATOR_ADDRESS``) calls ``jax.distributed.initialize`` with
``--coordinator_address`` / ``--num_processes`` / ``--process_id`` or, when those are not
given, ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, or the
cluster's auto-detection (SLURM, Open MPI, TPU pods).

A paper-scale network (ResNet-18 or DenseNet-40 at full width, as in the presets
``experiments/configs/*_resnet18.py``) is refused on a CPU backend, where it would train for
days, unless ``--allow_cpu`` is given; the data check comes first. Compiled programs are kept
in a persistent cache (``config.compilation_cache_dir``, see `deepnet.compilation_cache`), so
a resumed run, and the runs of a sweep that compile the same programs, load them instead of
compiling; ``--nocompilation_cache`` turns it off. ``--help`` lists the flags, ``--version``
prints the version.

Bad input (an unknown flag, a bad config value, a config file that does not load, a data set
that is not prepared, a workdir that is a file or holds another run or is in use) prints one
line on stderr and exits with status 2. Faults during the run print one line too (see
``docs/faults_training.md``): divergence and an unwritable workdir (disk full) exit 1, SIGTERM
and SIGINT save a checkpoint at the next step boundary and exit 143 and 130.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from deepnet import __version__

_CONFIG = flags.DEFINE_string("config", None, "Path to an ml_collections config file "
                               "(experiments/configs/NAME.py); --config.FIELD=VALUE overrides "
                               "a field (deepnet.config.load_config).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run (config.json, "
                               "metrics.jsonl, checkpoints/, embeddings_final.npz).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 "
                                   "(default $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes "
                                      "(default $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index "
                                   "(default $JAX_PROCESS_ID).")
_ALLOW_CPU = flags.DEFINE_bool("allow_cpu", False, "Train a paper-scale network (ResNet-18 / "
                               "DenseNet-40 at full width) even when JAX runs on the CPU.")
_COMPILATION_CACHE = flags.DEFINE_bool(
    "compilation_cache", True, "Keep compiled programs in config.compilation_cache_dir "
    "(default $SCL_COMPILATION_CACHE_DIR or ~/.cache/scl-geometry/jax) across runs and "
    "resumes; --nocompilation_cache turns it off.")

_HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "--helpfull")
USAGE = "usage: scl-train --config=FILE --workdir=DIR [flags]"
# Networks that only a GPU trains in reasonable time (the paper's ResNet-18 / DenseNet-40).
PAPER_SCALE_MODELS = ("resnet18", "densenet40")


class UsageError(Exception):
  """Bad command-line input."""


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ""):
    return None
  try:
    return int(value)
  except ValueError as e:
    raise UsageError(f"${name} must be an integer, got {value!r}") from e


def _initialize_distributed(config) -> None:
  """jax.distributed.initialize when asked for by a flag, the config or the environment."""
  wanted = (_DISTRIBUTED.value or bool(config.get("distributed"))
            or bool(os.environ.get("JAX_COORDINATOR_ADDRESS")))
  if not wanted:
    return
  import jax  # pylint: disable=g-import-not-at-top
  kwargs = {}
  address = _COORDINATOR.value or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = (_NUM_PROCESSES.value if _NUM_PROCESSES.value is not None
                   else _env_int("JAX_NUM_PROCESSES"))
  process_id = (_PROCESS_ID.value if _PROCESS_ID.value is not None
                else _env_int("JAX_PROCESS_ID"))
  if address:
    kwargs["coordinator_address"] = address
  if num_processes is not None:
    kwargs["num_processes"] = num_processes
  if process_id is not None:
    kwargs["process_id"] = process_id
  jax.distributed.initialize(**kwargs)


def is_paper_scale(config) -> bool:
  """True for a ResNet-18 / DenseNet-40 at full width (``model.width >= 1``)."""
  model = config.get("model") or {}
  return (model.get("name") in PAPER_SCALE_MODELS
          and float(model.get("width", 1.0) or 0.0) >= 1.0)


def _check_backend(config) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if is_paper_scale(config) and jax.default_backend() == "cpu" and not _ALLOW_CPU.value:
    raise UsageError(
        f"{config.model.name} at width {float(config.model.get('width', 1.0)):g} is a "
        "paper-scale network and JAX runs on the CPU, where it trains for days: install a GPU "
        "jax (make install JAX=cuda12) or pass --allow_cpu to run anyway")


def usage() -> str:
  """The module docstring and every flag of this entry point (what ``--help`` prints)."""
  module = flags.FLAGS.find_module_defining_flag("workdir")
  flag_help = flags.FLAGS.module_help(module).replace(f"{module}:", "flags:", 1)
  return (f"{__doc__.strip()}\n\n{USAGE}\n"
          f"{flag_help}\n")


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return text or type(error).__name__


def _write_error(error: BaseException) -> OSError | None:
  """The OSError (disk full, read-only, ...) behind ``error``, following its causes."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno is not None:
      return error
    error = error.__cause__ or error.__context__
  return None


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if any(arg in _HELP_ARGS for arg in argv[1:]):
    print(usage())
    return 0
  if "--version" in argv[1:]:
    print(f"scl-train {__version__}")
    return 0
  from deepnet import interrupts  # pylint: disable=g-import-not-at-top
  interrupts.exit_on_signals()
  try:
    return _main(argv)
  except interrupts.Stopped as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print("error: interrupted during start-up, before any training step; nothing to resume "
          "from yet", file=sys.stderr)
    return 130


def _main(argv: list[str]) -> int:
  from deepnet import config as config_lib  # pylint: disable=g-import-not-at-top
  argv, overrides = config_lib.split_overrides(argv)
  try:
    flags.FLAGS(argv)
    if not _CONFIG.value:
      raise UsageError("--config=experiments/configs/NAME.py is required")
    if not _WORKDIR.value:
      raise UsageError("--workdir=DIR is required")
  except (flags.Error, UsageError) as e:   # the command line itself: the error and the usage
    print(f"error: {_one_line(e)}; {USAGE} (--help lists the flags)", file=sys.stderr)
    return 2
  try:
    config = config_lib.load_config(_CONFIG.value, overrides)
  except config_lib.ConfigError as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 2

  # Imported after the flags so that `--help` and usage errors answer fast.
  from deepnet import compilation_cache  # pylint: disable=g-import-not-at-top
  from deepnet import data as data_lib  # pylint: disable=g-import-not-at-top
  from deepnet import run_setup  # pylint: disable=g-import-not-at-top
  from deepnet import train as train_lib  # pylint: disable=g-import-not-at-top

  try:
    _initialize_distributed(config)
    if _COMPILATION_CACHE.value:
      try:
        compilation_cache.enable(config.get("compilation_cache_dir"))
      except OSError as e:
        raise UsageError(f"the compilation cache folder cannot be made ({_one_line(e)}); pass "
                         "--config.compilation_cache_dir=DIR or --nocompilation_cache") from e
    setup = run_setup.setup_run(config, _WORKDIR.value)
    _check_backend(config)
  except (UsageError, train_lib.ConfigError, data_lib.MissingDatasetError) as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 2
  try:
    train_lib.run(setup)
  except train_lib.ConfigError as e:   # e.g. a workdir that holds another run, or in use
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 2
  except train_lib.Diverged as e:
    print(f"error: {_one_line(e)}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:   # multi-process runs, which leave SIGINT to Python
    print("error: interrupted; start the same command again to resume from the last "
          "checkpoint", file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    os_error = _write_error(e)
    if os_error is None:
      raise
    print(f"error: cannot write the run's files ({_one_line(os_error)}); what was written "
          f"before is intact: fix that and start the same command again to resume from the "
          "last checkpoint", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
