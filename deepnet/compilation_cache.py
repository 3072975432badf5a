"""JAX's persistent compilation cache for the training entry point.

XLA compiles every jitted program of a run (the train step, the embedding pass, the state
initialisation) when the process first calls it. With the persistent cache, JAX stores each
compiled executable in a folder under a key made of the program, its compile options, the
jax/jaxlib versions and the device, and a later process that asks for the same program loads
it instead of compiling it. A resumed run is the same program as the run it resumes; the runs
of a sweep that differ only in what the program does not depend on (data values, the workdir)
share it too.

Values that the step closes over are part of the program (the learning rate, the
temperature), so runs that differ in those compile their own step; the seed is an argument of
the step, so runs that differ only in the seed share every program, as does the embedding
pass, which depends on the shapes and the model only. ``docs/performance.md`` has the measured
saving.
"""

from __future__ import annotations

import os

import jax

# Where compiled programs go when neither the config nor the environment says.
DEFAULT_DIR = os.path.join("~", ".cache", "scl-geometry", "jax")
ENV_VAR = "SCL_COMPILATION_CACHE_DIR"
# JAX skips programs that compile faster than this; the default (1 s) would skip every program
# of the small CPU runs, whose compile time is still most of a short run's time.
MIN_COMPILE_SECONDS = 0.0


def resolve_dir(directory: str | None = None) -> str:
  """``directory``, else ``$SCL_COMPILATION_CACHE_DIR``, else ``~/.cache/scl-geometry/jax``,
  as an absolute path."""
  chosen = directory or os.environ.get(ENV_VAR) or DEFAULT_DIR
  return os.path.abspath(os.path.expanduser(chosen))


def enable(directory: str | None = None) -> str:
  """Turns the persistent compilation cache on for this process; returns its folder.

  Call it before the first compilation (JAX reads the setting when it first compiles).
  """
  path = resolve_dir(directory)
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
