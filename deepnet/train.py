"""Training of the deep networks: train state, the jitted sharded step, the loop, checkpoints
and the geometry metrics of docs/theory.md#metrics at the logged epochs.

One run (``train_and_evaluate(config, workdir)``) does, for epochs e = 1 .. E:

1. builds the epoch's schedule on the host, a pure function of ``(seed, e)``:
   ``geometry.batching.epoch_batches`` ("shuffle": a new drop-last partition per epoch,
   "fixed": one seeded partition for the whole run) with ``config.binding`` binding examples
   per class appended to every batch (``add_binding``, docs/theory.md#batch-binding), as a ``[S, G]`` int
   array (S steps, G = batch_size + K * binding rows);
2. puts that array on the devices once (columns sharded over the ``("data",)`` mesh) and runs
   S calls of one jitted step. The step gathers ``x[idx]`` from the training set, which lives
   on the devices as one replicated array, builds the views there
   (``deepnet.data.make_views``), and computes the loss on the whole global batch: SCL and
   BatchNorm see all V * G rows whatever the number of devices or processes;
3. at the logged epochs, evaluates the geometry (eval-mode BN, one view, no binding, every
   train and test example) and appends one line to ``metrics.jsonl``;
4. every ``checkpoint_every_epochs`` epochs and at the end, saves the train state with orbax.

Loss (docs/theory.md#scl-loss): SCL ``supcon_loss(reduction="mean")`` on the V * G L2-normalised
embeddings with the labels repeated per view, or CE on the logits of every view, times
``loss_scale`` (10/7 in the paper-faithful configs, docs/theory.md#loss-scale).

Optimiser: SGD with momentum and *coupled* L2 weight decay on every parameter (BN scales and
biases too), as PyTorch's ``SGD(weight_decay=...)`` of the paper's code:

  v <- momentum * v + (grad(s * L) + wd * theta),   theta <- theta - lr_t * v,

so ``loss_scale`` s with (lr, wd) is the same run as s = 1 with (s * lr, wd / s) (docs/theory.md#loss-scale).
The multistep schedule multiplies lr by ``lr_decay_factor`` after each decay epoch (a step
function of the epoch, as PyTorch's MultiStepLR stepped once per epoch); cosine decays per
step to 0 over the run.

Determinism and resume: the schedule of epoch e depends on ``(seed, e)`` only, the key of step
t is ``fold_in(key(seed), t)``, and checkpoints hold the whole train state, so a run killed
at any moment and started again resumes from its last checkpoint and writes the same
``metrics.jsonl`` as an uninterrupted run (lines after the checkpoint are rewritten).
What a run guarantees under faults (kill, corrupted checkpoints, a second process on the
workdir, SIGTERM / SIGINT, divergence, disk full) is in ``docs/faults_training.md``; the I/O
lives in ``deepnet.workdir``, ``deepnet.checkpoints`` and ``deepnet.interrupts``.

Padding: a global batch whose G rows do not divide over the D devices is padded to a multiple
of D with masked rows. They are removed from the loss (``where=``) and from every BatchNorm's
batch statistics (the ``mask`` argument of ``flax.linen.BatchNorm``, injected by a method
interceptor so that any model built from linen BatchNorm layers is covered), so the result
equals the unpadded batch. Nothing is ever truncated.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from deepnet import checkpoints as checkpoints_lib
from deepnet import data as data_lib
from deepnet import interrupts
from deepnet import models
from deepnet import tensorboard_events
from deepnet import workdir as workdir_lib
from geometry import advisor as advisor_lib
from geometry import batching as batching_lib
from geometry import frames
from geometry import losses
from geometry import metrics as metrics_lib
from geometry import runfiles

# The paper's recipe (docs/theory.md#training-protocol): a 350-epoch run, decays after epochs 116 and 232, and
# the epochs at which the released code logs.
PAPER_NUM_EPOCHS = 350
PAPER_LR_DECAY_EPOCHS = (116, 232)
PAPER_LOG_EPOCHS = (1, 3, 5, 7, 9, 11, 20, 30, 40, 60, 80, 101, 120, 140, 160, 180, 201, 220,
                    235, 245, 250, 260, 275, 280, 290, 299, 305, 310, 315, 320, 325, 330, 335,
                    340, 345, 349, 350)

# Keys of metrics.jsonl that depend on the machine, not on the run's numbers.
TIMING_KEYS = ("seconds", "images_per_second")

# Config fields that may change between a run and its resumption without changing a number.
RESUME_IGNORED_KEYS = ("distributed", "checkpoint_every_epochs", "eval_batch_size",
                       "data.data_dir", "data.download", "tensorboard", "compilation_cache_dir",
                       "data.source")

# Mid-epoch checkpoints written when a signal stops a run (deepnet.interrupts).
PREEMPTED_DIR = "checkpoints_preempted"

LOSSES = ("scl", "ce")
BATCHINGS = ("shuffle", "fixed")
LR_SCHEDULES = ("multistep", "cosine")


class ConfigError(ValueError):
  """A config that cannot describe a run (bad value, inconsistent fields, foreign workdir)."""


class Diverged(RuntimeError):
  """The loss or the parameters became non-finite; nothing of that epoch was saved."""


# The train state's step counter (and the lr schedule's boundaries) are int32.
MAX_STEPS = 2**31 - 1


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of replicated arrays."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


# ----------------------------------------------------------------------------------------------
# Schedules and the config


def _round_half_up(x: float) -> int:
  return int(math.floor(x + 0.5))


def scale_epochs(epochs: Sequence[int], num_epochs: int,
                 base_epochs: int = PAPER_NUM_EPOCHS) -> list[int]:
  """Epochs of a ``base_epochs``-long run moved to a ``num_epochs``-long one.

  e -> round(e * num_epochs / base_epochs), clipped to [1, num_epochs], deduplicated, sorted.
  """
  scaled = {min(num_epochs, max(1, _round_half_up(e * num_epochs / base_epochs)))
            for e in epochs}
  return sorted(scaled)


def resolve_log_epochs(config) -> list[int]:
  """The logged epochs: ``config.log_epochs``, or the paper's list scaled to the run's length
  when it is empty; epoch 1 (for the empty default) and the last epoch are always in."""
  num_epochs = int(config.num_epochs)
  given = [int(e) for e in (config.get("log_epochs") or ())]
  if not given:
    return sorted(set(scale_epochs(PAPER_LOG_EPOCHS, num_epochs)) | {1, num_epochs})
  bad = [e for e in given if not 1 <= e <= num_epochs]
  if bad:
    raise ConfigError(f"log_epochs must lie in [1, num_epochs={num_epochs}], got {bad}")
  return sorted(set(given) | {num_epochs})


def resolve_lr_decay_epochs(config) -> list[int]:
  """Epochs after which lr is multiplied by ``lr_decay_factor`` (multistep schedule).

  ``lr_decay_epochs`` are epochs of a ``lr_decay_base_epochs``-long run (350 by default, the
  paper's, so (116, 232) are the paper's decays) scaled to ``num_epochs``; with
  ``lr_decay_base_epochs = 0`` they are taken as they are. A decay at or after the last epoch
  never happens and is dropped.
  """
  num_epochs = int(config.num_epochs)
  epochs = [int(e) for e in (config.get("lr_decay_epochs") or ())]
  base = int(config.get("lr_decay_base_epochs", PAPER_NUM_EPOCHS) or 0)
  if base > 0:
    epochs = [_round_half_up(e * num_epochs / base) for e in epochs]
  return sorted({e for e in epochs if 1 <= e < num_epochs})


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """lr as a function of the step count (0-based), see the module docstring."""
  base_lr = float(config.lr)
  warmup = int(float(config.get("warmup_epochs", 0) or 0) * steps_per_epoch)
  if config.get("lr_schedule", "multistep") == "cosine":
    decayed = optax.cosine_decay_schedule(base_lr, int(config.num_epochs) * steps_per_epoch)
  else:
    boundaries = jnp.asarray([e * steps_per_epoch for e in resolve_lr_decay_epochs(config)],
                             jnp.int32)
    factor = float(config.get("lr_decay_factor", 0.1))

    def decayed(count):
      # Steps of epoch e (1-based) are (e-1)*S .. e*S-1; a decay "after epoch m" starts at m*S.
      decays = jnp.sum(jnp.asarray(count) >= boundaries)
      return base_lr * jnp.power(factor, decays)

  if warmup <= 0:
    return decayed

  def schedule(count):
    # Linear warm-up: step t (0-based) runs at (t + 1) / W of the scheduled lr for t < W.
    ramp = jnp.minimum(1.0, (jnp.asarray(count, jnp.float32) + 1.0) / warmup)
    return ramp * decayed(count)

  return schedule


def decay_mask(params):
  """True for the parameters that get weight decay: the kernels (ndim >= 2), not the biases
  and BatchNorm scales / offsets (ndim 1)."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD + momentum with coupled L2 decay added to the gradient before the momentum.

  ``grad_clip_norm > 0`` first rescales the loss gradient g to
  g * min(1, c / ||g||_2) (global norm over all parameters); ``decay_norm_and_bias=False``
  applies the decay to the kernels only (``decay_mask``).
  """
  clip = float(config.get("grad_clip_norm", 0.0) or 0.0)
  mask = None if config.get("decay_norm_and_bias", True) else decay_mask
  return optax.chain(
      optax.clip_by_global_norm(clip) if clip > 0 else optax.identity(),
      optax.add_decayed_weights(float(config.weight_decay), mask=mask),
      optax.sgd(learning_rate_schedule(config, steps_per_epoch),
                momentum=float(config.momentum) or None))


def epoch_schedule(config, labels: np.ndarray, num_classes: int, epoch: int) -> np.ndarray:
  """The ``[S, G]`` example indices of every step of ``epoch`` (1-based), binding rows last."""
  batches = batching_lib.epoch_batches(config.batching, len(labels), int(config.batch_size),
                                       int(config.seed), epoch)
  per_class = int(config.get("binding", 0))
  if per_class > 0:
    binding = batching_lib.binding_indices(labels, per_class, num_classes)
    batches = batching_lib.add_binding(batches, binding)
  return np.asarray(batches, np.int64)


def optimal_loss(labels, batches, *, temperature: float, views: int, loss_scale: float = 1.0,
                 num_classes: int | None = None) -> float:
  """The OF floor of the logged SCL ``train_loss`` for one epoch's batches, same units.

  ``loss_scale * mean_B L*_B / A_B`` with L*_B the Theorem-2 value of batch B with every
  example repeated ``views`` times and A_B its anchors with a positive
  (``geometry.frames.scl_batch_bound(reduction="mean")``): what ``supcon_loss(reduction=
  "mean")`` averaged over the epoch's steps equals when the embeddings form an exact OF.
  """
  return float(loss_scale) * frames.scl_batch_bound(labels, batches, temperature,
                                                    reduction="mean", views=views,
                                                    num_classes=num_classes)


def validate_config(config) -> None:
  """Raises ConfigError for values that cannot describe a run (checked before any work)."""

  def check(ok, message):
    if not ok:
      raise ConfigError(message)

  check(config.get("loss") in LOSSES, f"loss must be one of {LOSSES}, got {config.get('loss')!r}")
  tau = float(config.get("temperature", 0.1))
  check(math.isfinite(tau) and tau > 0, f"temperature must be finite and > 0, got {tau}")
  scale = float(config.get("loss_scale", 1.0))
  check(math.isfinite(scale) and scale > 0, f"loss_scale must be finite and > 0, got {scale}")
  check(config.get("batching") in BATCHINGS,
        f"batching must be one of {BATCHINGS}, got {config.get('batching')!r}")
  check(int(config.get("binding", 0)) >= 0, f"binding must be >= 0, got {config.get('binding')}")
  check(int(config.batch_size) >= 2, f"batch_size must be >= 2, got {config.batch_size}")
  check(int(config.num_epochs) >= 1, f"num_epochs must be >= 1, got {config.num_epochs}")
  check(math.isfinite(float(config.lr)) and float(config.lr) > 0,
        f"lr must be finite and > 0, got {config.lr}")
  check(0 <= float(config.momentum) < 1, f"momentum must be in [0, 1), got {config.momentum}")
  check(math.isfinite(float(config.weight_decay)) and float(config.weight_decay) >= 0,
        f"weight_decay must be finite and >= 0, got {config.weight_decay}")
  check(config.get("lr_schedule", "multistep") in LR_SCHEDULES,
        f"lr_schedule must be one of {LR_SCHEDULES}, got {config.get('lr_schedule')!r}")
  check(float(config.get("warmup_epochs", 0) or 0) >= 0,
        f"warmup_epochs must be >= 0, got {config.get('warmup_epochs')}")
  check(float(config.get("grad_clip_norm", 0.0) or 0.0) >= 0,
        f"grad_clip_norm must be >= 0 (0: off), got {config.get('grad_clip_norm')}")
  check(math.isfinite(float(config.get("lr_decay_factor", 0.1)))
        and float(config.get("lr_decay_factor", 0.1)) > 0,
        f"lr_decay_factor must be finite and > 0, got {config.get('lr_decay_factor')}")
  check(int(config.get("checkpoint_every_epochs", 10)) >= 1,
        f"checkpoint_every_epochs must be >= 1, got {config.get('checkpoint_every_epochs')}")
  check(int(config.get("eval_batch_size", 1000)) >= 1,
        f"eval_batch_size must be >= 1, got {config.get('eval_batch_size')}")
  resolve_log_epochs(config)


def config_to_dict(config) -> dict:
  """The config as plain JSON types (tuples become lists), keys sorted."""
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config, sort_keys=True, default=str))


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


# ----------------------------------------------------------------------------------------------
# Helpers




def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def apply_model(model: nn.Module, variables, x, *, train: bool, mask=None):
  """``model.apply`` in train or eval mode; in train mode with ``mask`` ([B] bool over the
  leading axis of ``x``) every ``nn.BatchNorm`` computes its batch statistics over the unmasked
  rows only, so padding rows change neither the outputs of the real rows nor the running
  statistics."""
  if not train:
    return model.apply(variables, x, train=False), None
  if mask is None:
    return model.apply(variables, x, train=True, mutable=["batch_stats"])

  def mask_batch_norm(next_fun, args, kwargs, context):
    if (isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__"
        and "mask" not in kwargs):
      inputs = args[0]
      row_mask = jnp.reshape(mask, mask.shape + (1,) * (inputs.ndim - 1))
      kwargs = dict(kwargs, mask=jnp.broadcast_to(row_mask, inputs.shape))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(mask_batch_norm):
    return model.apply(variables, x, train=True, mutable=["batch_stats"])


def _is_main_process() -> bool:
  return jax.process_index() == 0


def _log(message: str) -> None:
  if _is_main_process():
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------
# The trainer


@dataclasses.dataclass
class RunResult:
  """What ``Trainer.run`` returns: the last metrics line and where the files are."""
  metrics: dict
  workdir: str
  epochs_run: int


class Trainer:
  """One training run: data, model, mesh, the jitted step, evaluation and checkpoints.

  ``Trainer(config, workdir).run()`` is what ``deepnet.main`` (``make train``) calls; tests use
  the same object. All validation of the config and of the data happens in ``__init__``
  (ConfigError, deepnet.data.MissingDatasetError), before any file is written.
  """

  def __init__(self, config, workdir: str, *, dataset=None):
    validate_config(config)
    self.config = config
    self.workdir = os.path.abspath(workdir)
    try:
      workdir_lib.check_usable(self.workdir)
    except workdir_lib.WorkdirError as e:
      raise ConfigError(str(e)) from None
    self.loss_kind = config.loss
    self.temperature = float(config.temperature)
    self.loss_scale = float(config.get("loss_scale", 1.0))

    if dataset is None:
      try:
        dataset = data_lib.load_dataset(config.data,
                                        seed=int(config.data.get("subsample_seed", 1)))
      except ValueError as e:
        raise ConfigError(str(e)) from e
    self.dataset = ds = dataset
    self.num_classes = int(ds.num_classes)
    self.train_y_host = np.asarray(ds.train_y, np.int32)
    self.test_y_host = np.asarray(ds.test_y, np.int32)
    self.num_train = len(self.train_y_host)
    self.batch_size = int(config.batch_size)
    if self.batch_size > self.num_train:
      raise ConfigError(f"batch_size {self.batch_size} exceeds the {self.num_train} training "
                        "examples")
    try:
      self.binding = (batching_lib.binding_indices(self.train_y_host, int(config.binding),
                                                   self.num_classes)
                      if int(config.get("binding", 0)) > 0 else np.zeros((0,), np.int64))
    except ValueError as e:
      raise ConfigError(str(e)) from e
    self.steps_per_epoch = self.num_train // self.batch_size
    self.rows_per_batch = self.batch_size + len(self.binding)   # G, before the views
    self.num_epochs = int(config.num_epochs)
    if self.num_epochs * self.steps_per_epoch > MAX_STEPS:
      raise ConfigError(f"num_epochs={self.num_epochs} x {self.steps_per_epoch} steps/epoch "
                        f"exceeds the {MAX_STEPS} steps an int32 step counter holds; use "
                        f"num_epochs <= {MAX_STEPS // self.steps_per_epoch}")
    self.log_epochs = resolve_log_epochs(config)
    self.majority = [int(c) for c in ds.majority]

    # Mesh over every device of every process; the global batch is split along "data".
    self.mesh = Mesh(np.asarray(jax.devices()), ("data",))
    self.num_devices = self.mesh.size
    self.replicated = NamedSharding(self.mesh, P())
    self.row_sharding = NamedSharding(self.mesh, P("data"))
    self.schedule_sharding = NamedSharding(self.mesh, P(None, "data"))
    self.padded_rows = _round_up(self.rows_per_batch, self.num_devices)
    self.eval_chunk = _round_up(
        min(int(config.get("eval_batch_size", 1000)), max(self.num_train, len(ds.test_y))),
        self.num_devices)

    try:
      self.model = models.create_model(config.model, self.num_classes,
                                       classifier=self.loss_kind == "ce")
      self.embedding_dim = models.embedding_dim(config.model, self.num_classes)
    except ValueError as e:
      raise ConfigError(str(e)) from e
    # CE geometry is measured on the input of the classifier (docs/theory.md#ce-ufm), SCL geometry on the
    # normalised embedding that the loss sees.
    self.metric_output = "embedding" if self.loss_kind == "scl" else "features"
    self.view_mode = config.data.get("views", "vflip")
    # The data set's own augmentation options (deepnet.data documents the choice per set),
    # then the view fields the config sets.
    try:
      self.make_views = functools.partial(data_lib.make_views, mode=self.view_mode,
                                          kind=ds.kind,
                                          **data_lib.view_options(config.data, ds))
      view_shape = jax.eval_shape(
          lambda x: self.make_views(x, jax.random.key(0)),
          jax.ShapeDtypeStruct((self.padded_rows,) + tuple(np.shape(ds.train_x)[1:]),
                               jnp.float32))
    except ValueError as e:
      raise ConfigError(f"data.views: {e}") from e
    self.num_views = view_shape.shape[0] // self.padded_rows
    self.tx = make_optimizer(config, self.steps_per_epoch)
    self.lr_schedule = learning_rate_schedule(config, self.steps_per_epoch)
    # Probe the model once (abstractly) so that a bad model config fails here, as a user error.
    try:
      jax.eval_shape(self._init_variables)
    except ValueError as e:
      raise ConfigError(f"model: {e}") from e

    self.train_step = jax.jit(self._train_step, donate_argnums=(0, 1),
                              out_shardings=self.replicated)
    self.embed = jax.jit(self._embed, out_shardings=self.replicated)
    self.finite_check = jax.jit(lambda params, loss_sum: (loss_sum, jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))))
    self._train_x = None
    self._test_x = None
    self._union_unique = False
    self._union_certificate = None
    self._union_epochs = 0

  # -- pure functions (jitted) -------------------------------------------------------------

  def _init_variables(self, seed=None):
    x = jnp.zeros((2,) + tuple(np.shape(self.dataset.train_x)[1:]), jnp.float32)
    seed = int(self.config.seed) if seed is None else seed
    return self.model.init(jax.random.key(seed), x, train=False)

  def _init_state(self, seed=None) -> TrainState:
    variables = self._init_variables(seed)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=self.tx.init(params))

  def _train_step(self, state: TrainState, loss_sum, schedule, row_mask, train_x, train_y,
                  seed=None):
    """One SGD step on row ``state.step mod S`` of the epoch's ``schedule`` ([S, G_pad]).

    Returns the new state and ``loss_sum`` plus this step's loss (the epoch's loss stays on
    the device; the host reads it only at log points). ``seed`` (an int array, default
    ``config.seed``) is an argument so that runs differing only in their seed share one
    compiled step (the persistent compilation cache, `deepnet.compilation_cache`).
    """
    row = state.step % self.steps_per_epoch
    idx = jax.lax.dynamic_index_in_dim(schedule, row, axis=0, keepdims=False)
    x = jnp.take(train_x, idx, axis=0)
    y = jnp.take(train_y, idx, axis=0)
    # The step's key depends on (seed, step) only: resumed runs draw the same views.
    seed = int(self.config.seed) if seed is None else seed
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), state.step)
    x = self.make_views(x, key)
    x = jax.lax.with_sharding_constraint(x, self.row_sharding)
    y = jnp.tile(y, self.num_views)
    # Masks only when there are padding rows: masked BatchNorm costs time and compile time.
    mask = (jnp.tile(row_mask, self.num_views) if self.padded_rows > self.rows_per_batch
            else None)

    def loss_fn(params):
      variables = {"params": params}
      if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
      out, updates = apply_model(self.model, variables, x, train=True, mask=mask)
      if self.loss_kind == "scl":
        loss = losses.supcon_loss(out["embedding"], y, temperature=self.temperature,
                                  where=mask, reduction="mean")
      else:
        loss = losses.cross_entropy_loss(out["logits"], y, where=mask, reduction="mean")
      return self.loss_scale * loss, updates.get("batch_stats", {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                           opt_state=opt_state)
    return new_state, loss_sum + loss.astype(jnp.float32)

  def _embed(self, params, batch_stats, x_all, idx):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    x = jnp.take(x_all, idx, axis=0)
    out, _ = apply_model(self.model, variables, x, train=False)
    return out[self.metric_output]

  # -- device data -------------------------------------------------------------------------

  def _global_array(self, host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from data that every process holds in full: each process transfers
    only the shards of its own devices."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  def _device_data(self):
    if self._train_x is None:
      ds = self.dataset
      self._train_x = self._global_array(np.asarray(ds.train_x, np.float32), self.replicated)
      self._train_y = self._global_array(self.train_y_host, self.replicated)
      self._test_x = self._global_array(np.asarray(ds.test_x, np.float32), self.replicated)
      row_mask = np.arange(self.padded_rows) < self.rows_per_batch
      self._row_mask = self._global_array(row_mask, self.row_sharding)
    return self._train_x, self._train_y, self._test_x, self._row_mask

  def padded_schedule(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(the epoch's [S, G] schedule, the same padded with index 0 to [S, G_pad])."""
    schedule = epoch_schedule(self.config, self.train_y_host, self.num_classes, epoch)
    padded = np.zeros((len(schedule), self.padded_rows), np.int32)
    padded[:, :schedule.shape[1]] = schedule
    return schedule, padded

  def initial_state(self) -> TrainState:
    # The seed is an argument, not a constant: runs that differ only in it share the program.
    seed = self._global_array(np.asarray(int(self.config.seed), np.uint32), self.replicated)
    return jax.jit(self._init_state, out_shardings=self.replicated)(seed)

  # -- evaluation --------------------------------------------------------------------------

  def embeddings(self, state: TrainState, x_all: jax.Array, num: int) -> np.ndarray:
    """Eval-mode outputs (``embedding`` for SCL, ``features`` for CE) of all ``num`` rows of
    ``x_all``, in chunks of ``eval_chunk`` (the last one padded, never dropped)."""
    chunks = []
    for start in range(0, num, self.eval_chunk):
      stop = min(start + self.eval_chunk, num)
      idx = np.zeros((self.eval_chunk,), np.int32)
      idx[:stop - start] = np.arange(start, stop)
      out = self.embed(state.params, state.batch_stats, x_all,
                       self._global_array(idx, self.row_sharding))
      chunks.append(np.asarray(out)[:stop - start])
    return np.concatenate(chunks, 0)

  def evaluate(self, state: TrainState) -> tuple[dict, np.ndarray, np.ndarray]:
    """Geometry and NCC of the train set (its own means) and of the test set (train means),
    in float64 on the host (``geometry.metrics``)."""
    train_x, _, test_x, _ = self._device_data()
    train_emb = self.embeddings(state, train_x, self.num_train)
    test_emb = self.embeddings(state, test_x, len(self.test_y_host))
    # Finite parameters can still overflow the forward pass (a huge lr without BatchNorm).
    if not (np.isfinite(train_emb).all() and np.isfinite(test_emb).all()):
      epoch = int(state.step) // self.steps_per_epoch
      raise Diverged(f"diverged at epoch {epoch} (embeddings not finite); nothing of epoch "
                     f"{epoch} was saved: {self.workdir} keeps its last checkpoint and the "
                     f"metrics before epoch {epoch}; lower lr (now {self.config.lr})")
    k = self.num_classes
    # Collapsed embeddings (all rows zero: every unit of the last ReLU dead) have undefined
    # normalised Grams; their metrics are NaN, written as null, without a warning per metric.
    with np.errstate(invalid="ignore", divide="ignore"):
      train = metrics_lib.geometry_report(train_emb, self.train_y_host, k,
                                          majority=self.majority)
      train_means, _ = metrics_lib.class_means(train_emb, self.train_y_host, k)
      test = metrics_lib.geometry_report(test_emb, self.test_y_host, k,
                                         reference_means=train_means, majority=self.majority)
    out = {key: train[key] for key in ("dist_of", "dist_etf", "nc1", "nc1_over_k", "mean_cos",
                                       "class_mean_norms")}
    out.update({f"test_{key}": test[key] for key in ("dist_of", "dist_etf", "nc1",
                                                     "nc1_over_k", "mean_cos",
                                                     "class_mean_norms")})
    for split, report in (("train", train), ("test", test)):
      out[f"ncc_acc_{split}"] = report["ncc_acc"]
      out[f"ncc_maj_{split}"] = report["ncc_maj"]
      out[f"ncc_min_{split}"] = report["ncc_min"]
      out[f"ncc_per_class_{split}"] = report["ncc_per_class"]
    out["gram"] = train["gram"]
    out["angle_values"] = train["angle_values"]
    return out, train_emb, test_emb

  def certificates(self, epoch: int, schedule: np.ndarray) -> dict:
    """C1/C2 certificate (docs/theory.md#theorem-2) of the epoch's batches and of the union so far."""
    cert = batching_lib.batch_certificate(self.train_y_host, schedule, self.num_classes,
                                          views=self.num_views)
    out = {"of_unique_epoch": cert["of_unique"],
           "c1_disconnected_epoch": [int(c) for c, ok in cert["c1_connected"].items() if not ok],
           "c2_pairs_missing_epoch": len(cert["c2_pairs_missing"])}
    # The union only gains ties: feed the epochs not seen yet (all of them after a resume)
    # into one incremental certificate, and stop once it certifies the OF.
    if not self._union_unique:
      if self._union_certificate is None:
        self._union_certificate = batching_lib.BatchCertificate(
            self.train_y_host, self.num_classes, views=self.num_views)
        self._union_epochs = 0
      for e in range(self._union_epochs + 1, epoch + 1):
        self._union_certificate.update(
            schedule if e == epoch else
            epoch_schedule(self.config, self.train_y_host, self.num_classes, e))
      self._union_epochs = epoch
      self._union_unique = self._union_certificate.result()["of_unique"]
    out["of_unique_so_far"] = self._union_unique
    return out

  # -- files -------------------------------------------------------------------------------

  def _checkpoint_manager(self, name: str = "checkpoints", max_to_keep: int = 3):
    return checkpoints_lib.create_manager(os.path.join(self.workdir, name),
                                          max_to_keep=max_to_keep)

  def _save(self, manager, epoch: int, state: TrainState) -> None:
    checkpoints_lib.save(manager, epoch, flax.serialization.to_state_dict(state),
                         write_sums=_is_main_process())
    # An epoch checkpoint supersedes any mid-epoch (preemption) checkpoint before it.
    if _is_main_process() and os.path.isdir(os.path.join(self.workdir, PREEMPTED_DIR)):
      preempted = self._checkpoint_manager(PREEMPTED_DIR, max_to_keep=1)
      checkpoints_lib.delete_all(preempted)
      preempted.close()

  def _abstract(self, tree):
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.replicated), tree)

  def _restore(self, manager, template: TrainState) -> tuple[int, TrainState]:
    """(epoch, state) of the newest epoch checkpoint that verifies and restores; (0,
    template) when there is none. Corrupt ones are reported and moved aside."""
    def check(epoch, tree):
      step = int(np.asarray(tree["step"]))
      want = epoch * self.steps_per_epoch
      return None if step == want else f"holds step {step}, expected {want}"

    epoch, restored = checkpoints_lib.restore_latest(
        manager, self._abstract(flax.serialization.to_state_dict(template)), check=check,
        log=_log, what="checkpoint of epoch", move_aside=_is_main_process())
    if restored is None:
      return 0, template
    return epoch, flax.serialization.from_state_dict(template, restored)

  def _restore_preempted(self, template: TrainState, after_step: int):
    """(state, loss_sum) of a mid-epoch checkpoint newer than ``after_step``, else None."""
    if not os.path.isdir(os.path.join(self.workdir, PREEMPTED_DIR)):
      return None
    manager = self._checkpoint_manager(PREEMPTED_DIR, max_to_keep=1)
    abstract = {"state": self._abstract(flax.serialization.to_state_dict(template)),
                "loss_sum": self._abstract(np.zeros((), np.float32))}

    def check(step, tree):
      held = int(np.asarray(tree["state"]["step"]))
      return None if held == step else f"holds step {held}, expected {step}"

    step, restored = checkpoints_lib.restore_latest(
        manager, abstract, check=check, log=_log, what="mid-epoch checkpoint of step",
        move_aside=_is_main_process())
    manager.close()
    if restored is None or step <= after_step:
      return None
    return (flax.serialization.from_state_dict(template, restored["state"]),
            restored["loss_sum"])

  def _save_preempted(self, state: TrainState, loss_sum) -> None:
    manager = self._checkpoint_manager(PREEMPTED_DIR, max_to_keep=1)
    checkpoints_lib.save(manager, int(state.step),
                         {"state": flax.serialization.to_state_dict(state),
                          "loss_sum": loss_sum}, write_sums=_is_main_process())
    manager.close()

  def _health(self, state: TrainState, loss_sum) -> str | None:
    """None while the epoch's loss and every parameter are finite, else what is not."""
    loss, params_ok = jax.device_get(self.finite_check(state.params, loss_sum))
    if not math.isfinite(float(loss)):
      return f"loss {float(loss)}"
    return None if bool(params_ok) else "parameters not finite"

  def _prepare_workdir(self) -> None:
    """Writes config.json, or checks that an existing one describes the same run."""
    path = os.path.join(self.workdir, "config.json")
    current = config_to_dict(self.config)
    if os.path.exists(path):
      try:
        stored = runfiles.read_json(path)
      except ValueError as e:
        raise ConfigError(f"{e}; remove it (or the workdir) to start this run afresh") from None
      diff = _diff_keys(_without_keys(stored, RESUME_IGNORED_KEYS),
                        _without_keys(current, RESUME_IGNORED_KEYS))
      if diff:
        raise ConfigError(
            f"workdir {self.workdir} holds a run with a different config (differs in: "
            f"{', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''}); use another --workdir "
            "or remove that one")
    if _is_main_process():
      os.makedirs(self.workdir, exist_ok=True)
      runfiles.write_json(path, current, indent=2, sort_keys=True)
      info = {
          "num_train": self.num_train, "num_test": int(len(self.test_y_host)),
          "num_classes": self.num_classes, "class_sizes": [int(s) for s in
                                                           self.dataset.class_sizes],
          "majority": self.majority, "embedding_dim": self.embedding_dim,
          "steps_per_epoch": self.steps_per_epoch, "rows_per_batch": self.rows_per_batch,
          "views": self.num_views, "binding_indices": self.binding.tolist(),
          "log_epochs": self.log_epochs, "lr_decay_epochs": resolve_lr_decay_epochs(self.config),
          "metric_output": self.metric_output, "num_devices": self.num_devices,
          "num_processes": jax.process_count(), "padded_rows": self.padded_rows,
          "jax_version": jax.__version__, "backend": jax.default_backend(),
          "provenance": runfiles.provenance(),
          # what the batching advisor predicts for of_unique_so_far (docs/batching.md)
          "batching_advice": advisor_lib.advice_for_training(
              self.dataset.class_sizes, self.batch_size, views=self.num_views,
              binding=int(self.config.get("binding", 0)), batching=self.config.batching,
              seed=int(self.config.seed), num_epochs=self.num_epochs),
      }
      runfiles.write_json(os.path.join(self.workdir, "run.json"), info, indent=2, sort_keys=True)

  def _truncate_metrics(self, last_epoch: int) -> None:
    """Keeps the metrics lines of epochs <= last_epoch, atomically (deepnet.workdir)."""
    if _is_main_process():
      workdir_lib.truncate_metrics(self.workdir, last_epoch)

  def _append_metrics(self, record: dict) -> None:
    if _is_main_process():
      workdir_lib.append_metrics(self.workdir, record)

  def _save_embeddings(self, train_emb: np.ndarray, test_emb: np.ndarray) -> None:
    if _is_main_process():
      path = os.path.join(self.workdir, "embeddings_final.npz")
      with open(path + ".tmp", "wb") as f:
        np.savez(f, train_embeddings=train_emb, train_labels=self.train_y_host,
                 test_embeddings=test_emb, test_labels=self.test_y_host,
                 output=np.asarray(self.metric_output))
      os.replace(path + ".tmp", path)

  # -- the loop ----------------------------------------------------------------------------

  def run(self) -> RunResult:
    """Trains from the last checkpoint (or from scratch) to ``num_epochs``; see the module
    docstring for what is written.

    The workdir is locked for the whole run (``deepnet.workdir.WorkdirLock``; a second process
    gets ConfigError naming the holder). SIGTERM / SIGINT stop the run at the next step
    boundary with a checkpoint and raise ``deepnet.interrupts.Stopped``; a non-finite loss or
    parameter raises ``Diverged`` before anything of that epoch is saved.
    """
    lock = workdir_lib.WorkdirLock(self.workdir)
    try:
      if _is_main_process():
        lock.acquire()
    except workdir_lib.WorkdirError as e:
      raise ConfigError(str(e)) from None
    try:
      # Several processes must stop at the same step; only a single one handles signals.
      with interrupts.StopSignals(install=jax.process_count() == 1) as stop:
        return self._run(stop)
    finally:
      lock.release()

  def _run(self, stop: interrupts.StopSignals) -> RunResult:
    self._prepare_workdir()
    train_x, train_y, _, row_mask = self._device_data()
    manager = self._checkpoint_manager()
    state = self.initial_state()
    start_epoch, state = self._restore(manager, state)
    resume_offset, resume_loss = 0, None
    preempted = self._restore_preempted(state, start_epoch * self.steps_per_epoch)
    if preempted is not None:
      state, resume_loss = preempted
      start_epoch, resume_offset = divmod(int(state.step), self.steps_per_epoch)
      _log(f"resuming {self.workdir} from the mid-epoch checkpoint of epoch {start_epoch + 1} "
           f"step {resume_offset}/{self.steps_per_epoch}")
    elif start_epoch:
      _log(f"resuming {self.workdir} from the checkpoint of epoch {start_epoch}")
    self._truncate_metrics(start_epoch)
    last_saved = start_epoch
    if start_epoch >= self.num_epochs:
      _log(f"{self.workdir} finished all {self.num_epochs} epochs; recomputing the final "
           "embeddings")
    else:
      _log(f"training {self.dataset.name} ({self.num_train} train examples, K="
           f"{self.num_classes}) with {self.loss_kind}, {self.steps_per_epoch} steps/epoch of "
           f"{self.num_views} x {self.rows_per_batch} rows on {self.num_devices} device(s), "
           f"epochs {start_epoch + 1}..{self.num_epochs} -> {self.workdir}")

    events = tensorboard_events.TrainingEvents.for_trainer(self, start_epoch)
    seed = self._global_array(np.asarray(int(self.config.seed), np.uint32), self.replicated)
    show_bar = _is_main_process() and sys.stderr.isatty()
    run_start = time.time()
    record, train_emb, test_emb = None, None, None
    every = max(1, int(self.config.get("checkpoint_every_epochs", 10)))
    for epoch in range(start_epoch + 1, self.num_epochs + 1):
      epoch_start = time.time()
      schedule, padded = self.padded_schedule(epoch)
      device_schedule = self._global_array(padded, self.schedule_sharding)
      first_step = resume_offset if epoch == start_epoch + 1 else 0
      loss_sum = (resume_loss if first_step else
                  self._global_array(np.zeros((), np.float32), self.replicated))
      bar = None
      if show_bar:
        from tqdm import tqdm  # pylint: disable=g-import-not-at-top
        bar = tqdm(total=self.steps_per_epoch, initial=first_step,
                   desc=f"epoch {epoch}/{self.num_epochs}", leave=False, file=sys.stderr)
      refresh = max(1, self.steps_per_epoch // 10)
      for i in range(first_step, self.steps_per_epoch):
        state, loss_sum = self.train_step(state, loss_sum, device_schedule, row_mask,
                                          train_x, train_y, seed)
        if stop.requested and i + 1 < self.steps_per_epoch:
          self._stop(stop.signum, epoch, state, loss_sum, i + 1)
        if bar is not None:
          bar.update(1)
          if (i + 1) % refresh == 0 or i + 1 == self.steps_per_epoch:
            rate = (i + 1) * self.num_views * self.rows_per_batch / (time.time() - epoch_start)
            bar.set_postfix(loss=f"{float(loss_sum) / (i + 1):.4f}", img_s=f"{rate:.0f}")
      if bar is not None:
        bar.close()
      problem = self._health(state, loss_sum)
      if problem is not None:
        raise Diverged(f"diverged at epoch {epoch} ({problem}); nothing of epoch {epoch} was "
                       f"saved: {self.workdir} keeps the checkpoint of epoch {last_saved} and "
                       f"the metrics before epoch {epoch}; lower lr (now {self.config.lr})")

      if epoch in self.log_epochs:
        train_loss = float(loss_sum) / self.steps_per_epoch  # syncs: the epoch is done
        epoch_seconds = time.time() - epoch_start
        geometry, train_emb, test_emb = self.evaluate(state)
        params_sq = float(sum(jnp.vdot(p, p) for p in jax.tree.leaves(state.params)))
        floor = (optimal_loss(self.train_y_host, schedule, temperature=self.temperature,
                              views=self.num_views, loss_scale=self.loss_scale,
                              num_classes=self.num_classes)
                 if self.loss_kind == "scl" else None)
        record = {
            "epoch": epoch, "step": int(state.step),
            "lr": float(self.lr_schedule(epoch * self.steps_per_epoch - 1)),
            "train_loss": train_loss, "optimal_loss": floor,
            "loss_gap": None if floor is None else train_loss - floor,
            "reg_loss": train_loss + 0.5 * float(self.config.weight_decay) * params_sq,
            **geometry, **self.certificates(epoch, schedule),
            "seconds": time.time() - run_start,
            "images_per_second": (self.steps_per_epoch * self.num_views * self.rows_per_batch
                                  / max(epoch_seconds, 1e-9)),
        }
        self._append_metrics(record)
        _log(f"epoch {epoch:4d} loss {train_loss:.4f}"
             + ("" if floor is None else f" (OF floor {floor:.4f})")
             + f" dist_of {record['dist_of']:.4f} nc1 {record['nc1']:.3g}"
             f" ncc train/test {record['ncc_acc_train']:.4f}/{record['ncc_acc_test']:.4f}"
             f" {record['images_per_second']:.0f} img/s")
      if events is not None:
        events.epoch(epoch, loss_sum, record if epoch in self.log_epochs else None)
      if epoch % every == 0 or epoch == self.num_epochs or stop.requested:
        self._save(manager, epoch, state)
        last_saved = epoch
      if stop.requested and epoch < self.num_epochs:
        self._stop(stop.signum, epoch, None, None, self.steps_per_epoch)

    if record is None:  # a finished run started again: recompute the final outputs
      geometry, train_emb, test_emb = self.evaluate(state)
      record = self._last_metrics() or geometry
    self._save_embeddings(train_emb, test_emb)
    manager.close()
    if events is not None:
      events.close()
    _log(f"done: epoch {self.num_epochs}, dist_of {record['dist_of']:.4f}, nc1 "
         f"{record['nc1']:.3g}, NCC acc train {record['ncc_acc_train']:.4f} test "
         f"{record['ncc_acc_test']:.4f}; files in {self.workdir} (metrics.jsonl, "
         "embeddings_final.npz, checkpoints/, config.json)")
    return RunResult(metrics=record, workdir=self.workdir,
                     epochs_run=self.num_epochs - start_epoch)

  def _stop(self, signum: int, epoch: int, state, loss_sum, step_in_epoch: int):
    """Saves a mid-epoch checkpoint (``state`` given) and raises interrupts.Stopped."""
    if state is not None:
      self._save_preempted(state, loss_sum)
    name = interrupts.signal_name(signum)
    raise interrupts.Stopped(
        signum, f"stopped by {name} after step {step_in_epoch}/{self.steps_per_epoch} of epoch "
        f"{epoch}; saved a checkpoint there: start the same command again to resume")

  def _last_metrics(self) -> dict | None:
    records = workdir_lib.read_metrics(self.workdir)
    return records[-1] if records else None


def train_and_evaluate(config, workdir: str) -> RunResult:
  """Runs (or resumes) the training described by ``config`` in ``workdir``."""
  return Trainer(config, workdir).run()
