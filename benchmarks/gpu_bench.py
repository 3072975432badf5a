"""GPU benchmark: ResNet-18 SCL training throughput and the full-batch streaming UFM+.

Run on one accelerator, offline, with nothing installed beyond jax, flax, optax and numpy
(plus this repository on the path):

  python -m benchmarks.gpu_bench --out gpu_bench.json     # about 3-5 minutes on one GPU
  python -m benchmarks.gpu_bench --tiny                   # CPU smoke run (tests)

What it measures, on synthetic CIFAR-shaped data that lives on the device:

1. ResNet-18 (CIFAR stem, width 1, d = 512) trained with SCL on two views (the batch and its
   vertical flip, concatenated: 2B images per step), SGD with momentum and weight decay, at
   batch B = 512 and 1024, in bfloat16 and float32 compute. The SCL logits and log-sum-exp
   are float32 whatever the compute dtype (`geometry.losses.supcon_loss` promotes). The step
   is the training runs' own `deepnet.train.train_step`, jitted with the train state donated
   (`deepnet.train.compile_train_step`): it gathers the batch by index from the training set
   on the device (one seeded partition, `batching="fixed"`), builds the views there and
   keeps the loss sum on the device, so there is no host round trip per step. Images per
   second count both views. The same network's bare forward + backward (no views, gather,
   SCL or optimiser) is
   timed next to it, so `step_vs_fwd_bwd` says what the training step costs on top.
2. UFM+ solved by full-batch projected gradient at N = 100,000 (K = 10 balanced, d = 16):
   h <- normalise(relu(h - lr * grad)), with `supcon_loss(..., reduction="sum",
   block_size=b)` (the streaming path; the dense N x N path would need hundreds of GB).

The UFM+ part runs first (it is quick). The fwd+bwd baselines cost one compilation each
and are skipped once half of --budget-s (270 s) has passed, so the whole script stays under
5 minutes; the JSON is rewritten after every measurement, so a run cut short keeps its numbers.

It writes every number as JSON to --out (default $OUT/gpu_bench.json when $OUT is set, else
gpu_bench.json). Timing: a warm-up that includes the compilation, then timed steps with one
`block_until_ready` at the end.

Imports: jax, flax, optax, numpy and the project's `geometry` and `deepnet` (whose training
step imports no orbax, ml_collections or TensorFlow) only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepnet import models
from geometry import losses

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


# ----------------------------------------------------------------------------------------------
# ResNet-18 SCL training step


def model_config(width: float, dtype: str) -> dict:
  """Every `model` field create_model reads, as a plain dict (no ml_collections here): the
  recipe's ResNet-18 (experiments/configs/cifar10_resnet18.py) at ``width`` and ``dtype``."""
  return dict(name="resnet18", width=width, final_relu=True, extra_linear=False, head_dim=0,
              mlp_widths=(256, 256), mlp_norm="all", projection_dim=0, projection_relu=True,
              dtype=dtype)


def train_setup(model, tx, batch_size: int, train_x: np.ndarray, train_y: np.ndarray,
                temperature: float = 0.1):
  """The ``deepnet.run_setup.RunSetup`` of an SCL run of ``model`` on (train_x, train_y) with
  the paper's views (the batch and its vertical flip) and batches of ``batch_size``: what
  ``deepnet.train.train_step`` reads, built without a config file (no ml_collections here)."""
  from deepnet import data as data_lib  # pylint: disable=g-import-not-at-top
  from deepnet import run_setup  # pylint: disable=g-import-not-at-top
  shardings = run_setup.Shardings.over_all_devices()
  dataset = data_lib.Dataset(name="synthetic", kind="image", train_x=train_x, train_y=train_y,
                             test_x=train_x[:NUM_CLASSES], test_y=train_y[:NUM_CLASSES],
                             num_classes=NUM_CLASSES,
                             class_sizes=np.bincount(train_y, minlength=NUM_CLASSES).tolist(),
                             majority=[])
  padded = run_setup.round_up(batch_size, shardings.num_devices)
  config = types.SimpleNamespace(loss="scl", temperature=temperature, loss_scale=1.0, seed=0)
  return run_setup.RunSetup(
      config=config, workdir="", dataset=dataset, shardings=shardings, model=model, tx=tx,
      lr_schedule=lambda count: 0.1,
      make_views=functools.partial(data_lib.make_views, mode="vflip", kind="image"),
      num_views=2, steps_per_epoch=len(train_y) // batch_size, rows_per_batch=batch_size,
      padded_rows=padded, eval_chunk=padded, num_epochs=1, log_epochs=[1],
      binding=np.zeros((0,), np.int64), eval_test_rows=np.arange(NUM_CLASSES),
      embedding_dim=model_embedding_dim(model), metric_output="embedding")


