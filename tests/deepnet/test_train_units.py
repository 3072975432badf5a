"""Unit tests of the trainer's parts: schedules, the OF floor, the optimiser, batching, masking."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deepnet import config as config_lib
from deepnet import evaluate
from deepnet import models
from deepnet import optim
from deepnet import run_setup
from deepnet import train
from experiments.configs import cifar10_resnet18
from experiments.configs import digits_mlp
from deepnet_train_helper import model_config

jax.config.update("jax_disable_most_optimizations", True)


def _of_batch_loss(class_rows, tau, scale):
  """docs/theory.md#ref-code-floor by hand: (s / N) sum_c m_c log(m_c - 1 + (N - m_c) e^{-1/tau})."""
  m = np.asarray(class_rows, np.float64)
  n = m.sum()
  return scale / n * float(np.sum(m * np.log(m - 1 + (n - m) * math.exp(-1 / tau))))


def test_optimal_loss_matches_paper_reference_numbers():
  # b = 50 balanced, 5 per class, V = 2, tau = 0.1, scale 10/7 -> 3.139541 (docs/theory.md#ref-code-floor).
  labels = np.repeat(np.arange(10), 5)
  batches = [np.arange(50)]
  value = evaluate.optimal_loss(labels, batches, temperature=0.1, views=2, loss_scale=10 / 7)
  assert value == pytest.approx(3.139541, abs=5e-7)
  # b = 128, eight classes of 13 and two of 12 -> 4.576667.
  labels = np.repeat(np.arange(10), [13] * 8 + [12] * 2)
  value = evaluate.optimal_loss(labels, [np.arange(128)], temperature=0.1, views=2,
                             loss_scale=10 / 7)
  assert value == pytest.approx(4.576667, abs=5e-7)


def test_optimal_loss_with_binding_adds_one_row_per_class_before_doubling():
  config = digits_mlp.get_config()
  config.batching, config.batch_size, config.binding = "fixed", 50, 1
  labels = np.repeat(np.arange(10), 5)   # one batch of 50 holding 5 of each class
  schedule = run_setup.epoch_schedule(config, labels, 10, epoch=1)
  value = evaluate.optimal_loss(labels, schedule, temperature=0.1, views=2, loss_scale=10 / 7)
  assert value == pytest.approx(_of_batch_loss([12] * 10, 0.1, 10 / 7), rel=1e-12)


def test_paper_log_epochs_and_scaling():
  config = cifar10_resnet18.get_config()
  assert config_lib.resolve_log_epochs(config) == list(config_lib.PAPER_LOG_EPOCHS)
  config.num_epochs = 35   # a tenth: e -> round(e / 10), 0 -> 1, duplicates removed
  expected = sorted({max(1, int(math.floor(e / 10 + 0.5)))
                     for e in config_lib.PAPER_LOG_EPOCHS})
  assert config_lib.resolve_log_epochs(config) == expected
  assert expected[0] == 1 and expected[-1] == 35 and len(expected) < 37
  config.log_epochs = (2, 5)
  assert config_lib.resolve_log_epochs(config) == [2, 5, 35]   # the last epoch is always logged
  config.log_epochs = (0, 5)
  with pytest.raises(train.ConfigError):
    config_lib.resolve_log_epochs(config)


def test_multistep_schedule_decays_after_the_paper_epochs():
  config = cifar10_resnet18.get_config()
  steps = 3
  lr = optim.learning_rate_schedule(config, steps)
  # Epoch e (1-based) runs steps (e-1)*S .. e*S-1; x0.1 after epochs 116 and 232.
  assert float(lr(0)) == pytest.approx(0.1)
  assert float(lr(116 * steps - 1)) == pytest.approx(0.1)
  assert float(lr(116 * steps)) == pytest.approx(0.01)
  assert float(lr(232 * steps - 1)) == pytest.approx(0.01)
  assert float(lr(232 * steps)) == pytest.approx(0.001)
  assert float(lr(350 * steps - 1)) == pytest.approx(0.001)
  config.num_epochs = 35   # the same fractions: round(11.6) = 12, round(23.2) = 23
  assert config_lib.resolve_lr_decay_epochs(config) == [12, 23]
  config.lr_decay_base_epochs, config.lr_decay_epochs = 0, (5, 30)   # absolute epochs
  assert config_lib.resolve_lr_decay_epochs(config) == [5, 30]


