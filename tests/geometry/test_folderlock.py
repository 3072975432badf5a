"""geometry.folderlock: one writer per run folder (the lock of `ufm solve` and the trainer)."""

import errno
import json
import os
import subprocess
import sys

import pytest

from geometry import folderlock
from geometry import runfiles

# Another process takes the flock on the folder itself, as any holder of a FolderLock does.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_the_lock_is_exclusive_names_its_holder_and_is_released(tmp_path):
  folder = tmp_path / "run"
  first = folderlock.FolderLock(folder, record=".lock").acquire()
  record = json.loads((folder / ".lock").read_text())
  assert record["pid"] == os.getpid() and record["command"]
  assert folderlock.holder(folder, ".lock") == record
  with pytest.raises(folderlock.FolderBusy) as info:
    folderlock.FolderLock(folder, record=".lock").acquire()
  assert info.value.holder == record and f"in use by pid {os.getpid()}" in str(info.value)
  first.release()
  assert folderlock.holder(folder, ".lock") is None
  with folderlock.FolderLock(folder):   # the record left behind blocks nothing
    assert folderlock.holder(folder) == {"pid": None}


def test_a_lock_held_by_another_process_is_the_same_lock_and_dies_with_it(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(folderlock.FolderBusy) as info:
      folderlock.FolderLock(tmp_path, record=".lock").acquire()
    assert info.value.holder == {} and "pid ?" in str(info.value)
    assert folderlock.holder(tmp_path, ".lock") == {"pid": None}
  finally:
    holder.kill()   # SIGKILL: the kernel drops the lock, nothing is cleaned up by the holder
    holder.wait()
  assert folderlock.holder(tmp_path, ".lock") is None
  folderlock.FolderLock(tmp_path, record=".lock").acquire().release()


def test_a_record_that_cannot_be_written_costs_the_name_not_the_lock(tmp_path, monkeypatch):
  (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 7}))   # an earlier holder's

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(runfiles, "write_json", full)
  lock = folderlock.FolderLock(tmp_path, record=".lock").acquire()
  assert not (tmp_path / ".lock").exists()   # no stale name for a refused process to show
  assert folderlock.holder(tmp_path, ".lock") == {"pid": None}
  lock.release()


def test_describe_holder():
  assert folderlock.describe_holder({"pid": 12, "host": "h", "started_at": "T",
                                     "command": "scl-train"}) == "pid 12 on h since T (scl-train)"
  assert folderlock.describe_holder({}) == "pid ?"
