"""The files of a run folder: strict JSON, atomic writes and provenance.

Both halves of the project (`ufm solve` and training) write run folders through this module,
so every JSON file follows one policy:

* strict JSON: NaN and +-inf are written as ``null`` (never a bare ``NaN``), numpy scalars and
  arrays become Python numbers and lists;
* atomic: a file is written to a temporary name in the same folder, flushed to disk and then
  renamed over the target, so a reader (or a run killed mid-write) sees the old file or the new
  one, whole, never a truncated one.

``provenance()`` describes the software stack and the code version a number was measured with.
It reads package versions from the installed distributions' metadata, so it imports nothing
heavy (no flax, orbax or TensorFlow).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import tempfile
from typing import Any, Iterator

import numpy as np

# The distributions whose versions tie a measured number to a software stack.
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def to_json(value: Any) -> Any:
  """``value`` with every leaf made strict-JSON-ready.

  Non-finite floats become ``None``; numpy scalars, booleans and arrays become Python values and
  nested lists; tuples become lists. Anything else is returned as it is (``json`` then decides).
  """
  if isinstance(value, dict):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_json(value.tolist())
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  return value


def dumps(value: Any, *, indent: int | None = 1, sort_keys: bool = False) -> str:
  """Strict JSON text of ``value`` (see `to_json`); raises ``ValueError`` on a leftover NaN."""
  return json.dumps(to_json(value), indent=indent, sort_keys=sort_keys, allow_nan=False)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
  """Opens a temporary file beside ``path``; on a clean exit it is synced and renamed to
  ``path``, on an exception it is removed and ``path`` is left as it was."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
  try:
    # mkstemp makes the file private (0600); a run's files get the mode open() would give.
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def _umask() -> int:
  """The process umask, read without changing it where Linux tells it (os.umask can only
  read it by setting it, for a moment, for every thread of the process)."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 1,
               sort_keys: bool = False) -> None:
  """Writes ``value`` to ``path`` as strict JSON, atomically."""
  text = dumps(value, indent=indent, sort_keys=sort_keys)
  with atomic_open(path, "w") as f:
    f.write(text + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` atomically."""
  with atomic_open(path, "w") as f:
    f.write(text)


def check_free_space(folder: str | os.PathLike, need: int, what: str) -> None:
  """Raises OSError(ENOSPC) when ``folder``'s file system has fewer than ``need`` bytes free.

  Checked before a write that would otherwise fail half-way (a checkpoint, a solve's
  outputs), so that the work before it is not spent for nothing. The message names ``what``,
  the folder and both sizes.
  """
  import errno  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  free = shutil.disk_usage(os.fspath(folder)).free
  if free < need:
    raise OSError(errno.ENOSPC, f"No space left on device for {what} in {os.fspath(folder)} "
                  f"(about {need / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)")


def read_json(path: str | os.PathLike) -> Any:
  """Reads a JSON file; a missing, unreadable or malformed file raises ``ValueError`` naming
  the file and the reason in one line."""
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{path}: no such file") from None
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: cannot be read ({e})") from None
  except (json.JSONDecodeError, RecursionError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def git_state(path: str | os.PathLike | None = None) -> dict:
  """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding ``path``
  (default: this package's folder). ``None`` where there is no git or no checkout."""
  folder = os.fspath(path) if path is not None else os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}
  return {"commit": commit or None, "dirty": bool(status.strip())}


def provenance(*, device: bool = True) -> dict:
  """The software stack of this process: versions of python and of the project's numerical
  packages, the JAX backend and device kind (when ``device``), and the git commit with a dirty
  flag. A package that is not installed is recorded as ``None``."""
  info: dict[str, Any] = {"python": platform.python_version()}
  info.update({name.replace("-checkpoint", ""): _version(name) for name in _PACKAGES})
  info["scl_geometry"] = _version("scl-geometry")
  if device:
    import jax  # the caller has imported it already whenever device facts are asked for

    devices = jax.devices()
    info["backend"] = jax.default_backend()
    info["device_kind"] = devices[0].device_kind if devices else None
    info["device_count"] = len(devices)
  info["git"] = git_state()
  return info


RUN_KINDS = ("ufm", "train")


def run_descriptor(kind: str, setup: str, *, problem: dict | None = None,
                   config: dict | None = None, **facts: Any) -> dict:
  """The ``run.json`` of a run folder, one format for both halves of the project.

  ``kind`` is ``"ufm"`` (a `ufm solve` folder: ``problem`` is the problem definition that
  result.json also holds) or ``"train"`` (a training workdir: ``config`` is the run's config,
  as in config.json). ``setup`` is the one-line name of the run that summaries and the report
  show. ``facts`` are kind-specific fields (a training run's class sizes, batching advice, ...).
  ``provenance`` (versions, device, git commit) is added here, so every run folder records it
  the same way.
  """
  if kind not in RUN_KINDS:
    raise ValueError(f"run kind must be one of {RUN_KINDS}, got {kind!r}")
  if (problem is None) == (config is None):
    raise ValueError("a run descriptor has exactly one of problem (ufm) or config (train)")
  if (kind == "ufm") != (problem is not None):
    raise ValueError(f"a {kind!r} run is described by its "
                     f"{'problem' if kind == 'ufm' else 'config'}")
  descriptor = {"kind": kind, "setup": str(setup)}
  descriptor["problem" if kind == "ufm" else "config"] = problem if kind == "ufm" else config
  overlap = sorted(set(facts) & {"kind", "setup", "problem", "config", "provenance"})
  if overlap:
    raise ValueError(f"run descriptor facts may not redefine {overlap}")
  descriptor.update(facts)
  descriptor["provenance"] = provenance()
  return descriptor
