r"""The loss jumps of a training recipe, epoch by epoch (docs/training.md#jumps).

  python -m benchmarks.loss_jumps --config=experiments/configs/fashion_mnist_cpu.py \
      --out=runs/jumps/R1_s2.jsonl --epochs=300 --config.seed=2 --config.data.ratio=1 \
      [--rescale=150:backbone/dense3:2] [--config.weight_decay=1e-4 ...]
  python -m benchmarks.loss_jumps --summary runs/jumps/*.jsonl

Trains with the trainer's own jitted step (`deepnet.train.train_step`, so the trajectory is
the one `make train` follows on the same machine and software) and writes one line per epoch:
the epoch's mean training loss, its OF floor and their gap (docs/theory.md#loss-floor), the L2
norm of each module's parameters, and every ``--eval_every`` epochs the train ``dist_of``.
Nothing is checkpointed; the run is a measurement.

``--rescale=EPOCH:MODULE:C`` multiplies the parameters of MODULE by C > 0 before epoch
EPOCH, and its momentum by 1 / C. For the last layer this leaves the network's embedding
(so its function and loss) unchanged and divides the effective step lr / ||w||^2 by C^2:
a test of whether the norm, not the function, drives the jumps.

``--summary`` prints for each file: the fit epoch (first epoch with gap < ``FIT_GAP``), the
jump episodes (epochs where the gap rises more than ``JUMP_RISE`` above its running minimum,
once that minimum is below ``JUMP_NEAR``; consecutive epochs are one episode), the first
epoch with dist_of < 0.2, the last dist_of and the last norms.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import types

from absl import app
from absl import flags

from deepnet import config as config_lib

FIT_GAP = 0.002
JUMP_NEAR = 0.05
JUMP_RISE = 0.05


def jump_episodes(epochs, gaps, near: float = JUMP_NEAR, rise: float = JUMP_RISE) -> list[int]:
  """First epochs of the runs of epochs whose gap exceeds the running minimum of the earlier
  gaps by more than ``rise``, counted once that minimum is below ``near``."""
  out, low, inside = [], math.inf, False
  for epoch, gap in zip(epochs, gaps):
    hit = low < near and gap > low + rise
    if hit and not inside:
      out.append(int(epoch))
    inside = hit
    low = min(low, gap)
  return out


def summarize(records: list[dict]) -> dict:
  """Fit epoch, jump episodes, first epoch with dist_of < 0.2, last dist_of and norms."""
  epochs = [r["epoch"] for r in records]
  gaps = [r["loss_gap"] for r in records]
  measured = [(r["epoch"], r["dist_of"]) for r in records if r.get("dist_of") is not None]
  return {
      "fit": next((e for e, g in zip(epochs, gaps) if g < FIT_GAP), None),
      "jumps": jump_episodes(epochs, gaps),
      "first_below_0.2": next((e for e, d in measured if d < 0.2), None),
      "last_dist_of": measured[-1] if measured else None,
      "last_param_norms": records[-1]["param_norms"] if records else None,
  }


def plot(runs: dict[str, list[dict]], path: str, module: str) -> None:
  """Loss gap (log scale) and ``module``'s parameter norm against epoch, one line per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax_gap, ax_norm) = plt.subplots(1, 2, figsize=(11, 3.6))
  for name, records in runs.items():
    epochs = [r["epoch"] for r in records]
    ax_gap.plot(epochs, [max(r["loss_gap"], 1e-5) for r in records], lw=0.9, label=name)
    ax_norm.plot(epochs, [r["param_norms"].get(module, math.nan) for r in records], lw=1.2)
  ax_gap.set(yscale="log", xlabel="epoch", ylabel="train loss - OF floor",
             title="loss gap per epoch")
  ax_gap.axhline(FIT_GAP, color="gray", ls="--", lw=0.8)
  ax_norm.set(xlabel="epoch", ylabel=f"||{module}||", title="last-layer parameter norm")
  ax_gap.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _parse_rescale(text):
  epoch, module, factor = text.split(":")
  epoch, factor = int(epoch), float(factor)
  if epoch < 1 or not factor > 0:
    raise ValueError
  return epoch, tuple(module.split("/")), factor


def _rescaled(tree, module, factor):
  """``tree`` with every leaf under the path ``module`` multiplied by ``factor``."""
  import jax  # pylint: disable=g-import-not-at-top

  def scale(path, leaf):
    keys = tuple(getattr(k, "key", None) for k in path)
    inside = any(keys[i:i + len(module)] == module for i in range(len(keys)))
    return leaf * factor if inside else leaf

  return jax.tree_util.tree_map_with_path(scale, tree)


