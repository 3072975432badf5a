"""Training of the deep networks, in the shape of the Flax examples.

  setup = run_setup.setup_run(config, workdir)      # data, mesh, model, optimiser; checks
  state = create_train_state(setup, seed)            # params, batch_stats, opt_state, step
  state, loss_sum = train_step(state, loss_sum, schedule, row_mask, train_x, train_y, seed,
                               setup=setup)          # pure; jitted with donation by the loop
  emb = evaluate.eval_step(state.params, state.batch_stats, x_all, idx, setup=setup)  # eval mode
  train_and_evaluate(config, workdir)                # the whole run, resumable

One run does, for epochs e = 1 .. E:

1. builds the epoch's ``[S, G]`` schedule on the host, a pure function of ``(seed, e)``
   (``run_setup.epoch_schedule``: S steps, G = batch_size + K * binding rows);
2. puts that array on the devices once (columns sharded over the ``("data",)`` mesh) and runs
   S calls of the jitted ``train_step``. The step gathers ``x[idx]`` from the training set,
   which lives on the devices as one replicated array, builds the views there
   (``deepnet.data.make_views``), and computes the loss on the whole global batch;
3. at the logged epochs, evaluates the geometry (``deepnet.evaluate``) and appends one line
   to ``metrics.jsonl``;
4. every ``checkpoint_every_epochs`` epochs and at the end, saves the train state with orbax
   (``deepnet.checkpoints``).

``run.json`` (``deepnet.run_record``) is written before the first epoch with
``epochs.reached`` null, and rewritten with the last epoch whose steps all ran at the end of
the run (before ``embeddings_final.npz``, written last) and when it stops (a signal, a
divergence).

Loss (docs/theory.md#scl-loss): SCL ``supcon_loss(reduction="mean")`` on the V * G
L2-normalised embeddings with the labels repeated per view, or CE on the logits of every view,
times ``loss_scale`` (10/7 in the paper-faithful configs, docs/theory.md#loss-scale). The
optimiser and its schedules are in ``deepnet.optim``.

Determinism and resume: the schedule of epoch e depends on ``(seed, e)`` only, the key of step
t is ``fold_in(fold_in(key(seed), 1), t)``, and checkpoints hold the whole train state, so a
run killed at any moment and started again resumes from its last checkpoint and writes the
same ``metrics.jsonl`` as an uninterrupted run (lines after the checkpoint are rewritten).
What a run guarantees under faults (kill, corrupted checkpoints, a second process on the
workdir, SIGTERM / SIGINT, divergence, disk full) is in ``docs/faults_training.md``.

Padding: a global batch whose G rows do not divide over the D devices is padded to a multiple
of D with masked rows. They are removed from the loss (``where=``) and from every BatchNorm's
batch statistics (the models' ``mask`` argument), so the result equals the unpadded batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from typing import Any

import flax
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np

from deepnet import checkpoints as checkpoints_lib
from deepnet import config as config_lib
from deepnet import evaluate as evaluate_lib
from deepnet import interrupts
from deepnet import models
from deepnet import monitor
from deepnet import run_record as run_record_lib
from deepnet import run_setup as run_setup_lib
from deepnet import tensorboard_events
from deepnet import workdir as workdir_lib
from geometry import losses

ConfigError = config_lib.ConfigError
Diverged = monitor.Diverged
PREEMPTED_DIR = checkpoints_lib.PREEMPTED_DIR
RunSetup = run_setup_lib.RunSetup
setup_run = run_setup_lib.setup_run

# Keys of metrics.jsonl that depend on the machine, not on the run's numbers.
TIMING_KEYS = ("seconds", "images_per_second", "train_seconds", "eval_seconds")


class TrainState(train_state.TrainState):
  """Flax's train state (``step``, ``params``, ``opt_state``; ``apply_fn`` and ``tx`` static)
  plus the BatchNorm statistics; a pytree of replicated arrays. Checkpoints hold its
  ``flax.serialization.to_state_dict``: ``step``, ``params``, ``batch_stats``, ``opt_state``."""
  batch_stats: Any = None


@dataclasses.dataclass
class RunResult:
  """What ``train_and_evaluate`` returns: the last metrics line and where the files are."""
  metrics: dict
  workdir: str
  epochs_run: int


def create_train_state(setup: RunSetup, seed) -> TrainState:
  """The state at step 0: ``model.init`` with ``key(seed)`` and the optimiser's state."""
  variables = setup.init_variables(seed)
  state = TrainState.create(apply_fn=setup.model.apply, params=variables["params"],
                            tx=setup.tx, batch_stats=variables.get("batch_stats", {}))
  # A strongly typed step: a checkpoint's int32 step then matches it, so a resumed run reuses
  # the compiled train step.
  return state.replace(step=jnp.zeros((), jnp.int32))


