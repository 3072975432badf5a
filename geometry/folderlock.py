"""One writer per run folder: an exclusive lock on the folder itself.

Both halves lock their run folder here (`ufm solve` its ``--out``, the trainer its workdir), so
the two follow one rule:

* The lock is an advisory ``fcntl.flock`` on the folder (opened read-only), taken without
  waiting: a second process is refused at once rather than queued behind a run of hours.
* The kernel drops it when its holder's process ends, however it ends (``kill -9`` included),
  so a dead process never leaves a stale lock, and nothing has to be cleaned up by hand.
* A holder may record itself (pid, host, start time, command) in a file of the folder, which a
  refused process and `holder` read to name it. The record only names: it is the flock, not
  the file, that says the folder is in use, so a record left by a dead holder blocks nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time

from geometry import runfiles


class FolderBusy(OSError):
  """Another live process holds the folder's lock; ``holder`` is its record ({} if none)."""

  def __init__(self, folder: str, holder: dict):
    super().__init__(errno.EWOULDBLOCK, f"{folder} is in use by {describe_holder(holder)}")
    self.folder = folder
    self.holder = holder


class FolderLock:
  """An exclusive, non-blocking lock on ``folder`` (created when missing), held from
  ``acquire()`` to ``release()``, the end of a ``with`` block, or the end of the process
  (not the end of the object: a lock whose object is dropped stays held).

  Args:
    folder: the run folder.
    record: a file name in ``folder`` where the holder records itself (None: no record).
  """

  _fd = None

  def __init__(self, folder: str | os.PathLike, *, record: str | None = None):
    self.folder = os.fspath(folder)
    self.record = record

  def acquire(self) -> "FolderLock":
    """Takes the lock, or raises FolderBusy naming its holder."""
    os.makedirs(self.folder, exist_ok=True)
    fd = os.open(self.folder, os.O_RDONLY)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise FolderBusy(self.folder, _read_record(self.folder, self.record)) from None
      raise
    self._fd = fd
    if self.record is not None:
      self._write_record()
    return self

  def _write_record(self) -> None:
    """Names this process in the record; a disk too full for it only costs the name (a stale
    record is removed instead), never the lock: a finished run must restart on a full disk."""
    path = os.path.join(self.folder, self.record)
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": " ".join(sys.argv)}
    try:
      runfiles.write_json(path, holder, indent=None)
    except OSError:
      with contextlib.suppress(OSError):
        os.remove(path)

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)   # closing the descriptor drops the lock
      self._fd = None

  def __enter__(self) -> "FolderLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def holder(folder: str | os.PathLike, record: str | None = None) -> dict | None:
  """The record of the live process that holds ``folder``'s lock ({"pid": None} when it left
  none), or None when no process holds it. Takes a shared lock for an instant when the folder
  is free, so it never blocks; a missing folder is free."""
  folder = os.fspath(folder)
  try:
    fd = os.open(folder, os.O_RDONLY)
  except OSError:
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return _read_record(folder, record) or {"pid": None}
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)


def describe_holder(holder: dict) -> str:
  """One phrase naming a lock holder: "pid 123 on HOST since TIME (COMMAND)"."""
  parts = [f"pid {holder.get('pid') or '?'}"]
  if holder.get("host"):
    parts.append(f"on {holder['host']}")
  if holder.get("started_at"):
    parts.append(f"since {holder['started_at']}")
  text = " ".join(parts)
  if holder.get("command"):
    text += f" ({str(holder['command'])[:200]})"
  return text


def _read_record(folder: str, record: str | None) -> dict:
  if record is None:
    return {}
  try:
    with open(os.path.join(folder, record), "rb") as f:
      value = json.loads(f.read(1 << 16).decode("utf-8", "replace"))
  except (OSError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}
