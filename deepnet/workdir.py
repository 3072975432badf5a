"""The workdir of a training run: usability check, exclusive lock, the metrics file, and the
run's other files (config.json, run.json, embeddings_final.npz).

Guarantees (``docs/faults_training.md`` lists the tests that show them):

* ``check_usable(path)`` finds a workdir that cannot be written (a file, a folder under a file,
  a read-only folder) before any work is done.
* ``WorkdirLock`` makes one process the only writer of a workdir. It is the run folders' lock
  of `geometry.folderlock`, an advisory ``fcntl.flock`` on the workdir, which the kernel
  releases when its holder exits in any way (``kill -9`` included), so a lock left by a dead
  process never blocks a resume. ``WORKDIR/.lock`` holds the holder's pid, host, start time
  and command, which a refused process names.
* ``metrics.jsonl`` is appended one fsync'ed line at a time, and the rewrite on resume (keeping
  the lines of the epochs up to the checkpoint) goes through a temporary file and an atomic
  rename: a run killed at any moment leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

from geometry import folderlock
from geometry import runfiles

LOCK_NAME = ".lock"
METRICS_NAME = "metrics.jsonl"

# Config fields that may change between a run and its resumption without changing a number.
RESUME_IGNORED_KEYS = ("distributed", "checkpoint_every_epochs", "eval_batch_size",
                       "data.data_dir", "data.download", "tensorboard", "compilation_cache_dir",
                       "data.source")


class WorkdirError(ValueError):
  """A workdir that cannot be used: not a folder, not writable, or in use by another process."""


class WorkdirBusy(WorkdirError):
  """Another live process holds the workdir's lock."""


def check_usable(path: str) -> None:
  """Raises WorkdirError unless ``path`` is (or can be created as) a writable folder.

  Creates nothing: the nearest existing ancestor must be a folder that this process may write
  into, and ``path`` itself, when it exists, must be a writable folder.
  """
  path = os.path.abspath(path)
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise WorkdirError(f"workdir {path} is a file, not a folder; pass another --workdir")
    if not os.access(path, os.W_OK | os.X_OK):
      raise WorkdirError(f"workdir {path} is not writable; pass another --workdir or fix its "
                         "permissions")
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise WorkdirError(f"workdir {path} lies under {parent}, which is a file; pass another "
                       "--workdir")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise WorkdirError(f"workdir {path} cannot be created: {parent} is not writable; pass "
                       "another --workdir")


class WorkdirLock(folderlock.FolderLock):
  """The workdir's lock (`geometry.folderlock`: ``flock`` on the workdir itself, the one of
  ``ufm solve`` too), its holder recorded in ``WORKDIR/.lock``, held for the lifetime of a run.

  ``acquire()`` raises WorkdirBusy naming the holder when a live process has it; use as a
  context manager or call ``release()``.
  """

  def __init__(self, workdir: str):
    super().__init__(os.path.abspath(workdir), record=LOCK_NAME)

  def acquire(self) -> "WorkdirLock":
    try:
      return super().acquire()
    except folderlock.FolderBusy as e:
      raise WorkdirBusy(f"workdir {self.folder} is in use by "
                        f"{folderlock.describe_holder(e.holder)}; wait for it to finish or "
                        "stop it, or pass another --workdir") from None


def lock_holder(workdir: str) -> dict | None:
  """The holder of ``workdir``'s lock (pid, host, started_at, command) while a live process
  holds it, else None; never blocks."""
  return folderlock.holder(os.path.abspath(workdir), LOCK_NAME)


def describe_holder(holder: dict) -> str:
  """One phrase naming a lock holder ("pid 123 on host since ... (command)")."""
  return folderlock.describe_holder(holder)


# ----------------------------------------------------------------------------------------------
# metrics.jsonl


