"""Checkpoints of a training run: orbax saves with a checksum file, and a restore that falls
back to the newest checkpoint that verifies.

A checkpoint is orbax's step folder ``DIR/<step>/`` (saved synchronously, so it is complete
once ``save`` returns) plus ``DIR/<step>/checksums.sha256``: the SHA-256 of every file of the
step, in the format of ``sha256sum`` (so ``cd DIR/<step> && sha256sum -c checksums.sha256``
checks one by hand). orbax itself detects a truncated or missing file only sometimes and a
flipped bit never; the checksums detect both before anything is restored.

``restore_latest`` walks the steps from the newest down. A step whose checksums do not match,
or that orbax cannot restore, or that the caller's ``check`` rejects, is moved aside to
``DIR.corrupt/<step>`` (kept for inspection, out of orbax's way so the step can be saved again)
with one line saying so, and the next older step is tried. A step without a checksum file
is an interrupted save (a kill during orbax's write or before the checksum write) and is moved
aside too, unless no step of the folder has one (a folder written before checksums existed).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import time
from typing import Any, Callable

from geometry import runfiles

CHECKSUMS_NAME = "checksums.sha256"


class CheckpointError(RuntimeError):
  """A checkpoint that does not restore or does not verify."""


@contextlib.contextmanager
def _quiet_orbax(level: int = logging.ERROR):
  """orbax logs (through absl) what this module reports itself in one line: a step folder
  left incomplete by a kill, and a failed write once per worker thread."""
  absl_logger = logging.getLogger("absl")
  previous = absl_logger.level
  absl_logger.setLevel(max(level, previous))
  try:
    yield
  finally:
    absl_logger.setLevel(previous)


def create_manager(directory: str, *, max_to_keep: int = 3):
  """A synchronous orbax CheckpointManager over ``directory`` (created when missing)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  with _quiet_orbax():
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _step_dir(manager, step: int) -> str:
  return os.path.join(os.fspath(manager.directory), str(step))


def _file_digests(folder: str) -> dict[str, str]:
  digests = {}
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, folder)
      if rel == CHECKSUMS_NAME:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      digests[rel] = h.hexdigest()
  return digests


def write_checksums(folder: str) -> None:
  """Writes ``folder/checksums.sha256`` (sha256sum format) over every other file of it."""
  from geometry import runfiles  # pylint: disable=g-import-not-at-top
  digests = _file_digests(folder)
  runfiles.write_text(os.path.join(folder, CHECKSUMS_NAME),
                      "".join(f"{d}  {rel}\n" for rel, d in sorted(digests.items())))


def verify_checksums(folder: str) -> str | None:
  """None when ``folder``'s files match its checksum file (or it has none), else the reason."""
  path = os.path.join(folder, CHECKSUMS_NAME)
  if not os.path.exists(path):
    return None
  expected = {}
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          digest, rel = line.rstrip("\n").split("  ", 1)
          expected[rel] = digest
  except (OSError, ValueError, UnicodeDecodeError) as e:
    return f"unreadable {CHECKSUMS_NAME} ({e})"
  actual = _file_digests(folder)
  missing = sorted(set(expected) - set(actual))
  if missing:
    return f"missing file {missing[0]}"
  changed = sorted(rel for rel in expected if actual[rel] != expected[rel])
  if changed:
    return f"checksum mismatch in {changed[0]}"
  return None


def _folder_bytes(folder: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(folder) for name in names)


def _check_space(manager, step: int, tree: Any) -> None:
  """Refuses a save that cannot fit before orbax starts it: a write that fails inside
  orbax's writer threads is reported by each of them (a traceback per thread) besides our one
  line. The estimate is the newest checkpoint's size, else the arrays' bytes, plus a margin."""
  import jax  # pylint: disable=g-import-not-at-top
  root = os.fspath(manager.directory)
  steps = sorted(manager.all_steps())
  need = (_folder_bytes(_step_dir(manager, steps[-1])) if steps else
          sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(tree)))
  runfiles.check_free_space(root, int(need * 1.25) + (64 << 10), f"checkpoint {step}")


