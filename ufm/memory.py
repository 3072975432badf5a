"""The memory of a `ufm solve`, estimated from the problem's sizes before anything is built.

A solve holds, per seed, the n x d embeddings H with Adam's two moments, the best state seen
(three more), and the gradient, update and projection temporaries of a step: about
`STATE_ARRAYS` n x d arrays in the solve's dtype. The SCL adds the similarities of a batch:
six [rows, b] arrays per seed (b = rows when dense, see `geometry.memory`), with the block
size the solver would pick itself when none is given. The host keeps float64 copies of every
seed's H for result.json and the metrics' n x d differences. `check_solve` compares the sum
with the free memory and refuses, in one line, a solve that cannot fit, saying what does.
"""

from __future__ import annotations

import dataclasses

from geometry import memory as memory_lib
from ufm.problem import ProblemError

STATE_ARRAYS = 14
GIB = memory_lib.GIB
# Below this the estimate is not refined with the solver's own block-size rule (which imports
# JAX): such a solve fits anywhere this code runs.
_SMALL = 1 << 30


@dataclasses.dataclass(frozen=True)
class Estimate:
  state: int     # embeddings, Adam moments, best state and step temporaries (device)
  pairs: int     # SCL similarities of one batch (device)
  host: int      # float64 copies for the outputs and the metrics, labels
  block_size: int | None

  @property
  def total(self) -> int:
    return self.state + self.pairs + self.host


def estimate(rows: int, dim: int, *, seeds: int, itemsize: int, batch_rows: int | None = None,
             block_size: int | None = None, loss: str = "scl", num_classes: int = 2,
             memory: int | None = None, auto_block=None) -> Estimate:
  """The memory of a solve of `rows` examples in dimension `dim` (see the module docstring).

  Args:
    batch_rows: rows of one batch (binding rows included); None for full batch.
    block_size: the streaming block size asked for; None lets the solver choose, through
      `auto_block(rows, itemsize, seeds, memory)` (default: `ufm.solver.auto_block_size`).
    memory: the free memory the solver's choice is made against (default: the device's).
  """
  batch = rows if batch_rows is None else min(batch_rows, rows)
  state = STATE_ARRAYS * seeds * rows * dim * itemsize
  host = 8 * rows * dim * (seeds + 2) + 32 * rows
  if loss != "scl":
    return Estimate(state + 4 * seeds * batch * num_classes * itemsize, 0, host, None)
  dense = memory_lib.scl_pair_bytes(batch, batch, itemsize) * seeds
  if block_size is None and state + host + dense > _SMALL:
    if auto_block is None:
      from ufm.solver import auto_block_size as auto_block  # pylint: disable=g-import-not-at-top
    memory = memory_lib.device_available_bytes() if memory is None else memory
    block_size = auto_block(batch, itemsize, seeds, memory)
  block = batch if block_size is None else min(block_size, batch)
  pairs = memory_lib.scl_pair_bytes(batch, block, itemsize) * seeds
  return Estimate(state, pairs, host, None if block >= batch else block)


def check_solve(rows: int, dim: int, *, seeds: int, dtype: str, batch_rows: int | None = None,
                block_size: int | None = None, loss: str = "scl", num_classes: int = 2,
                memory: int | None = None, auto_block=None) -> Estimate:
  """Raises `ProblemError` (one line: the need, the free memory, what fits) when the solve
  cannot fit in `memory` (default: the free memory of the device)."""
  itemsize = 8 if dtype == "float64" else 4
  common = dict(batch_rows=batch_rows, loss=loss, num_classes=num_classes,
                auto_block=auto_block)

  def need(s=seeds, size=itemsize, block=block_size, mem=memory):
    return estimate(rows, dim, seeds=s, itemsize=size, block_size=block, memory=mem, **common)

  first = need()
  if first.total <= _SMALL:
    return first
  memory = memory_lib.device_available_bytes() if memory is None else memory
  found = need(mem=memory)
  if found.total <= memory:
    return found
  advice = []
  fitting = [s for s in range(seeds - 1, 0, -1) if need(s=s, mem=memory).total <= memory][:1]
  if fitting:
    advice.append(f"at most {fitting[0]} seed(s) fit (--seeds {fitting[0]})")
  if dtype == "float64" and need(size=4, mem=memory).total <= memory:
    advice.append("--dtype float32 fits")
  if loss == "scl" and found.pairs > found.state:
    for block in (4096, 1024, 256, 64, 16):
      if need(block=block, mem=memory).total <= memory:
        advice.append(f"--block-size {block} fits")
        break
  if not advice:
    smallest = estimate(rows, dim, seeds=1, itemsize=4, block_size=16, **common).total
    advice.append(f"even one seed in float32 needs {smallest / GIB:.1f} GiB: use fewer "
                  "examples or a smaller --dim")
  rows_text = f"{rows:,}".replace(",", "_")
  raise ProblemError(
      f"this solve needs about {found.total / GIB:.1f} GiB ({seeds} seed(s) x {rows_text} rows "
      f"x d={dim} in {dtype}: {found.state / GIB:.1f} GiB of embeddings and optimiser state, "
      f"{found.pairs / GIB:.1f} GiB of similarities, {found.host / GIB:.1f} GiB on the host) "
      f"but {memory / GIB:.1f} GiB is free; " + "; ".join(advice))
