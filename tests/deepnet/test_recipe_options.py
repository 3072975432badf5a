"""Options of the CPU recipes: MLP BatchNorm layers, the linear projection with or without a
ReLU, the noise view and view options from the config, warm-up, clipping and the decay mask."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from deepnet import data
from deepnet import models
from deepnet import config as config_lib
from deepnet import optim
from deepnet import train
from experiments.configs import digits_mlp
from deepnet_train_helper import data_config
from deepnet_train_helper import model_config

jax.config.update("jax_disable_most_optimizations", True)


def _init_apply(config, shape, batch=6, seed=0):
  model = models.create_model(config, 5)
  x = jax.random.normal(jax.random.key(seed), (batch,) + shape)
  variables = model.init(jax.random.key(1), x, train=False)
  out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  return x, variables, jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("spec, bn_layers", [("all", {1, 2, 3}), ("none", set()),
                                             ("1", {1}), ("1,3", {1, 3})])
def test_mlp_batch_norm_on_chosen_layers(spec, bn_layers):
  config = model_config(name="mlp", mlp_widths=(7, 6, 4), mlp_norm=spec)
  _, variables, _ = _init_apply(config, (3, 2))
  stats = variables.get("batch_stats", {}).get("backbone", {})
  assert {int(k[2:]) for k in stats} == bn_layers
  assert {int(k[2:]) for k in variables["params"]["backbone"] if k.startswith("bn")} == bn_layers


def test_mlp_without_batch_norm_is_the_plain_formula():
  config = model_config(name="mlp", mlp_widths=(7, 4), mlp_norm="none", final_relu=True)
  x, variables, out = _init_apply(config, (3, 2))
  p = jax.tree.map(np.asarray, variables["params"]["backbone"])
  h = np.asarray(x).reshape(len(x), -1).astype(np.float64)
  h = np.maximum(h @ p["dense1"]["kernel"] + p["dense1"]["bias"], 0)
  h = np.maximum(h @ p["dense2"]["kernel"] + p["dense2"]["bias"], 0)
  np.testing.assert_allclose(out["features"], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["0", "4", "first", "1,x"])
def test_bad_mlp_norm_is_rejected(spec):
  with pytest.raises(ValueError, match="mlp_norm"):
    models.create_model(model_config(name="mlp", mlp_widths=(8, 8, 8), mlp_norm=spec), 3)


# The three families, tiny; the projection acts on the pooled backbone output.
FAMILIES = {
    "mlp": (model_config(name="mlp", mlp_widths=(8, 6), mlp_norm="none"), (4, 4, 1)),
    "resnet18": (model_config(name="resnet18", width=1 / 16), (8, 8, 1)),
    "densenet40": (model_config(name="densenet40", width=1 / 6), (16, 16, 1)),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_linear_projection_with_and_without_relu(name):
  base, shape = FAMILIES[name]
  config = dict(base, projection_dim=9, projection_relu=True)
  assert models.embedding_dim(config) == 9
  assert models.embedding_dim(dict(base)) == models.backbone_dim(base)
  model = models.create_model(config, 5)
  x = jax.random.normal(jax.random.key(0), (6,) + shape)
  variables = model.init(jax.random.key(1), x, train=False)
  proj = jax.tree.map(np.asarray, variables["params"]["projection"])
  assert proj["kernel"].shape == (models.backbone_dim(base), 9) and proj["bias"].shape == (9,)

  # The backbone output by itself (same variables, projection removed) gives the projection's
  # input: features = relu(b W + c) with the ReLU, b W + c without.
  plain = models.create_model(dict(base), 5)
  plain_vars = {"params": {"backbone": variables["params"]["backbone"]}}
  if "batch_stats" in variables:
    plain_vars["batch_stats"] = variables["batch_stats"]
  b = np.asarray(plain.apply(plain_vars, x, train=False)["features"], np.float64)
  linear = b @ proj["kernel"] + proj["bias"]
  for relu in (True, False):
    out = models.create_model(dict(config, projection_relu=relu), 5).apply(
        variables, x, train=False)
    expected = np.maximum(linear, 0) if relu else linear
    np.testing.assert_allclose(np.asarray(out["features"]), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out["embedding"]), axis=1), 1.0,
                               rtol=1e-5)
  assert (linear < 0).any()   # so "without" really differs from "with"
  with pytest.raises(ValueError, match="projection_dim"):
    models.create_model(dict(base, projection_dim=-1), 5)


def test_noise_view_and_view_options_from_the_config():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((400, 8, 8, 1)), jnp.float32)
  key = jax.random.key(3)
  views = np.asarray(data.make_views(x, key, "noise", "image", noise_std=0.05))
  assert views.shape == (800, 8, 8, 1)
  np.testing.assert_array_equal(views[:400], x)
  diff = views[400:] - np.asarray(x)
  # 25,600 N(0, 0.05^2) draws: mean within 5 standard errors, std within 2 %.
  assert abs(diff.mean()) < 5 * 0.05 / np.sqrt(diff.size)
  assert abs(diff.std() / 0.05 - 1) < 0.02
  np.testing.assert_array_equal(data.make_views(x, key, "noise", "image", noise_std=0.0), 
                                np.concatenate([x, x]))

  ds = data.load_dataset(data_config(name="digits", imbalance="none", n_max=5))
  assert data.view_options(data_config(), ds) == {"hflip": False}
  assert data.view_options(data_config(noise_std=0.2, crop_pad=2, hflip=None), ds) == {
      "hflip": False, "noise_std": 0.2, "crop_pad": 2}
  with pytest.raises(ValueError, match="noise_std"):
    data.view_options(data_config(noise_std=-1.0), ds)
  for field in ("crop_pad", "hflip", "max_shift", "noise_std"):
    config = data_config()
    del config[field]
    with pytest.raises(config_lib.ConfigError, match=f"'data.{field}' is missing"):
      data.view_options(config, ds)


def _config(**changes):
  config = digits_mlp.get_config()
  config.num_epochs, config.lr = 10, 0.4
  config.lr_decay_epochs, config.lr_decay_base_epochs = (5,), 0
  for key, value in changes.items():
    config[key] = value
  return config


def test_warmup_ramps_linearly_then_follows_the_schedule():
  schedule = optim.learning_rate_schedule(_config(warmup_epochs=2), steps_per_epoch=4)
  got = [float(schedule(t)) for t in range(40)]
  # Warm-up over 8 steps: (t + 1) / 8 of 0.4; then 0.4 to the end of epoch 5, then 0.04.
  expected = [0.4 * (t + 1) / 8 for t in range(8)] + [0.4] * 12 + [0.04] * 20
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  no_warmup = optim.learning_rate_schedule(_config(), steps_per_epoch=4)
  assert float(no_warmup(0)) == pytest.approx(0.4)


def test_decay_mask_and_gradient_clipping():
  params = {"dense": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)},
            "bn": {"scale": jnp.full((3,), 2.0)}}
  zero = jax.tree.map(jnp.zeros_like, params)
  big = jax.tree.map(lambda p: jnp.full_like(p, 10.0), params)
  for decay_all in (True, False):
    config = _config(weight_decay=0.1, momentum=0.0, decay_norm_and_bias=decay_all)
    tx = optim.make_optimizer(config, steps_per_epoch=4)
    updates, _ = tx.update(zero, tx.init(params), params)
    # One SGD step on a zero gradient: -lr * wd * theta = -0.4 * 0.1 * 2 on decayed entries.
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.08)
    np.testing.assert_allclose(updates["dense"]["bias"], -0.08 if decay_all else 0.0)
    np.testing.assert_allclose(updates["bn"]["scale"], -0.08 if decay_all else 0.0)
  tx = optim.make_optimizer(_config(weight_decay=0.0, momentum=0.0, grad_clip_norm=1.0), 4)
  updates, _ = tx.update(big, tx.init(params), params)
  # 12 entries of 10: norm 10 sqrt(12) -> rescaled to norm 1, then times lr.
  norm = float(optax.tree.norm(updates))
  assert norm == pytest.approx(0.4, rel=1e-5)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.4 / np.sqrt(12), rtol=1e-5)


def test_bad_recipe_values_are_config_errors():
  for key, value in (("warmup_epochs", -1), ("grad_clip_norm", -0.5)):
    with pytest.raises(train.ConfigError, match=key):
      config_lib.validate_config(_config(**{key: value}))
  assert isinstance(digits_mlp.get_config(), ml_collections.ConfigDict)
