"""Units of deepnet.workdir and deepnet.checkpoints, without training: the lock, the metrics
rewrite, checksum verification and the checkpoint fallback order."""

import json
import os

import jax
import numpy as np
import pytest

from deepnet import checkpoints
from deepnet import workdir as workdir_lib


def test_lock_is_exclusive_and_released(tmp_path):
  first = workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  assert workdir_lib.lock_holder(str(tmp_path))["pid"] == os.getpid()
  with pytest.raises(workdir_lib.WorkdirBusy, match=f"in use by pid {os.getpid()}"):
    workdir_lib.WorkdirLock(str(tmp_path)).acquire()
  first.release()
  assert workdir_lib.lock_holder(str(tmp_path)) is None
  # A lock file naming a process that is gone (as a kill -9 leaves it) blocks nothing.
  (tmp_path / workdir_lib.LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7}))
  with workdir_lib.WorkdirLock(str(tmp_path)):
    pass


def test_truncate_metrics_keeps_whole_lines_up_to_the_epoch(tmp_path):
  lines = [json.dumps({"epoch": e, "train_loss": 1.0 / e}) for e in (1, 2, 3, 4)]
  path = tmp_path / "metrics.jsonl"
  path.write_text("\n".join(lines) + "\n" + '{"epoch": 5, "train_lo')   # a line cut by a kill
  assert workdir_lib.truncate_metrics(str(tmp_path), 2) == 2
  assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"
  # Nothing to drop: the file is left as it is (same inode, no rewrite).
  inode = path.stat().st_ino
  assert workdir_lib.truncate_metrics(str(tmp_path), 10) == 2
  assert path.stat().st_ino == inode
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_check_usable(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(workdir_lib.WorkdirError, match="is a file"):
    workdir_lib.check_usable(str(tmp_path / "file"))
  with pytest.raises(workdir_lib.WorkdirError, match="which is a file"):
    workdir_lib.check_usable(str(tmp_path / "file" / "a" / "b"))
  workdir_lib.check_usable(str(tmp_path / "new" / "run"))   # creatable: fine
  assert not (tmp_path / "new").exists()                      # and nothing was created


def _tree(step):
  return {"w": np.full((4, 3), float(step), np.float32), "step": np.asarray(step, np.int32)}


def _abstract():
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _tree(0))


def _saved(tmp_path, steps=(1, 2, 3)):
  manager = checkpoints.create_manager(str(tmp_path / "ckpt"))
  for step in steps:
    checkpoints.save(manager, step, _tree(step))
  return manager


def _data_files(folder):
  return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
          if os.path.basename(root) == "d"]


def test_a_flipped_bit_is_detected_and_the_restore_falls_back(tmp_path):
  manager = _saved(tmp_path)
  step3 = os.path.join(str(tmp_path / "ckpt"), "3")
  assert checkpoints.verify_checksums(step3) is None
  victim = max(_data_files(step3), key=os.path.getsize)
  raw = bytearray(open(victim, "rb").read())
  raw[len(raw) // 2] ^= 1
  open(victim, "wb").write(bytes(raw))
  assert "checksum mismatch" in checkpoints.verify_checksums(step3)
  # The save without its checksum file (a kill before it was written) is rejected too.
  os.remove(os.path.join(str(tmp_path / "ckpt"), "2", checkpoints.CHECKSUMS_NAME))
  log = []
  step, tree = checkpoints.restore_latest(manager, _abstract(), log=log.append)
  assert step == 1 and float(tree["w"][0, 0]) == 1.0
  assert len(log) == 2
  assert log[0].startswith("checkpoint 3 is corrupt (checksum mismatch")
  assert log[1].startswith("checkpoint 2 is corrupt (no checksums.sha256")
  assert sorted(os.listdir(str(tmp_path / "ckpt.corrupt"))) == ["2", "3"]
  assert manager.all_steps() == [1]


def test_a_folder_without_any_checksums_is_trusted_as_orbax_restores_it(tmp_path):
  manager = _saved(tmp_path, steps=(1, 2))
  for step in (1, 2):
    os.remove(os.path.join(str(tmp_path / "ckpt"), str(step), checkpoints.CHECKSUMS_NAME))
  step, tree = checkpoints.restore_latest(manager, _abstract(), log=pytest.fail)
  assert step == 2 and int(tree["step"]) == 2


def test_no_checkpoint_that_restores_gives_step_zero(tmp_path):
  manager = _saved(tmp_path, steps=(1,))
  for path in _data_files(os.path.join(str(tmp_path / "ckpt"), "1")):
    os.truncate(path, 0)
  log = []
  assert checkpoints.restore_latest(manager, _abstract(), log=log.append) == (0, None)
  assert log and "no older one is left" in log[0]
