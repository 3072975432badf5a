"""Monte Carlo of the trainer's reshuffled drop-last batching, for the batching advisor.

``simulate`` runs `trials` independent training runs epoch by epoch, vectorised over trials,
and records the first epoch's certificate (C1, C2 of ``geometry.batching.BatchCertificate``)
and the first epoch whose union of batches certifies. The union is kept incrementally as
connected components over epochs (``docs/batching.md``). ``geometry.advisor`` turns the draws
into estimates with intervals.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

DEFAULT_TRIALS = 400
DEFAULT_MAX_EPOCHS = 2000


def epoch_shape(sizes: Sequence[int], batch_size: int) -> tuple[int, int]:
  """(m, r): the number of batches of one drop-last epoch and the examples it drops."""
  n = int(sum(sizes))
  return n // batch_size, n % batch_size


def check_setup(sizes, batch_size, views, binding):
  sizes = [int(s) for s in sizes]
  if len(sizes) < 2 or min(sizes) < 1:
    raise ValueError(f"need >= 2 classes of positive size, got {sizes}")
  if batch_size < 2:
    raise ValueError(f"batch size must be >= 2, got {batch_size}")
  if batch_size > sum(sizes):
    raise ValueError(f"batch size {batch_size} exceeds the {sum(sizes)} examples")
  if views < 1:
    raise ValueError(f"views must be >= 1, got {views}")
  if binding < 0 or binding > min(sizes):
    raise ValueError(f"binding {binding} per class must be in [0, {min(sizes)}] (the smallest "
                     "class)")
  return sizes


def _positions(rng, n: int, s: int, trials: int) -> np.ndarray:
  """[trials, s] positions of s given examples in independent uniform permutations of n.

  The positions of s fixed examples under a uniform permutation are a uniform ordered s-sample
  of [0, n) without replacement: a whole permutation when s is a large share of n, Floyd's
  sampling (``Generator.choice``) per trial otherwise.
  """
  if 4 * s >= n:
    return rng.permuted(np.broadcast_to(np.arange(n), (trials, n)), axis=1)[:, :s]
  return np.stack([rng.choice(n, s, replace=False) for _ in range(trials)])


def _occupied(keys: np.ndarray, size: int):
  """(cells, counts, inverse): the distinct values of `keys` (all in [0, size)) sorted, their
  counts, and each key's index into cells; by a ``bincount`` when `size` is not much larger
  than the number of keys, else by sorting them."""
  if size <= 8 * len(keys):
    count = np.bincount(keys, minlength=size)
    occupied = count > 0
    return (np.flatnonzero(occupied), count[occupied],
            (np.cumsum(occupied) - 1)[keys])
  cells, inverse, count = np.unique(keys, return_inverse=True, return_counts=True)
  return cells, count, inverse.ravel()


class _Chunk:
  """Union-of-epochs certificates of `trials` independent runs, advanced one epoch at a time.

  Only the classes still missing something in some trial ("active") are simulated: a class
  whose graph is connected and whose pairs are all tied stays so in the union.
  """

  def __init__(self, sizes, batch_size, views, binding, trials):
    self.sizes = np.asarray(sizes)
    self.k = len(sizes)
    self.n = int(self.sizes.sum())
    self.batch_size, self.views, self.binding = batch_size, views, binding
    self.m = self.n // batch_size
    self.labels = np.repeat(np.arange(self.k), self.sizes)        # class-sorted examples
    self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
    self.trial_ids = np.arange(trials)
    self.active = np.arange(self.k)
    self.examples = np.arange(self.n)
    self.comp = np.arange(trials * self.n).reshape(trials, self.n)   # component ids
    self.connected = np.zeros((trials, self.k), bool)
    self.tied = np.broadcast_to(np.eye(self.k, dtype=bool), (trials, self.k, self.k)).copy()

  def step(self, rng) -> None:
    """One more uniformly reshuffled epoch for every trial."""
    positions = _positions(rng, self.n, len(self.examples), len(self.trial_ids))
    self.advance(positions // self.batch_size)

  def advance(self, bins: np.ndarray) -> None:
    """Adds one epoch to the union: ``bins[t, i]`` is the batch (m = dropped) of active example
    ``self.examples[i]`` in trial t."""
    t, s, m, ka = len(self.trial_ids), len(self.examples), self.m, len(self.active)
    kept = bins < m
    local = np.searchsorted(self.active, self.labels[self.examples])   # active-class index
    rows = np.arange(t)[:, None]
    sub = np.ix_(np.arange(t), self.active, self.active)
    need_ties = not self.tied[sub].all()
    need_joins = not self.connected[:, self.active].all()
    if not self.binding and (need_ties or need_joins):
      # the occupied (trial, batch, class) cells of the kept examples
      occupancy = _occupied(((rows * m + bins) * ka + local)[kept], t * m * ka)
    else:
      occupancy = None
    if need_ties:
      self.tied[sub] |= self._meet(t, ka, m, kept, local, rows, occupancy)
    if need_joins:
      self._join(kept, local, occupancy)

  def _meet(self, t, ka, m, kept, local, rows, occupancy) -> np.ndarray:
    """[t, ka, ka] the class pairs this epoch ties (both present in a batch, one with >= 2
    rows, each row counted V times)."""
    if self.binding:
      # Every class is in every batch with b rows; with b = 1 and V = 1 a class has a second row
      # exactly in the batches that hold one of its examples.
      if self.views >= 2 or self.binding >= 2:
        return np.ones((t, ka, ka), bool)
      has = np.zeros((t, ka), bool)
      has[np.broadcast_to(rows, kept.shape)[kept], local[None, :].repeat(t, 0)[kept]] = True
      return has[:, :, None] | has[:, None, :]
    # Sparse (batch, class) occupancy: a batch holds only a few of the active classes.
    cell, count, _ = occupancy
    batch, cls = np.divmod(cell, ka)
    col = (batch // m) * ka + cls                                       # (trial, class)
    shape = (t * m, t * ka)
    present = sparse.csr_matrix((np.ones(len(cell), np.float32), (batch, col)), shape=shape)
    anchored = sparse.csr_matrix(((self.views * count >= 2).astype(np.float32), (batch, col)),
                                 shape=shape)
    pairs = (present.T @ anchored).tocoo()
    meet = np.zeros((t, ka, ka), bool)
    hit = pairs.data > 0
    i, j = pairs.row[hit], pairs.col[hit]
    meet[i // ka, i % ka, j % ka] = True
    return meet | meet.transpose(0, 2, 1)

  def _join(self, kept, local, occupancy) -> None:
    """Merges the components of the union with this epoch's co-occurrence edges."""
    node = self.comp                     # component ids, < t * s
    num_nodes = int(node.max()) + 1
    if self.binding:
      # z_c is in every batch, so every kept class-c example joins z_c's component, and the b
      # binding examples of a class are together in every batch.
      first = np.searchsorted(self.examples, self.starts[self.active])   # z_c's column
      src = [node[kept]] + [node[:, first + i].ravel() for i in range(1, self.binding)]
      dst = [node[:, first][:, local][kept]] + [node[:, first].ravel()] * (self.binding - 1)
      src, dst = np.concatenate(src), np.concatenate(dst)
      total = num_nodes
    else:
      # one node per occupied (trial, batch, class) cell
      cells, _, inverse = occupancy
      src, dst = node[kept], num_nodes + inverse
      total = num_nodes + len(cells)
    graph = sparse.coo_matrix((np.ones(len(src), np.int32), (src, dst)), shape=(total, total))
    _, comp = csgraph.connected_components(graph, directed=False)
    self.comp = comp[node]
    bounds = np.searchsorted(self.examples, self.starts[self.active])
    same = (np.minimum.reduceat(self.comp, bounds, axis=1)
            == np.maximum.reduceat(self.comp, bounds, axis=1))
    self.connected[:, self.active] = same

  def certified(self) -> np.ndarray:
    """[trials] whether the union so far satisfies C1 and C2."""
    return self.connected.all(1) & self.tied.all((1, 2))

  def keep(self, alive: np.ndarray) -> None:
    """Drops the finished trials and the classes no remaining trial still needs."""
    self.trial_ids, self.comp = self.trial_ids[alive], self.comp[alive]
    self.connected, self.tied = self.connected[alive], self.tied[alive]
    needed = (~self.connected | ~self.tied.all(2)).any(0)
    active = np.flatnonzero(needed)
    if len(active) < len(self.active):
      columns = np.isin(self.labels[self.examples], active)
      self.examples, self.comp = self.examples[columns], self.comp[:, columns]
      self.active = active


