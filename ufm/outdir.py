"""The output folder of `ufm solve`: checked before the work, written as one transaction.

A solve's folder holds `result.json`, `run.json` (the run descriptor of
`geometry.runfiles.run_record`), `embeddings.npy`, `labels.npy`, `gram.png` and, for the
CE-UFM, `classifier.npy`. `result.json` is the completion marker (the sweep runner skips a run
whose marker exists), so the folder follows two rules:

* **Checked first.** `check_out_dir` runs before the solve: an `--out` that is empty, a file,
  lies under a file or cannot be written is refused at once, and so is a folder holding the
  result of *another* problem (a different `problem` in its `result.json`) unless
  `--overwrite` is given. The same problem again (a re-run, perhaps with another step budget
  or more seeds) replaces the earlier result without asking: it answers the same question.
* **One solve at a time.** The check takes the folder's lock (`geometry.folderlock`, the
  trainer's too: `flock` on the folder itself) and holds it until the results are written, so
  a second `ufm solve` into the same folder is refused at once. The kernel drops the lock when
  its process ends, however it ends: a killed solve leaves no stale lock.
* **Marker last, nothing half-written.** `commit_outputs` writes every file into a hidden
  staging folder inside `--out` first; only when all of them are on disk is the old marker
  removed, the old run's files (a stale `classifier.npy` included) removed, the new files
  renamed in, and the new `result.json` renamed in last. A solve killed or out of disk space
  while writing leaves the earlier result as it was; one killed during the renames leaves a
  folder without a marker, which reads as unfinished. No state has a marker whose files
  describe another run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Mapping

from geometry import folderlock
from geometry import runfiles
from ufm.problem import ProblemError

MARKER = "result.json"
# Every file a solve may write; a new solve removes the ones it does not write itself.
OUTPUT_FILES = (MARKER, "run.json", "embeddings.npy", "labels.npy", "classifier.npy",
                "gram.png")
_STAGING = ".staging-"
# The problem fields a refusal names when they differ (the rest are summarised).
_SHOWN = ("loss", "sizes", "dim", "temperature", "final_relu", "batching", "binding", "seed",
          "dtype")


class OutputError(Exception):
  """The results could not be written (disk full, folder gone): reported on one line."""


def _unusable(out: str) -> str | None:
  """Why `out` cannot hold a run folder (None when it can), without creating anything."""
  if not out.strip():
    return "--out is empty: give a folder for the results"
  if os.path.exists(out) and not os.path.isdir(out):
    return f"--out {out} is a file, not a folder"
  parent = os.path.abspath(out)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    return f"--out {out} lies under {parent}, which is a file"
  return None


def check_out_dir(out: str, problem_fields: Mapping, *,
                  overwrite: bool = False) -> folderlock.FolderLock:
  """Makes sure `out` can take the results of the problem `problem_fields` (its `describe()`)
  and locks it for this solve.

  Creates the folder and writes (then removes) a probe file in it, so that a read-only or
  full place is found before the solve rather than after it.

  Returns:
    The folder's lock: keep it until `commit_outputs` is done, then `release()` it.

  Raises:
    ProblemError: one line saying what is wrong with `out` and what to do.
  """
  reason = _unusable(out)
  if reason:
    raise ProblemError(reason)
  try:
    os.makedirs(out, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".probe-", dir=out)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ProblemError(f"--out {out} cannot be written ({e.strerror}); choose another "
                       "folder") from None
  try:
    lock = folderlock.FolderLock(out).acquire()
  except folderlock.FolderBusy:
    raise ProblemError(f"--out {out} is in use by another `ufm solve` (it holds the "
                       "folder's lock); wait for it, or choose another --out") from None
  try:
    _check_marker(out, problem_fields, overwrite)
  except BaseException:
    lock.release()
    raise
  return lock


def _check_marker(out: str, problem_fields: Mapping, overwrite: bool) -> None:
  """Clears a killed solve's staging folders; refuses a result of another problem."""
  _remove_staging(out)
  marker = os.path.join(out, MARKER)
  if not os.path.exists(marker) or overwrite:
    return
  try:
    earlier = runfiles.read_json(marker)
  except ValueError as e:
    raise ProblemError(f"--out {out} holds a result.json that cannot be read ({e}); use "
                       "--overwrite to replace it, or choose another --out") from None
  wanted = runfiles.to_json(dict(problem_fields))
  held = earlier.get("problem") if isinstance(earlier, dict) else None
  if held == wanted:
    return
  raise ProblemError(f"--out {out} holds the result of another problem ({_difference(held, wanted)}); "
                     "use --overwrite to replace it (its files are removed), or choose "
                     "another --out")


def _difference(held, wanted: dict) -> str:
  if not isinstance(held, dict):
    return "its result.json has no problem definition"
  keys = [k for k in _SHOWN if held.get(k) != wanted.get(k)]
  keys = keys or sorted(k for k in set(held) | set(wanted) if held.get(k) != wanted.get(k))
  return ", ".join(f"{k} {_short(held.get(k))} there, {_short(wanted.get(k))} here"
                   for k in keys[:3])


def _short(value) -> str:
  text = runfiles.dumps(value, indent=None)
  return text if len(text) <= 40 else text[:37] + "..."


def _remove_staging(out: str) -> None:
  """Removes the staging folders a killed solve left behind."""
  for name in os.listdir(out):
    if name.startswith(_STAGING):
      shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def commit_outputs(out: str, files: Mapping[str, Callable], result: Mapping) -> None:
  """Writes the run's files and then its marker `result.json` into `out` (see the module
  docstring for the order and what a kill at any point leaves).

  Args:
    out: the output folder (checked by `check_out_dir`).
    files: file name -> `writer(binary_file)`, for every file but the marker.
    result: the `result.json` dictionary (strict JSON, see `geometry.runfiles`).

  Raises:
    OutputError: a file could not be written; `out` is then as it was before.
  """
  try:
    os.makedirs(out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=_STAGING, dir=out)
  except OSError as e:
    raise OutputError(f"cannot write the results to {out}: {e.strerror}") from None
  try:
    for name, write in files.items():
      _write_synced(os.path.join(staging, name), write)
    text = runfiles.dumps(result) + "\n"
    _write_synced(os.path.join(staging, MARKER), lambda f: f.write(text.encode()))
  except BaseException as e:
    shutil.rmtree(staging, ignore_errors=True)
    if isinstance(e, OSError):
      raise OutputError(f"cannot write the results to {out}: {e.strerror or e}; "
                        f"nothing in {out} was changed") from None
    raise
  # Renames within one folder need no space: from here on nothing can fail for lack of it.
  with contextlib.suppress(FileNotFoundError):
    os.remove(os.path.join(out, MARKER))
  for name in OUTPUT_FILES:
    if name != MARKER and name not in files:
      with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(out, name))
  for name in files:
    os.replace(os.path.join(staging, name), os.path.join(out, name))
  os.replace(os.path.join(staging, MARKER), os.path.join(out, MARKER))
  shutil.rmtree(staging, ignore_errors=True)


def _write_synced(path: str, write: Callable) -> None:
  with open(path, "wb") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