def model_embedding_dim(model) -> int:
  return models.backbone_dim(dict(model_config(model.width, "float32"), name=model.arch,
                                  mlp_widths=model.mlp_widths))


def trainer_step(setup, seed: int = 1):
  """(step closure, a copy of the initial state) of ``deepnet.train.train_step`` for ``setup``:
  the step the training runs use, jitted with its state donated
  (``deepnet.train.compile_train_step``), on the one seeded drop-last partition of the
  training set that ``batching="fixed"`` gives. The copy stays valid after the first step
  deletes the donated original (on devices that donate)."""
  from deepnet import run_setup  # pylint: disable=g-import-not-at-top
  from deepnet import train as train_lib  # pylint: disable=g-import-not-at-top
  from geometry import batching as batching_lib  # pylint: disable=g-import-not-at-top
  replicated = setup.shardings.replicated
  batches = np.asarray(batching_lib.epoch_batches("fixed", setup.num_train,
                                                  setup.rows_per_batch, seed, 1), np.int32)
  padded = np.zeros((len(batches), setup.padded_rows), np.int32)
  padded[:, :batches.shape[1]] = batches
  schedule = run_setup.global_array(padded, setup.shardings.schedule)
  train_x = run_setup.global_array(np.asarray(setup.dataset.train_x, np.float32), replicated)
  train_y = run_setup.global_array(setup.train_y, replicated)
  row_mask = setup.row_mask()
  seed_array = run_setup.global_array(np.asarray(seed, np.uint32), replicated)
  step_fn = train_lib.compile_train_step(setup)
  state = train_lib.initial_state(setup)
  carry = {"state": state,
           "loss_sum": run_setup.global_array(np.zeros((), np.float32), replicated)}

  def step():
    before = carry["loss_sum"]
    carry["state"], carry["loss_sum"] = step_fn(carry["state"], before, schedule, row_mask,
                                                train_x, train_y, seed_array)
    return carry["state"], carry["loss_sum"]

  return step, jax.tree.map(jnp.copy, state)


def make_fwd_bwd(model):
  """The bare network: forward (train-mode BN) and backward of a trivial scalar."""

  def fwd_bwd(params, batch_stats, views):
    def scalar(params):
      out, updates = model.apply({"params": params, "batch_stats": batch_stats}, views,
                                 train=True, mutable=["batch_stats"])
      return jnp.sum(out["features"]), updates["batch_stats"]
    grads, batch_stats = jax.grad(scalar, has_aux=True)(params)
    return grads, batch_stats

  return fwd_bwd