def simulate(sizes: Sequence[int], batch_size: int, *, views: int = 2, binding: int = 0,
             trials: int = DEFAULT_TRIALS, seed: int = 0,
             max_epochs: int = DEFAULT_MAX_EPOCHS, chunk_elements: int = 2_000_000) -> dict:
  """Monte Carlo of the trainer's batching: `trials` independent runs of reshuffled epochs.

  Returns NumPy arrays over trials: ``c1``, ``c2`` (the first epoch's certificate, bool),
  ``c1_by_class`` ([trials, K]) and ``epochs`` (the first epoch whose union of batches
  satisfies C1 and C2, 1 = the first epoch; ``max_epochs + 1`` when not reached by then).
  Trials are processed in chunks of about `chunk_elements` example slots.
  """
  sizes = check_setup(sizes, batch_size, views, binding)
  rng = np.random.default_rng(seed)
  n, k = sum(sizes), len(sizes)
  per_chunk = max(1, min(trials, chunk_elements // n))
  c1 = np.zeros((trials, k), bool)
  c2 = np.zeros(trials, bool)
  epochs = np.full(trials, max_epochs + 1, np.int64)
  for lo in range(0, trials, per_chunk):
    size = min(per_chunk, trials - lo)
    chunk = _Chunk(sizes, batch_size, views, binding, size)
    for epoch in range(1, max_epochs + 1):
      chunk.step(rng)
      ids = lo + chunk.trial_ids
      if epoch == 1:
        c1[ids] = chunk.connected
        c2[ids] = chunk.tied.all((1, 2))
      done = chunk.certified()
      epochs[ids[done]] = epoch
      if done.all():
        break
      chunk.keep(~done)
  return {"c1": c1.all(1), "c2": c2, "c1_by_class": c1, "epochs": epochs}
