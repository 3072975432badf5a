"""Everything a training run derives from its config before the first step: the data, the
mesh, the model, the optimiser and the sizes of the step (``setup_run``).

All validation of the config and of the data happens here (ConfigError,
deepnet.data.MissingDatasetError), before any file is written.

Mesh: every device of every process on one axis ``"data"``. The training set lives on the
devices as one replicated array; the ``[S, G]`` schedule of an epoch has its columns sharded
over ``"data"`` and the step's view rows are constrained to that sharding, so SCL and
BatchNorm see the whole global batch whatever the number of devices or processes. A global
batch of G rows that D devices do not divide is padded to a multiple of D with masked rows.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deepnet import config as config_lib
from deepnet import data as data_lib
from deepnet import models
from deepnet import optim
from deepnet import workdir as workdir_lib
from geometry import batching as batching_lib

ConfigError = config_lib.ConfigError

# The train state's step counter (and the lr schedule's boundaries) are int32.
MAX_STEPS = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Shardings:
  """The run's mesh and the three placements its arrays use."""
  mesh: Mesh
  replicated: NamedSharding   # the state, the data sets, scalars
  rows: NamedSharding         # [B, ...] arrays split along their rows
  schedule: NamedSharding     # the [S, G] schedule, columns split

  @classmethod
  def over_all_devices(cls) -> "Shardings":
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    return cls(mesh, NamedSharding(mesh, P()), NamedSharding(mesh, P("data")),
               NamedSharding(mesh, P(None, "data")))

  @property
  def num_devices(self) -> int:
    return self.mesh.size


