"""TensorBoard event files of a training run, read back with TensorBoard's own loader
(EventAccumulator) and compared with metrics.jsonl, including after a resume."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import deepnet_train_helper as helper
from deepnet import tensorboard_events
from deepnet import train

jax.config.update("jax_disable_most_optimizations", True)

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")

NUM_EPOCHS = 4


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _scalars(workdir):
  """{tag: [(step, value), ...]} as TensorBoard shows them (restarts purged)."""
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"),
                                           size_guidance={event_accumulator.SCALARS: 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_events_match_metrics_every_epoch_and_after_a_resume(tmp_path):
  # Run A logs geometry at epochs 2 and 4 only; run B, the same run logging every epoch with
  # TensorBoard off, gives the loss of every epoch independently of A's event files.
  run_a, run_b = str(tmp_path / "a"), str(tmp_path / "b")
  overrides = {"num_epochs": NUM_EPOCHS, "log_epochs": [2], "lr_schedule": "cosine",
               "checkpoint_every_epochs": 1}
  trainer = train.setup_run(helper.tiny_config(overrides), run_a)
  train.run(trainer)
  train.train_and_evaluate(helper.tiny_config(dict(overrides, log_epochs=[1, 2, 3, 4],
                                                   tensorboard=False)), run_b)
  assert not os.path.exists(os.path.join(run_b, "tensorboard"))
  every_epoch = _metrics(run_b)
  logged = _metrics(run_a)
  assert [r["epoch"] for r in every_epoch] == [1, 2, 3, 4]
  assert [r["epoch"] for r in logged] == [2, 4]
  steps = trainer.steps_per_epoch
  total = NUM_EPOCHS * steps
  # Cosine decay to 0 over the run, at each epoch's last step (closed form, not the code's).
  lr = [0.5 * 0.1 * (1 + np.cos(np.pi * (e * steps - 1) / total)) for e in range(1, 5)]

  def check(scalars):
    # Loss and lr at every epoch, at the optimiser step after the epoch (float32 in the file).
    assert [s for s, _ in scalars["train_loss"]] == [e * steps for e in range(1, 5)]
    np.testing.assert_allclose([v for _, v in scalars["train_loss"]],
                               [r["train_loss"] for r in every_epoch], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in scalars["lr"]], lr, rtol=1e-6, atol=1e-8)
    # Geometry only at the logged epochs, equal to metrics.jsonl.
    for key in ("dist_of", "nc1", "ncc_acc_test", "optimal_loss"):
      assert [s for s, _ in scalars[key]] == [r["step"] for r in logged], key
      np.testing.assert_allclose([v for _, v in scalars[key]], [r[key] for r in logged],
                                 rtol=1e-6, err_msg=key)
    # Lists and flags stay in metrics.jsonl only.
    assert "gram" not in scalars and "of_unique_epoch" not in scalars

  check(_scalars(run_a))
  # As if killed after epoch 4 was written but before its checkpoints were kept: the restart
  # from epoch 2 writes epochs 3 and 4 again into a second file, and TensorBoard shows each
  # step once.
  for epoch in (3, 4):
    shutil.rmtree(os.path.join(run_a, "checkpoints", str(epoch)))
  train.train_and_evaluate(helper.tiny_config(overrides), run_a)
  assert len(os.listdir(os.path.join(run_a, "tensorboard"))) == 2
  assert [r["epoch"] for r in _metrics(run_a)] == [2, 4]
  check(_scalars(run_a))


def test_scalar_metrics_keeps_finite_numbers_only():
  record = {"epoch": 3, "step": 30, "train_loss": 1.5, "loss_gap": None, "nc1": float("nan"),
            "of_unique_so_far": True, "gram": [[1.0]], "ncc_acc_train": np.float64(0.25),
            "c2_pairs_missing_epoch": 2}
  assert tensorboard_events.scalar_metrics(record) == {
      "train_loss": 1.5, "ncc_acc_train": 0.25, "c2_pairs_missing_epoch": 2.0}
