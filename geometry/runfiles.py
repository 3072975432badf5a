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


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, dict | None, str | None]]:
  """``(line number, record, why)`` for each non-blank line of a JSON-lines file such as a
  run's metrics.jsonl: ``record`` is the line's JSON object, or ``None`` with ``why`` when the
  line is not JSON (a run killed mid-write cuts its last line) or not an object. The one
  parser of these files; each reader decides what a bad line means to it. Bytes that are not
  UTF-8 only spoil their line. A file that cannot be read raises ``OSError``
  (``FileNotFoundError`` when there is none)."""
  out = []
  with open(os.fspath(path), encoding="utf-8", errors="replace") as f:
    for number, raw in enumerate(f, 1):
      raw = raw.strip()
      if not raw:
        continue
      try:
        record = json.loads(raw)
      except json.JSONDecodeError:
        out.append((number, None, "not JSON (cut short?)"))
        continue
      if isinstance(record, dict):
        out.append((number, record, None))
      else:
        out.append((number, None, f"not a JSON object ({raw[:40]})"))
  return out


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
# The version of the run.json record (docs/contracts.md#run-json). A folder whose run.json has
# no `schema` (or an older one) was written before the record described both kinds alike.
RUN_SCHEMA = 2
RUN_FILE = "run.json"
# Every key of a record, for both kinds; what only one kind has sits under "extra".
RUN_KEYS = ("schema", "kind", "setup", "data", "class_sizes", "num_classes", "model", "loss",
            "batching", "seeds", "epochs", "extra", "provenance")
# The facts of `model` that every record has (the model may report more).
MODEL_KEYS = ("name", "embedding_dim", "relu_before_embedding", "before_embedding")
_PARTS = {"data": ("name", "source"), "loss": ("name", "temperature"),
          "batching": ("scheme", "batch_size", "binding"),
          "epochs": ("unit", "planned", "reached"), "model": MODEL_KEYS}
_EPOCH_UNITS = {"train": "epochs", "ufm": "steps"}


class RunRecordError(ValueError):
  """A run folder without a readable schema-2 run.json; the message is one line naming the
  file or folder and the fault."""


class OldRunRecord(RunRecordError):
  """A run folder from before schema-2 records (no run.json, or an older schema): not damage
  but an old folder, so the message also says how to get a new record."""


def run_record(kind: str, setup: str, *, data: dict, class_sizes, model: dict, loss: dict,
               batching: dict, seeds, epochs: dict, extra: dict,
               provenance_of: dict | None = None) -> dict:
  """The ``run.json`` of a run folder: one record, with the same keys for both halves.

  ``kind`` is ``"ufm"`` (a `ufm solve` folder) or ``"train"`` (a training workdir); ``setup``
  is the one-line name of the run, in words a person reads (the report shows it as the run's
  description; no reader parses it: the facts are the other keys). ``model`` holds the facts the model reports about itself
  (``deepnet.models.model_facts``, or the UFM problem's), so that no reader re-derives them
  from a config. ``extra`` holds what only this kind has. ``provenance`` (versions, device,
  git commit) is added here, so every run folder records it the same way; ``provenance_of``
  replaces it for a record written after the run (an upgrade keeps the run's own). Raises
  ``ValueError`` when a part is missing or of the wrong type.
  """
  record = {"schema": RUN_SCHEMA, "kind": kind, "setup": str(setup), "data": dict(data),
            "class_sizes": [int(s) for s in class_sizes], "num_classes": len(class_sizes),
            "model": dict(model), "loss": dict(loss), "batching": dict(batching),
            "seeds": [int(s) for s in seeds], "epochs": dict(epochs), "extra": dict(extra),
            "provenance": provenance() if provenance_of is None else provenance_of}
  return to_json(check_record(record, "run record"))


def check_record(record: Any, where: str) -> dict:
  """``record`` when it is a well-formed schema-2 run record, else ``ValueError`` naming
  ``where`` and the first fault."""
  def fail(why):
    raise ValueError(f"{where}: {why}")

  if not isinstance(record, dict):
    fail("not a JSON object")
  missing = [k for k in RUN_KEYS if k not in record]
  if missing:
    fail(f"no {', '.join(missing)}")
  if record["kind"] not in RUN_KINDS:
    fail(f"kind must be one of {RUN_KINDS}, got {record['kind']!r}")
  for key, parts in _PARTS.items():
    if not isinstance(record[key], dict) or any(p not in record[key] for p in parts):
      fail(f"{key} must be an object with {', '.join(parts)}")
  sizes = record["class_sizes"]
  if not (isinstance(sizes, list) and sizes and all(_is_int(s) and s >= 0 for s in sizes)):
    fail("class_sizes must be a non-empty list of counts")
  if record["num_classes"] != len(sizes):
    fail(f"num_classes {record['num_classes']} is not len(class_sizes) = {len(sizes)}")
  model = record["model"]
  if not isinstance(model["relu_before_embedding"], bool):
    fail("model.relu_before_embedding must be true or false")
  if not (_is_int(model["embedding_dim"]) and model["embedding_dim"] >= 1):
    fail("model.embedding_dim must be a positive integer")
  if record["loss"]["name"] not in ("scl", "ce"):
    fail(f"loss.name must be scl or ce, got {record['loss']['name']!r}")
  if record["epochs"]["unit"] != _EPOCH_UNITS[record["kind"]]:
    fail(f"epochs.unit of a {record['kind']} run is {_EPOCH_UNITS[record['kind']]!r}")
  if not (isinstance(record["seeds"], list) and all(_is_int(s) for s in record["seeds"])):
    fail("seeds must be a list of integers")
  if not isinstance(record["extra"], dict):
    fail("extra must be an object")
  return record


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def read_run(folder: str | os.PathLike) -> dict:
  """The validated run record of a run folder (``FOLDER/run.json``).

  A folder without one, or with one from before schema 2, raises `OldRunRecord` in one line
  naming the folder and how to get a new record (re-run it, or ``scl-report --upgrade``); a
  damaged or malformed one raises `RunRecordError` naming the file and the fault.
  """
  folder = os.fspath(folder)
  path = os.path.join(folder, RUN_FILE)
  how = f"re-run it, or write one with `scl-report --upgrade {folder}`"
  if not os.path.exists(path):
    raise OldRunRecord(f"{folder}: no {RUN_FILE} (a run folder from before run records); "
                         f"{how}")
  try:
    record = read_json(path)
  except ValueError as e:
    raise RunRecordError(str(e)) from None
  schema = record.get("schema", 1) if isinstance(record, dict) else None
  if _is_int(schema) and schema < RUN_SCHEMA:
    raise OldRunRecord(f"{folder}: {RUN_FILE} has schema {schema}, older than the schema "
                         f"{RUN_SCHEMA} this code reads; {how}")
  if schema != RUN_SCHEMA:
    raise RunRecordError(f"{path}: schema {schema!r} is not the schema {RUN_SCHEMA} this code "
                         "reads (written by a newer version?)")
  try:
    return check_record(record, path)
  except ValueError as e:
    raise RunRecordError(str(e)) from None