def synthetic_data(num_examples: int, seed: int = 0):
  """CIFAR-shaped normalised images and balanced labels, on the device."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((num_examples,) + IMAGE_SHAPE, dtype=np.float32)
  y = (np.arange(num_examples) % NUM_CLASSES).astype(np.int32)
  return jnp.asarray(x), jnp.asarray(y)


def bench_resnet(batch: int, dtype: str, *, width: float, steps: int, warmup: int,
                 train_x, train_y, with_fwd_bwd: bool = True) -> dict:
  """Images/s of the SCL train step (two views) and of the bare forward+backward."""
  model = models.create_model(model_config(width, dtype), NUM_CLASSES, classifier=False)
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
  step_fn, _ = trainer_step(train_setup(model, tx, batch, np.asarray(train_x),
                                        np.asarray(train_y)))

  start = time.perf_counter()
  for _ in range(warmup):
    state, loss_sum = step_fn()
  jax.block_until_ready(loss_sum)
  warmup_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, loss_sum = step_fn()
  jax.block_until_ready((state, loss_sum))
  seconds = time.perf_counter() - start
  before = float(loss_sum)
  state, loss_sum = step_fn()
  loss = float(loss_sum) - before   # the loss of one more step
  images = 2 * batch * steps
  result = {"batch": batch, "views": 2, "dtype": dtype, "width": width, "steps": steps,
            "seconds_per_step": seconds / steps, "images_per_second": images / seconds,
            "warmup_seconds_incl_compile": warmup_seconds, "final_loss": loss}

  if with_fwd_bwd:
    fwd_bwd = jax.jit(make_fwd_bwd(model))
    views = jnp.concatenate([train_x[:batch], train_x[:batch, ::-1]], axis=0)
    params, batch_stats = state.params, state.batch_stats
    for _ in range(warmup):
      out = fwd_bwd(params, batch_stats, views)
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(steps):
      out = fwd_bwd(params, batch_stats, views)
    jax.block_until_ready(out)
    fb_seconds = time.perf_counter() - start
    result["fwd_bwd_images_per_second"] = images / fb_seconds
    result["step_vs_fwd_bwd"] = result["images_per_second"] / result["fwd_bwd_images_per_second"]
  return result


# ----------------------------------------------------------------------------------------------
# Full-batch streaming UFM+


def ufm_plus_start(n: int, dim: int, seed: int = 0):
  """A random non-negative unit-norm start (never near the answer) and balanced labels."""
  rng = np.random.default_rng(seed)
  h = np.abs(rng.standard_normal((n, dim))).astype(np.float32)
  h /= np.linalg.norm(h, axis=1, keepdims=True)
  labels = (np.arange(n) * NUM_CLASSES // n).astype(np.int32)   # class-sorted, balanced
  return jnp.asarray(h), jnp.asarray(labels)


def make_ufm_step(loss_fn, block_size: int, temperature: float, learning_rate: float):
  """One projected-gradient step of UFM+: h <- normalise(relu(h - lr * grad))."""

  def step(h, labels):
    value, grad = jax.value_and_grad(lambda e: loss_fn(
        e, labels, temperature=temperature, reduction="sum", block_size=block_size))(h)
    new = jnp.maximum(h - learning_rate * grad, 0.0)
    norm = jnp.linalg.norm(new, axis=1, keepdims=True)
    ok = norm > 1e-12
    return jnp.where(ok, new / jnp.where(ok, norm, 1.0), h), value

  return step


def bench_ufm(n: int, dim: int, block_size: int, steps: int, warmup: int,
              loss_fn=None, learning_rate: float | None = None) -> dict:
  loss_fn = losses.supcon_loss if loss_fn is None else loss_fn
  h, labels = ufm_plus_start(n, dim)
  # A row's gradient in the sum form is O(1/tau) whatever N (its own term plus its 1/N-weighted
  # share of the others'), so a fixed step moves each row by O(lr / tau).
  learning_rate = 0.01 if learning_rate is None else learning_rate
  step = jax.jit(make_ufm_step(loss_fn, block_size, 0.1, learning_rate), donate_argnums=(0,))
  start = time.perf_counter()
  first = None
  for _ in range(warmup):
    h, value = step(h, labels)
    first = value if first is None else first
  jax.block_until_ready(h)
  warmup_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    h, value = step(h, labels)
  jax.block_until_ready((h, value))
  seconds = time.perf_counter() - start
  return {"n": n, "dim": dim, "classes": NUM_CLASSES, "block_size": block_size,
          "dtype": "float32", "steps": steps, "seconds_per_step": seconds / steps,
          "steps_per_second": steps / seconds, "warmup_seconds_incl_compile": warmup_seconds,
          "loss_first": float(first), "loss_last": float(value),
          "loss_finite": bool(np.isfinite(float(value)))}


# ----------------------------------------------------------------------------------------------


def default_out() -> str:
  out_dir = os.environ.get("OUT")
  return os.path.join(out_dir, "gpu_bench.json") if out_dir else "gpu_bench.json"


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tiny", action="store_true",
                      help="tiny sizes for a CPU smoke run (tests): width 1/16, batch 4, "
                           "2 steps, UFM+ at N = 512")
  parser.add_argument("--out", default=None, help="JSON path (default $OUT/gpu_bench.json)")
  parser.add_argument("--batches", default=None, help="comma-separated batch sizes (512,1024)")
  parser.add_argument("--dtypes", default="bfloat16,float32")
  parser.add_argument("--steps", type=int, default=None, help="timed steps per config (20)")
  parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (3)")
  parser.add_argument("--ufm-n", type=int, default=None, help="UFM+ rows (100000)")
  parser.add_argument("--ufm-steps", type=int, default=None, help="timed UFM+ steps (10)")
  parser.add_argument("--block-size", type=int, default=None, help="UFM+ block size (4096)")
  parser.add_argument("--no-fwd-bwd", action="store_true",
                      help="skip the bare forward+backward baseline")
  parser.add_argument("--budget-s", type=float, default=270.0,
                      help="the fwd+bwd baselines (one compilation each) are skipped once "
                           "half of this many seconds has passed")
  parser.add_argument("--skip-resnet", action="store_true")
  parser.add_argument("--skip-ufm", action="store_true")
  args = parser.parse_args(argv)
  tiny = args.tiny
  pick = lambda value, full, small: value if value is not None else (small if tiny else full)
  args.batch_list = [int(b) for b in pick(args.batches, "512,1024", "4").split(",")]
  args.dtype_list = [d.strip() for d in args.dtypes.split(",") if d.strip()]
  args.steps = pick(args.steps, 20, 2)
  args.warmup = pick(args.warmup, 3, 1)
  args.ufm_n = pick(args.ufm_n, 100_000, 512)
  args.ufm_steps = pick(args.ufm_steps, 10, 2)
  args.block_size = pick(args.block_size, 4096, 128)
  args.width = 1.0 / 16 if tiny else 1.0
  args.num_examples = 64 if tiny else 16_384
  args.out = args.out or default_out()
  for name in ("steps", "warmup", "ufm_n", "ufm_steps", "block_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1")
  if min(args.batch_list) < 2:
    parser.error("--batches must be >= 2")
  for dtype in args.dtype_list:
    if dtype not in ("bfloat16", "float32"):
      parser.error(f"--dtypes: unknown dtype {dtype!r}")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  started = time.perf_counter()
  device = jax.devices()[0]
  report = {"device_kind": device.device_kind, "platform": device.platform,
            "device_count": jax.device_count(), "jax": jax.__version__,
            "python": platform.python_version(), "tiny": args.tiny, "resnet18_scl": [],
            "ufm_plus_streaming": []}
  print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}", flush=True)

  # UFM+ first: it is quick and it is the headline number of the streaming path.
  if not args.skip_ufm:
    candidates = [("geometry.losses.supcon_loss", losses.supcon_loss)]
    for name, loss_fn in candidates:
      row = bench_ufm(args.ufm_n, 16, args.block_size, args.ufm_steps, args.warmup,
                      loss_fn=loss_fn)
      row["loss_impl"] = name
      report["ufm_plus_streaming"].append(row)
      print(f"ufm+ full batch N={row['n']} d=16 b={row['block_size']} [{name}]  "
            f"{row['steps_per_second']:.2f} steps/s ({row['seconds_per_step'] * 1e3:.0f} ms/step),"
            f" loss {row['loss_first']:.1f} -> {row['loss_last']:.1f}", flush=True)
      _write(args.out, report, started)

  if not args.skip_resnet:
    train_x, train_y = synthetic_data(args.num_examples)
    for dtype in args.dtype_list:
      for batch in args.batch_list:
        # Each baseline is one more compilation: keep them while the budget allows.
        elapsed = time.perf_counter() - started
        with_fwd_bwd = not args.no_fwd_bwd and elapsed < 0.5 * args.budget_s
        row = bench_resnet(batch, dtype, width=args.width, steps=args.steps,
                           warmup=args.warmup, train_x=train_x, train_y=train_y,
                           with_fwd_bwd=with_fwd_bwd)
        report["resnet18_scl"].append(row)
        extra = (f", fwd+bwd alone {row['fwd_bwd_images_per_second']:.0f} img/s "
                 f"(step/fwd+bwd {row['step_vs_fwd_bwd']:.2f})") if "step_vs_fwd_bwd" in row else ""
        print(f"resnet18 scl  batch {batch:5d} x2 views  {dtype:8s}  "
              f"{row['images_per_second']:9.0f} img/s  ({row['seconds_per_step'] * 1e3:.1f} "
              f"ms/step){extra}", flush=True)
        _write(args.out, report, started)

  _write(args.out, report, started)
  print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
  return 0


def _write(path: str, report: dict, started: float) -> None:
  report["total_seconds"] = time.perf_counter() - started
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(report, f, indent=2)
  os.replace(path + ".tmp", path)


if __name__ == "__main__":
  sys.exit(main())