def initial_state(setup: RunSetup) -> TrainState:
  """``create_train_state`` jitted onto the mesh, replicated. The seed is an argument, not a
  constant, so runs that differ only in it share the compiled program."""
  seed = run_setup_lib.global_array(np.asarray(int(setup.config.seed), np.uint32),
                                    setup.shardings.replicated)
  return jax.jit(functools.partial(create_train_state, setup),
                 out_shardings=setup.shardings.replicated)(seed)


def train_step(state: TrainState, loss_sum, schedule, row_mask, train_x, train_y, seed, *,
               setup: RunSetup):
  """One SGD step on row ``state.step mod S`` of the epoch's ``schedule`` ([S, G_pad]).

  L(theta) = loss_scale * mean over the V * G real rows (``row_mask`` per view) of SCL or CE,
  with BatchNorm in train mode over the same rows. Returns the new state and ``loss_sum``
  plus this step's loss (the epoch's loss stays on the device; the host reads it only at log
  points). ``seed`` (an int array) is an argument so that runs differing only in their seed
  share one compiled step (the persistent compilation cache, `deepnet.compilation_cache`).
  """
  config = setup.config
  row = state.step % setup.steps_per_epoch
  idx = jax.lax.dynamic_index_in_dim(schedule, row, axis=0, keepdims=False)
  x = jnp.take(train_x, idx, axis=0)
  y = jnp.take(train_y, idx, axis=0)
  # The step's key depends on (seed, step) only: resumed runs draw the same views.
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), state.step)
  x = setup.make_views(x, key)
  x = jax.lax.with_sharding_constraint(x, setup.shardings.rows)
  y = jnp.tile(y, setup.num_views)
  # Masks only when there are padding rows: masked BatchNorm costs time and compile time.
  mask = (jnp.tile(row_mask, setup.num_views) if setup.padded_rows > setup.rows_per_batch
          else None)

  def loss_fn(params):
    variables = {"params": params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    out, updates = models.apply_model(setup.model, variables, x, train=True, mask=mask)
    if config.loss == "scl":
      loss = losses.supcon_loss(out["embedding"], y, temperature=float(config.temperature),
                                where=mask, reduction="mean")
    else:
      loss = losses.cross_entropy_loss(out["logits"], y, where=mask, reduction="mean")
    return float(config.loss_scale) * loss, updates.get("batch_stats", {})

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return new_state, loss_sum + loss.astype(jnp.float32)


def compile_train_step(setup: RunSetup):
  """``train_step`` jitted for ``setup``, the state and the loss sum donated."""
  return jax.jit(functools.partial(train_step, setup=setup), donate_argnums=(0, 1),
                 out_shardings=setup.shardings.replicated)


def _is_main_process() -> bool:
  return jax.process_index() == 0


def _log(message: str) -> None:
  if _is_main_process():
    print(message, flush=True)


def evaluate(setup: RunSetup, p_eval, state: TrainState, train_x, test_x, *,
             final: bool = True):
  """(geometry dict, train embeddings, test embeddings) of ``state`` (``deepnet.evaluate``):
  every train example, and every test example when ``final`` (else ``setup.eval_test_rows``);
  raises Diverged when finite parameters still give non-finite embeddings (a huge lr without
  BatchNorm overflows the forward pass)."""
  test_rows = np.arange(len(setup.test_y)) if final else setup.eval_test_rows
  train_emb = evaluate_lib.embeddings(setup, p_eval, state, train_x, setup.num_train)
  test_emb = evaluate_lib.embeddings(setup, p_eval, state, test_x, test_rows)
  if not (np.isfinite(train_emb).all() and np.isfinite(test_emb).all()):
    epoch = int(state.step) // setup.steps_per_epoch
    raise monitor.diverged(setup.workdir, setup.config.lr, epoch, "embeddings not finite",
                           "its last checkpoint")
  return (evaluate_lib.geometry(setup, train_emb, test_emb, setup.test_y[test_rows]),
          train_emb, test_emb)


def train_and_evaluate(config, workdir: str) -> RunResult:
  """Runs (or resumes) the training described by ``config`` in ``workdir``."""
  return run(run_setup_lib.setup_run(config, workdir))


def run(setup: RunSetup, p_train_step=None) -> RunResult:
  """Trains from the last checkpoint (or from scratch) to ``num_epochs``; see the module
  docstring for what is written. ``p_train_step`` replaces ``compile_train_step(setup)``
  (a test that wraps the step).

  The workdir is locked for the whole run (``deepnet.workdir.WorkdirLock``; a second process
  gets ConfigError naming the holder). SIGTERM / SIGINT stop the run at the next step
  boundary with a checkpoint and raise ``deepnet.interrupts.Stopped``; a non-finite loss or
  parameter raises ``Diverged`` before anything of that epoch is saved.
  """
  lock = workdir_lib.WorkdirLock(setup.workdir)
  try:
    if _is_main_process():
      lock.acquire()
  except workdir_lib.WorkdirError as e:
    raise ConfigError(str(e)) from None
  try:
    # Several processes must stop at the same step; only a single one handles signals.
    with interrupts.StopSignals(install=jax.process_count() == 1) as stop:
      return _run(setup, stop, p_train_step or compile_train_step(setup))
  finally:
    lock.release()


def _run(setup: RunSetup, stop: interrupts.StopSignals, p_train_step) -> RunResult:
  finished, run_json = _start(setup)
  if finished is not None:
    return finished
  data = _device_data(setup)
  p_eval = evaluate_lib.compile_eval_step(setup)
  certificates = evaluate_lib.Certificates(setup)
  manager = checkpoints_lib.create_manager(f"{setup.workdir}/{checkpoints_lib.EPOCHS_DIR}")
  state, start_epoch, resume = _restore(setup, manager)
  events = tensorboard_events.TrainingEvents.for_run(setup, start_epoch)
  clock = monitor.Clock(start_epoch=start_epoch, num_epochs=setup.num_epochs, log=_log)
  last_saved = start_epoch
  record, train_emb, test_emb = None, None, None
  reached = start_epoch   # the last epoch whose steps all ran
  try:
    for epoch in range(start_epoch + 1, setup.num_epochs + 1):
      epoch_start = time.time()
      schedule, padded = setup.padded_schedule(epoch)
      first_step, loss_sum = resume if epoch == start_epoch + 1 else (0, None)
      state, loss_sum = train_epoch(setup, p_train_step, state, loss_sum, padded, data, epoch,
                                    first_step, stop)
      problem = monitor.health(state.params, loss_sum)
      if problem is not None:
        raise monitor.diverged(setup.workdir, setup.config.lr, epoch, problem,
                               f"the checkpoint of epoch {last_saved}")
      reached = epoch
      if epoch in setup.log_epochs:
        record, train_emb, test_emb = _log_epoch(setup, p_eval, state, loss_sum, schedule,
                                                 data, epoch, epoch_start, clock, certificates)
      else:  # monitor.health has waited for the epoch's steps
        clock.train_seconds += time.time() - epoch_start
        clock.progress(epoch, float(loss_sum) / setup.steps_per_epoch)
      if events is not None:
        events.epoch(epoch, loss_sum, record if epoch in setup.log_epochs else None)
      if (epoch % int(setup.config.checkpoint_every_epochs) == 0 or epoch == setup.num_epochs
          or stop.requested):
        checkpoints_lib.save_epoch(setup.workdir, manager, epoch, state,
                                   main=_is_main_process())
        last_saved = epoch
      if stop.requested and epoch < setup.num_epochs:
        _stop(setup, stop.signum, epoch, None, None, setup.steps_per_epoch)
  except (interrupts.Stopped, monitor.Diverged):
    _write_reached(setup, run_json, reached)
    raise
  _write_reached(setup, run_json, setup.num_epochs)
  manager.close()
  if events is not None:
    events.close()
  return _finish(setup, p_eval, state, data, record, train_emb, test_emb,
                 epochs_run=setup.num_epochs - start_epoch)


@dataclasses.dataclass
class _DeviceData:
  """The arrays every step and evaluation reads, put on the devices once (replicated)."""
  train_x: jax.Array
  train_y: jax.Array
  test_x: jax.Array
  row_mask: jax.Array
  seed: jax.Array


def _device_data(setup: RunSetup) -> _DeviceData:
  replicated = setup.shardings.replicated
  put = lambda a: run_setup_lib.global_array(a, replicated)
  return _DeviceData(train_x=put(np.asarray(setup.dataset.train_x, np.float32)),
                     train_y=put(setup.train_y),
                     test_x=put(np.asarray(setup.dataset.test_x, np.float32)),
                     row_mask=setup.row_mask(),
                     seed=put(np.asarray(int(setup.config.seed), np.uint32)))


def _start(setup: RunSetup) -> tuple[RunResult | None, dict | None]:
  """Checks the workdir against the config: (the RunResult of a run that finished already,
  None), else (None, the run.json written) after writing config.json and run.json."""
  config, workdir = setup.config, setup.workdir
  try:
    # "Finished" is decided first, on reads only: rerunning a finished run's command writes
    # nothing and needs no free space, so it succeeds on a full disk.
    workdir_lib.check_config(workdir, config_lib.config_to_dict(config))
    finished = workdir_lib.finished_record(workdir, setup.num_epochs)
    # The last epoch's checkpoint, saved whole, is the state a recomputation would start
    # from; without it the run resumes as usual.
    if finished is not None and checkpoints_lib.epoch_saved(workdir, setup.num_epochs):
      _log(f"{workdir} finished already (epoch {setup.num_epochs}); nothing to do")
      return RunResult(metrics=finished, workdir=workdir, epochs_run=0), None
    record = run_record_lib.run_descriptor(setup, run_record_lib.batching_advice(setup))
    workdir_lib.prepare(workdir, config_lib.config_to_dict(config), record, main=_is_main_process())
  except workdir_lib.WorkdirError as e:
    raise ConfigError(str(e)) from None
  return None, record


def _write_reached(setup: RunSetup, run_json: dict, epoch: int) -> None:
  """Rewrites run.json with ``epochs.reached`` = ``epoch`` (``run_record.with_reached``)."""
  workdir_lib.write_run_record(setup.workdir, run_record_lib.with_reached(run_json, epoch),
                               main=_is_main_process())


def _restore(setup: RunSetup, manager):
  """(state, start_epoch, (first step, loss sum) of the first epoch): from the newest epoch
  checkpoint, or the newer mid-epoch one, else from scratch; metrics.jsonl is cut back to the
  restored epoch."""
  workdir, steps, main = setup.workdir, setup.steps_per_epoch, _is_main_process()
  replicated = setup.shardings.replicated
  state = initial_state(setup)
  start_epoch, state = checkpoints_lib.restore_epoch(
      manager, state, sharding=replicated, steps_per_epoch=steps, log=_log, main=main)
  resume = (0, None)
  preempted = checkpoints_lib.restore_preempted(workdir, state, sharding=replicated,
                                                after_step=start_epoch * steps, log=_log,
                                                main=main)
  if preempted is not None:
    state, loss_sum = preempted
    start_epoch, offset = divmod(int(state.step), steps)
    resume = (offset, loss_sum if offset else None)
    _log(f"resuming {workdir} from the mid-epoch checkpoint of epoch {start_epoch + 1} "
         f"step {offset}/{steps}")
  elif start_epoch:
    _log(f"resuming {workdir} from the checkpoint of epoch {start_epoch}")
  if main:
    workdir_lib.truncate_metrics(workdir, start_epoch)
  if start_epoch >= setup.num_epochs:
    _log(f"{workdir} finished all {setup.num_epochs} epochs; recomputing the final "
         "embeddings")
  else:
    _log(f"training {setup.dataset.name} ({setup.num_train} train examples, K="
         f"{setup.num_classes}) with {setup.config.loss}, {steps} steps/epoch of "
         f"{setup.num_views} x {setup.rows_per_batch} rows on {setup.num_devices} device(s), "
         f"epochs {start_epoch + 1}..{setup.num_epochs} -> {workdir}")
  return state, start_epoch, resume


def train_epoch(setup: RunSetup, p_train_step, state: TrainState, loss_sum, padded, data,
                epoch: int, first_step: int, stop: interrupts.StopSignals):
  """(state, loss sum) after steps ``first_step`` .. S - 1 of ``epoch`` (``padded``: its
  [S, G_pad] schedule; ``loss_sum`` None starts the sum at 0). A stop request saves a
  mid-epoch checkpoint and raises; a terminal shows a progress bar."""
  steps = setup.steps_per_epoch
  device_schedule = run_setup_lib.global_array(padded, setup.shardings.schedule)
  if loss_sum is None:
    loss_sum = run_setup_lib.global_array(np.zeros((), np.float32), setup.shardings.replicated)
  bar = None
  if _is_main_process() and sys.stderr.isatty():
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=steps, initial=first_step, desc=f"epoch {epoch}/{setup.num_epochs}",
               leave=False, file=sys.stderr)
  epoch_start, refresh = time.time(), max(1, steps // 10)
  for i in range(first_step, steps):
    state, loss_sum = p_train_step(state, loss_sum, device_schedule, data.row_mask,
                                   data.train_x, data.train_y, data.seed)
    if stop.requested and i + 1 < steps:
      _stop(setup, stop.signum, epoch, state, loss_sum, i + 1)
    if bar is not None:
      bar.update(1)
      if (i + 1) % refresh == 0 or i + 1 == steps:
        rate = (i + 1) * setup.num_views * setup.rows_per_batch / (time.time() - epoch_start)
        bar.set_postfix(loss=f"{float(loss_sum) / (i + 1):.4f}", img_s=f"{rate:.0f}")
  if bar is not None:
    bar.close()
  return state, loss_sum


def _log_epoch(setup: RunSetup, p_eval, state: TrainState, loss_sum, schedule, data, epoch: int,
               epoch_start: float, clock: monitor.Clock, certificates):
  """Evaluates a logged epoch, appends its metrics.jsonl line and prints it; returns
  (record, train embeddings, test embeddings)."""
  steps = setup.steps_per_epoch
  train_loss = float(loss_sum) / steps  # syncs: the epoch is done
  epoch_seconds = time.time() - epoch_start
  clock.train_seconds += epoch_seconds
  eval_start = time.time()
  geometry, train_emb, test_emb = evaluate(setup, p_eval, state, data.train_x, data.test_x,
                                           final=epoch == setup.num_epochs)
  record = metrics_record(setup, epoch, state, train_loss, schedule, geometry,
                          certificates(epoch, schedule))
  clock.eval_seconds += time.time() - eval_start
  record["seconds"] = clock.seconds
  record["images_per_second"] = (steps * setup.num_views * setup.rows_per_batch
                                 / max(epoch_seconds, 1e-9))
  record["train_seconds"] = clock.train_seconds
  record["eval_seconds"] = clock.eval_seconds
  if _is_main_process():
    workdir_lib.append_metrics(setup.workdir, record)
  floor = record["optimal_loss"]
  clock.line(f"epoch {epoch:4d} loss {train_loss:.4f}"
             + ("" if floor is None else f" (OF floor {floor:.4f})")
             + f" dist_of {record['dist_of']:.4f} nc1 {record['nc1']:.3g}"
             f" ncc train/test {record['ncc_acc_train']:.4f}/{record['ncc_acc_test']:.4f}"
             f" {record['images_per_second']:.0f} img/s {clock.eta(epoch)}")
  return record, train_emb, test_emb


def _finish(setup: RunSetup, p_eval, state: TrainState, data, record, train_emb, test_emb, *,
            epochs_run: int) -> RunResult:
  """Saves the final embeddings (recomputed when the run was finished already) and returns
  the last metrics line."""
  workdir = setup.workdir
  if record is None:  # a finished run started again: recompute the final outputs
    geometry, train_emb, test_emb = evaluate(setup, p_eval, state, data.train_x, data.test_x)
    records = workdir_lib.read_metrics(workdir)
    record = records[-1] if records else geometry
  if _is_main_process():
    workdir_lib.save_embeddings(workdir, train_embeddings=train_emb, train_labels=setup.train_y,
                                test_embeddings=test_emb, test_labels=setup.test_y,
                                output=np.asarray(setup.metric_output))
  _log(f"done: epoch {setup.num_epochs}, dist_of {record['dist_of']:.4f}, nc1 "
       f"{record['nc1']:.3g}, NCC acc train {record['ncc_acc_train']:.4f} test "
       f"{record['ncc_acc_test']:.4f}; files in {workdir} (metrics.jsonl, "
       "embeddings_final.npz, checkpoints/, config.json)")
  return RunResult(metrics=record, workdir=workdir, epochs_run=epochs_run)


def metrics_record(setup: RunSetup, epoch: int, state: TrainState, train_loss: float,
                    schedule: np.ndarray, geometry: dict, certificates: dict) -> dict:
  """The metrics.jsonl line of a logged epoch, timings aside."""
  config = setup.config
  # Per module: SCL of normalised embeddings does not change when the last layer's parameters
  # are scaled, so their norm sets the effective step lr / ||w||^2 (docs/training.md#jumps).
  flat = flax.traverse_util.flatten_dict(state.params)
  # One host transfer for every leaf's sum of squares.
  leaf_squares = jax.device_get({path: jnp.vdot(p, p) for path, p in flat.items()})
  squares = {}
  for path, sq in leaf_squares.items():
    key = "/".join(path[:-1])
    squares[key] = squares.get(key, 0.0) + float(sq)
  params_sq = sum(squares.values())
  floor = (evaluate_lib.optimal_loss(setup.train_y, schedule,
                                     temperature=float(config.temperature),
                                     views=setup.num_views,
                                     loss_scale=float(config.loss_scale),
                                     num_classes=setup.num_classes)
           if config.loss == "scl" else None)
  return {
      "epoch": epoch, "step": int(state.step),
      "lr": float(setup.lr_schedule(epoch * setup.steps_per_epoch - 1)),
      "train_loss": train_loss, "optimal_loss": floor,
      "loss_gap": None if floor is None else train_loss - floor,
      "reg_loss": train_loss + 0.5 * float(config.weight_decay) * params_sq,
      "param_norms": {k: math.sqrt(v) for k, v in squares.items()},
      **geometry, **certificates,
  }


def _stop(setup: RunSetup, signum: int, epoch: int, state, loss_sum, step_in_epoch: int):
  """Saves a mid-epoch checkpoint (``state`` given) and raises interrupts.Stopped."""
  if state is not None:
    checkpoints_lib.save_preempted(setup.workdir, state, loss_sum, main=_is_main_process())
  name = interrupts.signal_name(signum)
  raise interrupts.Stopped(
      signum, f"stopped by {name} after step {step_in_epoch}/{setup.steps_per_epoch} of "
      f"epoch {epoch}; saved a checkpoint there: start the same command again to resume")