def global_array(host, sharding: NamedSharding) -> jax.Array:
  """A global array from data that every process holds in full: each process transfers only
  the shards of its own devices."""
  host = np.asarray(host)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def epoch_schedule(config, labels: np.ndarray, num_classes: int, epoch: int) -> np.ndarray:
  """The ``[S, G]`` example indices of every step of ``epoch`` (1-based), binding rows last.

  ``geometry.batching.epoch_batches`` ("shuffle": a new drop-last partition per epoch,
  "fixed": one seeded partition for the whole run), a pure function of ``(seed, epoch)``,
  with ``config.binding`` examples per class appended to every batch
  (docs/theory.md#batch-binding).
  """
  batches = batching_lib.epoch_batches(config.batching, len(labels), int(config.batch_size),
                                       int(config.seed), epoch)
  per_class = int(config.binding)
  if per_class > 0:
    binding = batching_lib.binding_indices(labels, per_class, num_classes)
    batches = batching_lib.add_binding(batches, binding)
  return np.asarray(batches, np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class RunSetup:
  """The static facts of one run (no array that training changes); compared and hashed by
  identity."""
  config: Any
  workdir: str
  dataset: data_lib.Dataset
  shardings: Shardings
  model: Any                        # models.EmbeddingModel
  tx: optax.GradientTransformation
  lr_schedule: optax.Schedule
  make_views: Callable              # (x [G, ...], key) -> [V * G, ...]
  num_views: int                    # V
  steps_per_epoch: int              # S
  rows_per_batch: int               # G = batch_size + K * binding, before the views
  padded_rows: int                  # G rounded up to a multiple of the devices
  eval_chunk: int                   # rows per evaluation call
  eval_test_rows: np.ndarray        # test rows evaluated at the logged epochs before the last
  num_epochs: int
  log_epochs: list[int]
  binding: np.ndarray               # the binding examples' indices
  embedding_dim: int
  metric_output: str                # "embedding" (SCL) or "features" (CE, docs/theory.md#ce-ufm)

  @property
  def num_classes(self) -> int:
    return int(self.dataset.num_classes)

  @property
  def train_y(self) -> np.ndarray:
    return np.asarray(self.dataset.train_y, np.int32)

  @property
  def test_y(self) -> np.ndarray:
    return np.asarray(self.dataset.test_y, np.int32)

  @property
  def num_train(self) -> int:
    return len(self.dataset.train_y)

  @property
  def num_devices(self) -> int:
    return self.shardings.num_devices

  def padded_schedule(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(the epoch's [S, G] schedule, the same padded with index 0 to [S, G_pad])."""
    schedule = epoch_schedule(self.config, self.train_y, self.num_classes, epoch)
    padded = np.zeros((len(schedule), self.padded_rows), np.int32)
    padded[:, :schedule.shape[1]] = schedule
    return schedule, padded

  def row_mask(self) -> jax.Array:
    """[G_pad] bool, True on the real rows, sharded like the batch."""
    return global_array(np.arange(self.padded_rows) < self.rows_per_batch,
                        self.shardings.rows)

  def init_variables(self, seed=None):
    """``model.init`` on two zero inputs, with ``key(seed)`` (default ``config.seed``)."""
    x = jnp.zeros((2,) + tuple(np.shape(self.dataset.train_x)[1:]), jnp.float32)
    seed = int(self.config.seed) if seed is None else seed
    return self.model.init(jax.random.key(seed), x, train=False)


def test_subsample(labels: np.ndarray, num_classes: int, size: int, seed: int) -> np.ndarray:
  """Sorted row indices of a class-balanced subsample of ``size`` test examples (``size // K``
  of each class, every row of a class that has fewer), drawn with ``seed``; all rows when
  ``size`` is 0 or not smaller than the split.

  A function of its arguments only, so a run evaluates the same images at every logged epoch
  and after a resume.
  """
  labels = np.asarray(labels)
  if size <= 0 or size >= len(labels):
    return np.arange(len(labels))
  rng = np.random.default_rng(seed)
  per_class = max(1, size // num_classes)
  rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(num_classes)]
  return np.sort(np.concatenate(rows))


def setup_run(config, workdir: str, *, dataset: data_lib.Dataset | None = None) -> RunSetup:
  """Checks ``config`` and derives the run's ``RunSetup``; ``dataset`` replaces the one the
  config names (benchmarks and tests). Raises ConfigError or MissingDatasetError."""
  config_lib.validate_config(config)
  workdir = os.path.abspath(workdir)
  try:
    workdir_lib.check_usable(workdir)
  except workdir_lib.WorkdirError as e:
    raise ConfigError(str(e)) from None
  if dataset is None:
    try:
      dataset = data_lib.load_dataset(config.data, seed=int(config.data.subsample_seed))
    except ValueError as e:
      raise ConfigError(str(e)) from e
  labels = np.asarray(dataset.train_y, np.int32)
  num_train, batch_size = len(labels), int(config.batch_size)
  if batch_size > num_train:
    raise ConfigError(f"batch_size {batch_size} exceeds the {num_train} training examples")
  try:
    binding = (batching_lib.binding_indices(labels, int(config.binding), dataset.num_classes)
               if int(config.binding) > 0 else np.zeros((0,), np.int64))
  except ValueError as e:
    raise ConfigError(str(e)) from e
  steps_per_epoch = num_train // batch_size
  num_epochs = int(config.num_epochs)
  if num_epochs * steps_per_epoch > MAX_STEPS:
    raise ConfigError(f"num_epochs={num_epochs} x {steps_per_epoch} steps/epoch exceeds the "
                      f"{MAX_STEPS} steps an int32 step counter holds; use num_epochs <= "
                      f"{MAX_STEPS // steps_per_epoch}")
  shardings = Shardings.over_all_devices()
  rows_per_batch = batch_size + len(binding)
  padded_rows = round_up(rows_per_batch, shardings.num_devices)
  eval_chunk = round_up(min(int(config.eval_batch_size), max(num_train, len(dataset.test_y))),
                        shardings.num_devices)
  try:
    model = models.create_model(config.model, dataset.num_classes,
                                classifier=config.loss == "ce")
    embedding_dim = models.embedding_dim(config.model, dataset.num_classes)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for line in models.deprecations(config.model):
    if jax.process_index() == 0:
      print(f"scl-train: {line}", file=sys.stderr, flush=True)
  # The data set's own augmentation options (deepnet.data documents the choice per set), then
  # the view fields the config sets.
  try:
    make_views = functools.partial(data_lib.make_views, mode=config.data.views,
                                   kind=dataset.kind,
                                   **data_lib.view_options(config.data, dataset))
    view_shape = jax.eval_shape(
        lambda x: make_views(x, jax.random.key(0)),
        jax.ShapeDtypeStruct((padded_rows,) + tuple(np.shape(dataset.train_x)[1:]),
                             jnp.float32))
  except ValueError as e:
    raise ConfigError(f"data.views: {e}") from e
  # One schedule object: the optimiser's and the one the metrics read the logged lr from.
  schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  setup = RunSetup(
      config=config, workdir=workdir, dataset=dataset, shardings=shardings, model=model,
      tx=optim.make_optimizer(config, steps_per_epoch, schedule),
      lr_schedule=schedule,
      make_views=make_views, num_views=view_shape.shape[0] // padded_rows,
      steps_per_epoch=steps_per_epoch, rows_per_batch=rows_per_batch,
      padded_rows=padded_rows, eval_chunk=eval_chunk,
      eval_test_rows=test_subsample(
          dataset.test_y, dataset.num_classes, int(config.eval_test_examples),
          int(config.data.subsample_seed)),
      num_epochs=num_epochs,
      log_epochs=config_lib.resolve_log_epochs(config), binding=binding,
      embedding_dim=embedding_dim,
      metric_output="embedding" if config.loss == "scl" else "features")
  # Probe the model once (abstractly) so that a bad model config fails here, as a user error.
  try:
    jax.eval_shape(setup.init_variables)
  except ValueError as e:
    raise ConfigError(f"model: {e}") from e
  return setup