def append_metrics(workdir: str, record: dict) -> None:
  """Appends one strict-JSON line to ``WORKDIR/metrics.jsonl`` and syncs it to disk."""
  line = runfiles.dumps(record, indent=None) + "\n"
  path = os.path.join(workdir, METRICS_NAME)
  try:
    with open(path, "a") as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    # A failed write() names no file; the one-line report should.
    raise OSError(e.errno, f"{e.strerror or e} while appending to {path}") from e


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``WORKDIR/metrics.jsonl`` up to the first line that does not parse (a line
  cut by a kill); [] when there is no file."""
  records = []
  try:
    lines = runfiles.read_jsonl(os.path.join(workdir, METRICS_NAME))
  except FileNotFoundError:
    return []
  for _, record, _ in lines:
    if record is None:
      break
    records.append(record)
  return records


def _write_lines(path: str, lines: Iterable[str]) -> None:
  """The whole file replaced atomically (``runfiles.atomic_open``: temp file, fsync, rename)."""
  with runfiles.atomic_open(path, "w") as f:
    for line in lines:
      f.write(line + "\n")


def truncate_metrics(workdir: str, last_epoch: int) -> int:
  """Keeps the metrics lines of epochs <= ``last_epoch`` (those after the checkpoint are
  recomputed, so the file ends up equal to an uninterrupted run's); returns how many are kept.

  The file is rewritten only when something is dropped, and atomically.
  """
  path = os.path.join(workdir, METRICS_NAME)
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    raw = f.read()
  records = read_metrics(workdir)
  kept = [r for r in records if int(r.get("epoch", 0)) <= last_epoch]
  text = "".join(json.dumps(r) + "\n" for r in kept)
  if text.encode() != raw:
    _write_lines(path, (json.dumps(r) for r in kept))
  return len(kept)


# ----------------------------------------------------------------------------------------------
# config.json, run.json and embeddings_final.npz


def prepare(workdir: str, config: dict, descriptor: dict, *, main: bool) -> None:
  """Checks that an existing ``config.json`` describes the same run as ``config`` (the
  fields of ``RESUME_IGNORED_KEYS`` aside), else raises WorkdirError naming
  the differing fields; then (``main``: the process that owns the files) writes config.json
  and ``run.json`` (``descriptor``, a ``geometry.runfiles.run_record``)."""
  check_config(workdir, config)
  if main:
    path = os.path.join(workdir, "config.json")
    os.makedirs(workdir, exist_ok=True)
    runfiles.write_json(path, config, indent=2, sort_keys=True)
  write_run_record(workdir, descriptor, main=main)


def write_run_record(workdir: str, descriptor: dict, *, main: bool) -> None:
  """Writes ``workdir/run.json`` (``descriptor``), atomically, on the main process only."""
  if main:
    runfiles.write_json(os.path.join(workdir, "run.json"), descriptor, indent=2,
                        sort_keys=True)


def check_config(workdir: str, config: dict) -> None:
  """Raises WorkdirError when ``workdir/config.json`` exists and describes another run than
  ``config`` (the fields of ``RESUME_IGNORED_KEYS`` aside). Writes nothing."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      stored = runfiles.read_json(path)
    except ValueError as e:
      raise WorkdirError(f"{e}; remove it (or the workdir) to start this run afresh") from None
    diff = resume_diff(stored, config)
    if diff:
      raise WorkdirError(
          f"workdir {workdir} holds a run with a different config (differs in: "
          f"{', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''}); use another --workdir "
          "or remove that one")


def finished_record(workdir: str, num_epochs: int) -> dict | None:
  """The last metrics line when ``workdir`` holds a finished run (its metrics.jsonl ends with
  epoch ``num_epochs`` and embeddings_final.npz, written only after the last epoch, exists),
  else None. Reads only: a finished run started again must succeed whatever the disk."""
  if not os.path.exists(os.path.join(workdir, "embeddings_final.npz")):
    return None
  records = read_metrics(workdir)
  if records and int(records[-1].get("epoch", -1)) == int(num_epochs):
    return records[-1]
  return None


def save_embeddings(workdir: str, **arrays) -> None:
  """Writes ``WORKDIR/embeddings_final.npz`` (``np.savez`` of ``arrays``) atomically."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with runfiles.atomic_open(os.path.join(workdir, "embeddings_final.npz"), "wb") as f:
    np.savez(f, **arrays)


def _without_keys(tree: dict, dotted: Sequence[str]) -> dict:
  tree = json.loads(json.dumps(tree))
  for key in dotted:
    node, *parts = [tree] + key.split(".")
    for part in parts[:-1]:
      node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
      node.pop(parts[-1], None)
  return tree


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    keys = sorted(set(a) | set(b))
    return [k for key in keys for k in _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
  return [] if a == b else [prefix[:-1]]


def resume_diff(stored: dict, current: dict) -> list[str]:
  """The dotted fields in which two configs (as ``config_to_dict``) describe different runs
  (``RESUME_IGNORED_KEYS`` aside)."""
  return _diff_keys(_without_keys(stored, RESUME_IGNORED_KEYS),
                    _without_keys(current, RESUME_IGNORED_KEYS))