def measure(config, out_path: str, epochs: int, eval_every: int, rescale=None):
  """Trains ``config`` for ``epochs`` epochs, one JSON line per epoch to ``out_path``; returns
  the final `deepnet.train.TrainState`."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  from deepnet import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  from deepnet import run_setup as run_setup_lib  # pylint: disable=g-import-not-at-top
  from deepnet import train as train_lib  # pylint: disable=g-import-not-at-top

  setup = run_setup_lib.setup_run(config, tempfile.mkdtemp(prefix="loss_jumps_"))
  replicated = setup.shardings.replicated
  put = lambda a: run_setup_lib.global_array(np.asarray(a), replicated)
  train_x, test_x = put(np.float32(setup.dataset.train_x)), put(np.float32(setup.dataset.test_x))
  train_y, seed = put(setup.train_y), put(np.uint32(int(config.seed)))
  row_mask = setup.row_mask()
  step, p_eval = train_lib.compile_train_step(setup), evaluate_lib.compile_eval_step(setup)
  state = train_lib.initial_state(setup)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with open(out_path, "w", encoding="utf-8") as out:
    for epoch in range(1, epochs + 1):
      if rescale is not None and epoch == rescale[0]:
        state = state.replace(
            params=_rescaled(state.params, rescale[1], rescale[2]),
            opt_state=_rescaled(state.opt_state, rescale[1], 1.0 / rescale[2]))
      schedule, padded = setup.padded_schedule(epoch)
      device_schedule = run_setup_lib.global_array(padded, setup.shardings.schedule)
      loss_sum = put(np.float32(0.0))
      for _ in range(setup.steps_per_epoch):
        state, loss_sum = step(state, loss_sum, device_schedule, row_mask, train_x, train_y,
                               seed)
      geometry = {}
      if epoch % eval_every == 0 or epoch == epochs:
        geometry, _, _ = train_lib.evaluate(setup, p_eval, state, train_x, test_x)
      record = train_lib.metrics_record(setup, epoch, state,
                                        float(loss_sum) / setup.steps_per_epoch, schedule,
                                        geometry, {})
      keep = ("epoch", "lr", "train_loss", "optimal_loss", "loss_gap", "param_norms",
              "dist_of")
      out.write(json.dumps({k: record[k] for k in keep if k in record}) + "\n")
      out.flush()
      if "dist_of" in record:
        print(f"epoch {epoch} gap {record['loss_gap']:.4f} dist_of {record['dist_of']:.4f}",
              flush=True)
  return state


def _define_flags():
  """The command's flags, defined only when it runs as a command: importing this module (the
  tests do, beside deepnet.main) must not define a second --config."""
  return types.SimpleNamespace(
      config=flags.DEFINE_string("config", None, "Training config file; --config.FIELD=VALUE "
                                 "overrides a field (deepnet.load_config)."),
      out=flags.DEFINE_string("out", None, "metrics file (JSON lines) to write"),
      epochs=flags.DEFINE_integer("epochs", None, "epochs to train (default: the config's)"),
      eval_every=flags.DEFINE_integer("eval_every", 4, "epochs between dist_of measurements"),
      rescale=flags.DEFINE_string("rescale", None,
                                  "EPOCH:MODULE:C, e.g. 150:backbone/dense3:2"),
      summary=flags.DEFINE_bool("summary", False, "summarise the files given as arguments"),
      plot=flags.DEFINE_string("plot", None, "with --summary: a PNG of the gap and the norm of "
                               "--plot_module against epoch, one line per file"),
      plot_module=flags.DEFINE_string("plot_module", "backbone/dense3",
                                      "module whose norm --plot draws"))


def main(argv, opts, overrides=None):
  if opts.summary.value:
    runs = {}
    for path in argv[1:]:
      try:
        with open(path, encoding="utf-8") as f:
          runs[os.path.splitext(os.path.basename(path))[0]] = [json.loads(line) for line in f
                                                                if line.strip()]
      except (OSError, ValueError) as e:
        print(f"loss_jumps: cannot read {path}: {e}", file=sys.stderr)
        return 2
    for name, records in runs.items():
      print(name, json.dumps(summarize(records)))
    if opts.plot.value:
      plot(runs, opts.plot.value, opts.plot_module.value)
    return 0
  if opts.config.value is None or not opts.out.value:
    print("loss_jumps: give --config and --out (or --summary FILES)", file=sys.stderr)
    return 2
  try:
    rescale = _parse_rescale(opts.rescale.value) if opts.rescale.value else None
  except ValueError:
    print(f"loss_jumps: --rescale must be EPOCH:MODULE:C with EPOCH >= 1 and C > 0, got "
          f"{opts.rescale.value!r}", file=sys.stderr)
    return 2
  try:
    config = config_lib.load_config(opts.config.value, overrides)
  except config_lib.ConfigError as e:
    print(f"loss_jumps: {e}", file=sys.stderr)
    return 2
  measure(config, opts.out.value, int(opts.epochs.value or config.num_epochs),
          opts.eval_every.value, rescale)
  return 0


if __name__ == "__main__":
  _FLAGS = _define_flags()
  _ARGV, _OVERRIDES = config_lib.split_overrides(sys.argv)
  app.run(lambda argv: sys.exit(main(argv, _FLAGS, _OVERRIDES)), argv=_ARGV)
