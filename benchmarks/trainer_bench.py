"""Trainer throughput: images/s of the training step against the network's bare fwd+bwd.

Three cases, timed in the same run and interleaved, on synthetic CIFAR-shaped data held on
the device:

* `trainer`: `deepnet.train.train_step`, the project's jitted step (index gather from
  the on-device training set, the two views, the model, SCL on the global batch, SGD with
  coupled weight decay, the loss accumulator), with its state donated;
* `assembled`: a minimal SCL step (random-index gather, vflip view, model, SCL, optax SGD),
  a floor for what such a step costs;
* `fwd_bwd`: the same ResNet-18 on the same 2B images, train-mode forward and backward of a
  trivial scalar, nothing else.

Images count both views. `trainer / fwd_bwd` near 1 means the step adds little to the
network's own work.
"""

from __future__ import annotations

import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import gpu_bench
from deepnet import models
from geometry import losses

NUM_CLASSES = 10


def _synthetic_dataset(num_examples: int, side: int):
  from deepnet import data as data_lib
  rng = np.random.default_rng(0)
  x = rng.standard_normal((num_examples, side, side, 3), dtype=np.float32)
  y = np.sort(np.arange(num_examples) % NUM_CLASSES).astype(np.int32)
  test_x = x[:2 * NUM_CLASSES]
  test_y = (np.arange(2 * NUM_CLASSES) % NUM_CLASSES).astype(np.int32)
  sizes = np.bincount(y, minlength=NUM_CLASSES).tolist()
  return data_lib.Dataset(name="synthetic", kind="image", train_x=x, train_y=y, test_x=test_x,
                          test_y=test_y, num_classes=NUM_CLASSES, class_sizes=sizes,
                          majority=list(range(NUM_CLASSES // 2)))


def _trainer_case(width: float, batch: int, side: int, num_examples: int):
  """(step closure, images per step, model, state) of the project's train_step, or raises."""
  from deepnet import run_setup
  from experiments.configs import cifar10_resnet18
  config = cifar10_resnet18.get_config()
  config.model.width = width
  config.batch_size = batch
  config.num_epochs = 1
  config.loss_scale = 1.0
  config.data.views = "vflip"
  workdir = tempfile.mkdtemp(prefix="bench_trainer_")
  setup = run_setup.setup_run(config, workdir, dataset=_synthetic_dataset(num_examples, side))
  step, state = gpu_bench.trainer_step(setup)
  return (lambda: step()[1]), setup.num_views * batch, setup.model, state


def make_train_step(model, tx, batch_size: int, temperature: float = 0.1):
  """The SCL step: gather -> two views (x, vflip x) -> ResNet -> SCL -> SGD.

  state = (step, params, batch_stats, opt_state); the caller jits it with the state donated.
  The batch is drawn on the device from fold_in(key, step), so the host sends nothing.
  """

  def train_step(state, train_x, train_y, key):
    step, params, batch_stats, opt_state = state
    idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0,
                             train_x.shape[0])
    x = jnp.take(train_x, idx, axis=0)
    y = jnp.take(train_y, idx, axis=0)
    views = jnp.concatenate([x, x[:, ::-1]], axis=0)   # the paper's deterministic 2nd view
    labels = jnp.concatenate([y, y])

    def loss_fn(params):
      out, updates = model.apply({"params": params, "batch_stats": batch_stats}, views,
                                 train=True, mutable=["batch_stats"])
      loss = losses.supcon_loss(out["embedding"], labels, temperature=temperature,
                                reduction="mean")
      return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (step + 1, params, batch_stats, opt_state), loss

  return train_step


def run(width: float, batch: int, side: int, steps: int, rounds: int) -> dict:
  """Best-round images/s of each case and the ratios to fwd_bwd."""
  num_examples = max(4 * batch, 256)
  result = {"width": width, "batch": batch, "views": 2, "image_side": side, "steps": steps}
  cases = {}
  try:
    step, images, model, state = _trainer_case(width, batch, side, num_examples)
    cases["trainer"] = (step, images)
    params, batch_stats = state.params, state.batch_stats
    result["trainer_source"] = "deepnet.train.train_step"
  except Exception as e:  # the trainer is another module's; report instead of failing
    result["trainer_error"] = f"{type(e).__name__}: {e}"
    model = models.create_model(gpu_bench.model_config(width, "float32"), NUM_CLASSES)
    variables = model.init(jax.random.key(0), jnp.zeros((2, side, side, 3)), train=False)
    params, batch_stats = variables["params"], variables["batch_stats"]

  rng = np.random.default_rng(1)
  train_x = jnp.asarray(rng.standard_normal((num_examples, side, side, 3), dtype=np.float32))
  train_y = jnp.asarray((np.arange(num_examples) % NUM_CLASSES).astype(np.int32))
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  assembled = jax.jit(make_train_step(model, tx, batch), donate_argnums=(0,))
  # Copies, so that donating this state never invalidates the trainer's arrays.
  own = jax.tree.map(jnp.array, (params, batch_stats))
  # Committed to the device like the step's outputs, so the second call does not recompile.
  carry = {"state": jax.device_put((jnp.zeros((), jnp.int32), own[0], own[1], tx.init(own[0])),
                                   jax.devices()[0])}
  key = jax.random.key(2)

  def assembled_step():
    carry["state"], loss = assembled(carry["state"], train_x, train_y, key)
    return loss

  cases["assembled"] = (assembled_step, 2 * batch)
  fwd_bwd = jax.jit(gpu_bench.make_fwd_bwd(model))
  views = jnp.concatenate([train_x[:batch], train_x[:batch, ::-1]], axis=0)
  fb_params = jax.tree.map(jnp.array, (params, batch_stats))
  cases["fwd_bwd"] = (lambda: fwd_bwd(fb_params[0], fb_params[1], views), 2 * batch)

  first = {}
  for name, (fn, _) in cases.items():
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first[name] = time.perf_counter() - start
    jax.block_until_ready(fn())   # a second warm-up call: a recompile would show up here
  best = {name: float("inf") for name in cases}
  best_cpu = {name: float("inf") for name in cases}
  for _ in range(rounds):
    for name, (fn, _) in cases.items():
      cpu0, wall0 = time.process_time(), time.perf_counter()
      for _ in range(steps):
        out = fn()
      jax.block_until_ready(out)
      best[name] = min(best[name], (time.perf_counter() - wall0) / steps)
      best_cpu[name] = min(best_cpu[name], (time.process_time() - cpu0) / steps)
  for name, (_, images) in cases.items():
    result[f"{name}_images_per_second"] = images / best[name]
    result[f"{name}_seconds_per_step"] = best[name]
    result[f"{name}_cpu_seconds_per_step"] = best_cpu[name]
    result[f"{name}_first_call_seconds"] = first[name]
  for name in cases:
    if name != "fwd_bwd":
      result[f"{name}_vs_fwd_bwd"] = best["fwd_bwd"] / best[name]
      result[f"{name}_vs_fwd_bwd_cpu"] = best_cpu["fwd_bwd"] / best_cpu[name]
  return result