def test_optimizer_is_pytorch_sgd_with_coupled_decay_and_the_loss_scale_equivalence():
  config = cifar10_resnet18.get_config()
  config.num_epochs, config.lr_decay_epochs, config.lr_decay_base_epochs = 4, (2,), 0
  steps_per_epoch = 2
  rng = np.random.default_rng(0)
  a = rng.normal(size=(5, 5))
  quad = a @ a.T / 5
  target = rng.normal(size=5)
  theta0 = {"w": rng.normal(size=5), "b": rng.normal(size=(2,))}

  def loss(p):  # any smooth function of every parameter
    return 0.5 * (p["w"] - target) @ quad @ (p["w"] - target) + jnp.sum(jnp.sin(p["b"]))

  def run_optax(cfg, scale):
    tx = optim.make_optimizer(cfg, steps_per_epoch)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    for _ in range(8):
      grads = jax.grad(lambda p: scale * loss(p))(params)
      updates, state = tx.update(grads, state, params)
      params = jax.tree.map(lambda p, u: p + u, params, updates)
    return params

  # PyTorch SGD(momentum, weight_decay), stepped by hand in float64, lr x0.1 after epoch 2.
  params = {k: v.copy() for k, v in theta0.items()}
  buf = {k: np.zeros_like(v) for k, v in theta0.items()}
  for t in range(8):
    lr = 0.1 * (0.1 if t >= 2 * steps_per_epoch else 1.0)
    w, b = params["w"], params["b"]
    grads = {"w": quad @ (w - target), "b": np.cos(b)}
    for k in params:
      buf[k] = 0.9 * buf[k] + grads[k] + 5e-4 * params[k]
      params[k] = params[k] - lr * buf[k]
  ours = run_optax(config, 1.0)
  for k in params:
    np.testing.assert_allclose(np.asarray(ours[k]), params[k], rtol=1e-5, atol=1e-6)

  # docs/theory.md#loss-scale: scale s with (lr, wd) == scale 1 with (s lr, wd / s).
  s = 10 / 7
  scaled = run_optax(config, s)
  config.lr, config.weight_decay = 0.1 * s, 5e-4 / s
  unscaled = run_optax(config, 1.0)
  for k in params:
    np.testing.assert_allclose(np.asarray(scaled[k]), np.asarray(unscaled[k]), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("batching", ["shuffle", "fixed"])
def test_binding_examples_are_in_every_batch(batching):
  config = digits_mlp.get_config()
  config.batching, config.batch_size, config.binding = batching, 7, 2
  labels = np.repeat(np.arange(4), [20, 20, 3, 3])
  firsts = [0, 1, 20, 21, 40, 41, 43, 44]   # the first two of each class, class by class
  seen = []
  for epoch in (1, 2, 3):
    schedule = run_setup.epoch_schedule(config, labels, 4, epoch)
    assert schedule.shape == (46 // 7, 7 + 8)
    for row in schedule:
      np.testing.assert_array_equal(row[7:], firsts)
      assert set(np.bincount(labels[row], minlength=4).nonzero()[0]) == {0, 1, 2, 3}
      assert len(set(row[:7])) == 7
    seen.append(schedule[:, :7])
  # Reshuffled per epoch (a function of (seed, epoch)), or one partition kept.
  assert (batching == "fixed") == np.array_equal(seen[0], seen[1])
  np.testing.assert_array_equal(run_setup.epoch_schedule(config, labels, 4, 2)[:, :7], seen[1])


def test_batchnorm_mask_makes_padding_invisible():
  cfg = ml_collections.ConfigDict(model_config(name="mlp", width=1.0, final_relu=True,
                                               extra_linear=False, head_dim=0,
                                               mlp_widths=(16, 8), dtype="float32"))
  model = models.create_model(cfg, 3, classifier=False)
  x = jax.random.normal(jax.random.key(0), (5, 6))
  padded = jnp.concatenate([x, 50.0 + jnp.zeros((3, 6))])
  variables = model.init(jax.random.key(1), x, train=False)
  mask = jnp.arange(8) < 5
  out_pad, upd_pad = models.apply_model(model, variables, padded, train=True, mask=mask)
  out, upd = models.apply_model(model, variables, x, train=True)
  np.testing.assert_allclose(out_pad["embedding"][:5], out["embedding"], atol=1e-5)
  for a, b in zip(jax.tree.leaves(upd_pad), jax.tree.leaves(upd)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Without the mask the padding rows do move the statistics (the test can fail).
  _, upd_unmasked = models.apply_model(model, variables, padded, train=True)
  assert not np.allclose(jax.tree.leaves(upd_unmasked)[0], jax.tree.leaves(upd)[0], atol=1e-3)


@pytest.mark.parametrize("field,value", [
    ("loss", "mse"), ("temperature", 0.0), ("temperature", float("nan")), ("batching", "full"),
    ("binding", -1), ("batch_size", 1), ("num_epochs", 0), ("lr_schedule", "linear"),
    ("momentum", 1.0), ("checkpoint_every_epochs", 0), ("lr", float("inf")),
    ("lr", float("nan")), ("weight_decay", float("inf")), ("lr_decay_factor", float("inf"))])
def test_bad_config_values_are_config_errors(field, value):
  config = digits_mlp.get_config()
  config[field] = value
  with pytest.raises(train.ConfigError):
    config_lib.validate_config(config)


def test_train_state_is_flax_train_state_and_one_step_is_sgd_by_hand():
  from deepnet_train_helper import tiny_config  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from geometry import losses  # pylint: disable=g-import-not-at-top
  config = tiny_config({"grad_clip_norm": 0.0, "model.mlp_norm": "all"})
  setup = run_setup.setup_run(config, tempfile.mkdtemp())
  state = train.initial_state(setup)
  assert isinstance(state, train_state.TrainState)
  # The checkpoint layout: exactly these four entries, and a strongly typed int32 step.
  assert set(flax.serialization.to_state_dict(state)) == {"step", "params", "batch_stats",
                                                          "opt_state"}
  assert state.step.dtype == jnp.int32 and not state.step.weak_type
  assert jax.tree.leaves(state.batch_stats), "the MLP recipe has BatchNorm statistics"

  schedule, padded = setup.padded_schedule(1)
  train_x = jnp.asarray(setup.dataset.train_x, jnp.float32)
  train_y = jnp.asarray(setup.train_y)
  seed = jnp.asarray(int(config.seed), jnp.uint32)
  # Jitted without compile_train_step's donation: `state` is needed below.
  new, loss_sum = jax.jit(functools.partial(train.train_step, setup=setup))(
      state, jnp.zeros((), jnp.float32), jnp.asarray(padded), setup.row_mask(), train_x,
      train_y, seed)
  assert int(new.step) == 1

  # The same step by hand: the loss of row 0's batch, then PyTorch's first SGD step
  # p - lr (g + wd p) (the momentum buffer starts at g + wd p).
  idx = np.asarray(schedule[0])
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), 0)
  x = setup.make_views(train_x[idx], key)
  y = jnp.tile(train_y[idx], setup.num_views)

  def loss_fn(params):
    out, updates = models.apply_model(
        setup.model, {"params": params, "batch_stats": state.batch_stats}, x, train=True)
    loss = losses.supcon_loss(out["embedding"], y, temperature=float(config.temperature))
    return float(config.loss_scale) * loss, updates["batch_stats"]

  (loss, stats), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(state.params)
  lr, wd = float(setup.lr_schedule(0)), float(config.weight_decay)
  want = jax.tree.map(lambda p, g: p - lr * (g + wd * p), state.params, grads)
  np.testing.assert_allclose(float(loss_sum), float(loss), rtol=1e-5)
  for got_leaf, want_leaf in zip(jax.tree.leaves(new.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(got_leaf), np.asarray(want_leaf), rtol=1e-5,
                               atol=1e-6)
  for got_leaf, want_leaf in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(stats)):
    np.testing.assert_allclose(np.asarray(got_leaf), np.asarray(want_leaf), rtol=1e-5,
                               atol=1e-6)
