"""The memory of a `ufm solve`, estimated from the problem's sizes before anything is built.

A solve holds, per seed, the n x d embeddings H with Adam's two moments, the best state seen
(three more), and the gradient, update and projection temporaries of a step: about
`STATE_ARRAYS` n x d arrays in the solve's dtype. The SCL adds the similarities of a batch:
six [rows, b] arrays per seed (b = rows when dense, see `geometry.memory`), with the block
size the solver would pick itself when none is given. The host keeps float64 copies of every
seed's H for result.json and the metrics' n x d differences. `check_solve` compares the sum
with the free memory and refuses, in one line, a solve that cannot fit, saying what does.

Every check is arithmetic on the sizes, so a refusal takes the same time whatever the
numbers: the seed advice solves the estimate for the seed count (it is affine in the seeds for
a given block size), and `fewest_rows` bounds the rows of a `--classes` recipe before its
per-class list exists.
"""

from __future__ import annotations

import dataclasses
import math

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
  fitting = most_seeds(lambda s: need(s=s, mem=memory), seeds - 1, memory,
                       affine=loss != "scl" or block_size is not None)
  if fitting:
    advice.append(f"at most {fitting} seed(s) fit (--seeds {fitting})")
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


def most_seeds(need, upper: int, memory: int, *, affine: bool) -> int:
  """The largest s in [0, upper] whose `need(s)` (an Estimate) fits in `memory` (0: not even
  one seed fits).

  With a fixed block size (or CE) the estimate is affine in the seeds, total(s) = a s + c with
  a = total(2) - total(1) and c = total(1) - a, so s = floor((memory - c) / a). With the
  solver's own block rule the similarity part is not affine (the block shrinks as the seeds
  grow), but the rest is, and the similarities cost >= 0: s is bisected below that part's
  bound, floor((memory - c') / a'), in O(log upper) estimates, never one per seed count.
  """
  first = need(1)
  if upper < 1 or first.total > memory:
    return 0
  second = need(2)
  if affine:
    slope = max(second.total - first.total, 1)
    return int(min(upper, (memory - (first.total - slope)) // slope))
  base = lambda e: e.state + e.host   # pylint: disable=unnecessary-lambda-assignment
  slope = max(base(second) - base(first), 1)
  lo, hi = 1, int(max(1, min(upper, (memory - (base(first) - slope)) // slope)))
  while lo < hi:   # need(lo) fits throughout
    mid = (lo + hi + 1) // 2
    if need(mid).total <= memory:
      lo = mid
    else:
      hi = mid - 1
  return lo


def fewest_rows(num_classes: int, kind: str, ratio: float, n_max: int, rho: float) -> int:
  """A lower bound on the rows sum_c n_c of a `--classes` recipe (docs/theory.md#data-protocol),
  from K, n_max and R alone (no per-class list): exact for `none` (K n_max) and `step`
  (floor(rho K) n_max + (K - floor(rho K)) floor(n_max / R)); for `exp`, every
  n_c = floor(n_max R^(-c/(K-1))) >= floor(n_max / R), so K floor(n_max / R)."""
  if kind == "none":
    return num_classes * n_max
  minority = int(math.floor(n_max / ratio))
  if kind == "step":
    major = int(math.floor(rho * num_classes))
    return major * n_max + (num_classes - major) * minority
  return num_classes * minority