def save(manager, step: int, tree: Any, *, write_sums: bool = True) -> None:
  """Saves ``tree`` (a pytree of arrays) as ``step``, waits for it, then writes its checksums
  (``write_sums``: on the process that writes the run's files)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  _check_space(manager, step, tree)
  try:
    with _quiet_orbax(logging.CRITICAL):
      manager.save(step, args=ocp.args.StandardSave(tree), force=True)
      manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    text = str(e)
    if "No space left on device" in text or "os_error_code='28'" in text:
      raise OSError(errno.ENOSPC, f"No space left on device while saving checkpoint {step} "
                    f"in {os.fspath(manager.directory)}") from None
    raise
  if write_sums:
    write_checksums(_step_dir(manager, step))


def _move_aside(manager, step: int) -> str:
  root = os.fspath(manager.directory)
  target_root = root.rstrip(os.sep) + ".corrupt"
  os.makedirs(target_root, exist_ok=True)
  target = os.path.join(target_root, str(step))
  if os.path.exists(target):
    target = f"{target}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
  shutil.move(_step_dir(manager, step), target)
  manager.reload()
  return target


def _one_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  text = text or type(error).__name__
  return text if len(text) <= 160 else text[:157] + "..."


def restore_latest(manager, abstract: Any, *, check: Callable[[int, Any], str | None] | None
                   = None, log: Callable[[str], None] = print, what: str = "checkpoint",
                   move_aside: bool = True) -> tuple[int, Any]:
  """(step, tree) of the newest step that verifies and restores, or (0, None) when none does.

  ``abstract`` is the pytree of ``jax.ShapeDtypeStruct`` to restore into; ``check(step, tree)``
  returns a reason to reject a restored tree (None to accept). Each rejected step is reported
  in one line through ``log`` and moved aside (``move_aside``; only the process that owns the
  files should move them). Once any step has a checksum file, a step without one is an
  interrupted save and is rejected; a folder where none has one (written before checksums
  existed) is trusted as far as orbax restores it.
  """
  with _quiet_orbax():
    return _restore_latest(manager, abstract, check, log, what, move_aside)


def _restore_latest(manager, abstract, check, log, what, move_aside):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  summed = any(os.path.exists(os.path.join(_step_dir(manager, s), CHECKSUMS_NAME))
               for s in manager.all_steps())
  for step in sorted(manager.all_steps(), reverse=True):
    folder = _step_dir(manager, step)
    reason = verify_checksums(folder)
    if reason is None and summed and not os.path.exists(os.path.join(folder, CHECKSUMS_NAME)):
      reason = f"no {CHECKSUMS_NAME}: its save was interrupted"
    tree = None
    if reason is None:
      try:
        tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except
        # orbax/tensorstore raise many types for unreadable data; all mean "not this one".
        reason = f"does not restore ({type(e).__name__}: {_one_line(e)})"
    if reason is None and check is not None:
      reason = check(step, tree)
    if reason is None:
      return step, tree
    older = [s for s in manager.all_steps() if s < step]
    where = ""
    if move_aside:
      where = f", moved to {_move_aside(manager, step)}"
    log(f"{what} {step} is corrupt ({reason}){where}; "
        + (f"falling back to {what} {max(older)}" if older else "no older one is left"))
  return 0, None


def delete_all(manager) -> None:
  """Removes every step of ``manager`` (a checkpoint superseded by a newer one elsewhere)."""
  for step in manager.all_steps():
    manager.delete(step)


# ----------------------------------------------------------------------------------------------
# The train state of a run: epoch checkpoints in WORKDIR/checkpoints/<epoch>, and the mid-epoch
# checkpoint of a stopped run in WORKDIR/checkpoints_preempted/<step>.

EPOCHS_DIR = "checkpoints"
PREEMPTED_DIR = "checkpoints_preempted"


def _abstract(tree, sharding):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                      tree)


def save_epoch(workdir: str, manager, epoch: int, state, *, main: bool) -> None:
  """Saves ``state`` (a flax struct) as the checkpoint of ``epoch``; an epoch checkpoint
  supersedes any mid-epoch one before it, which is removed (``main``: the process that
  owns the files)."""
  import flax  # pylint: disable=g-import-not-at-top
  save(manager, epoch, flax.serialization.to_state_dict(state), write_sums=main)
  if main and os.path.isdir(os.path.join(workdir, PREEMPTED_DIR)):
    preempted = create_manager(os.path.join(workdir, PREEMPTED_DIR), max_to_keep=1)
    delete_all(preempted)
    preempted.close()


def epoch_saved(workdir: str, epoch: int) -> bool:
  """Whether ``epoch``'s checkpoint in ``workdir`` was saved whole: its checksums file is
  written last (`save`), so it exists only after every array is on disk. Reads only."""
  return os.path.exists(os.path.join(workdir, EPOCHS_DIR, str(epoch), CHECKSUMS_NAME))


def restore_epoch(manager, template, *, sharding, steps_per_epoch: int, log,
                  main: bool) -> tuple[int, Any]:
  """(epoch, state) of the newest epoch checkpoint that verifies, restores and holds step
  epoch * S; (0, template) when there is none. Corrupt ones are reported and moved aside."""
  import flax  # pylint: disable=g-import-not-at-top

  def check(epoch, tree):
    import numpy as np  # pylint: disable=g-import-not-at-top
    step = int(np.asarray(tree["step"]))
    want = epoch * steps_per_epoch
    return None if step == want else f"holds step {step}, expected {want}"

  epoch, restored = restore_latest(
      manager, _abstract(flax.serialization.to_state_dict(template), sharding), check=check,
      log=log, what="checkpoint of epoch", move_aside=main)
  if restored is None:
    return 0, template
  return epoch, flax.serialization.from_state_dict(template, restored)


def restore_preempted(workdir: str, template, *, sharding, after_step: int, log, main: bool):
  """(state, loss_sum) of a mid-epoch checkpoint newer than ``after_step``, else None."""
  import flax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.join(workdir, PREEMPTED_DIR)):
    return None
  manager = create_manager(os.path.join(workdir, PREEMPTED_DIR), max_to_keep=1)
  abstract = {"state": _abstract(flax.serialization.to_state_dict(template), sharding),
              "loss_sum": _abstract(np.zeros((), np.float32), sharding)}

  def check(step, tree):
    held = int(np.asarray(tree["state"]["step"]))
    return None if held == step else f"holds step {held}, expected {step}"

  step, restored = restore_latest(manager, abstract, check=check, log=log,
                                  what="mid-epoch checkpoint of step", move_aside=main)
  manager.close()
  if restored is None or step <= after_step:
    return None
  return (flax.serialization.from_state_dict(template, restored["state"]),
          restored["loss_sum"])


def save_preempted(workdir: str, state, loss_sum, *, main: bool) -> None:
  """Saves the mid-epoch ``(state, loss_sum)`` of a stopped run under its step."""
  import flax  # pylint: disable=g-import-not-at-top
  manager = create_manager(os.path.join(workdir, PREEMPTED_DIR), max_to_keep=1)
  save(manager, int(state.step), {"state": flax.serialization.to_state_dict(state),
                                  "loss_sum": loss_sum}, write_sums=main)
  manager.close()
