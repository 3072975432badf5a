"""Tests of deepnet.models: shapes, unit norm, the final-ReLU switch, d and parameter counts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepnet import config as config_lib
from deepnet import models
from deepnet_train_helper import model_config

jax.config.update("jax_disable_most_optimizations", True)

# Tiny members of each family, with an input size whose last feature map is 1x1 (so pooling
# is the identity and the final-ReLU relation below holds exactly).
TINY = {
    "resnet18": (model_config(name="resnet18", width=1 / 16), (8, 8, 1)),
    "densenet40": (model_config(name="densenet40", width=1 / 6), (16, 16, 3)),
    "mlp": (model_config(name="mlp", mlp_widths=(24, 12)), (8, 8, 1)),
}


def _tiny_dim(name):
  """d by hand: resnet 512/16; densenet growth 2, stem 11: 11+12=23 -> 11 -> 23 -> 11 -> 23."""
  return {"resnet18": 32, "densenet40": 23, "mlp": 12}[name]


def _run(config, shape, *, batch=8, classifier=False, train=True, seed=0, num_classes=5):
  model = models.create_model(config, num_classes, classifier=classifier)
  x = jax.random.normal(jax.random.key(seed), (batch,) + shape)
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=train,
                                           mutable=["batch_stats"] if train else False))
  out = apply(variables, x)
  if train:
    out, _ = out
  return model, variables, jax.tree.map(np.asarray, out)


@functools.lru_cache(maxsize=None)
def _run_tiny(name, final_relu):
  """Train-mode outputs of the tiny model with a classifier (shared by tests: compiles once)."""
  config, shape = TINY[name]
  return _run(dict(config, final_relu=final_relu), shape, classifier=True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_unit_norm_and_non_negative_with_relu(name):
  config, _ = TINY[name]
  d = _tiny_dim(name)
  assert models.embedding_dim(dict(config, final_relu=True), 5) == d
  _, variables, out = _run_tiny(name, True)
  assert set(out) == {"embedding", "features", "logits"}
  assert out["embedding"].shape == (8, d) and out["embedding"].dtype == np.float32
  assert out["features"].shape == (8, d)
  assert out["logits"].shape == (8, 5)
  np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(
      out["embedding"], out["features"] / np.linalg.norm(out["features"], axis=1, keepdims=True),
      rtol=1e-5, atol=1e-7)
  assert (out["features"] >= 0).all() and (out["embedding"] >= 0).all()
  assert "batch_stats" in variables


@pytest.mark.parametrize("name", sorted(TINY))
def test_without_final_relu_only_the_last_relu_is_removed(name):
  _, _, with_relu = _run_tiny(name, True)
  _, _, without = _run_tiny(name, False)
  # Same parameters (same init key and tree), last map 1x1: pooling commutes with the ReLU,
  # so features(with ReLU) = max(features(without), 0) exactly.
  assert (without["features"] < 0).any()
  np.testing.assert_allclose(with_relu["features"], np.maximum(without["features"], 0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(without["embedding"], axis=1), 1.0, rtol=1e-5)
  if name != "resnet18":
    # There the last op is a BatchNorm with bias 0: in train mode every output channel
    # averages to 0 over the batch (and the 1x1 map), so the features are centered.
    np.testing.assert_allclose(without["features"].mean(axis=0), 0.0, atol=1e-5)


def test_classifier_off_has_no_logits_and_eval_mode_runs():
  config, shape = TINY["resnet18"]
  _, _, out = _run(config, shape, classifier=False, train=False)
  assert set(out) == {"embedding", "features"}


def test_extra_linear_keeps_relu_but_features_take_both_signs():
  config, shape = TINY["mlp"]
  _, variables, out = _run(dict(config, extra_linear=True), shape)
  assert "extra_linear" in variables["params"]
  assert (out["features"] < 0).any() and (out["features"] > 0).any()


def test_projection_head_output_is_normalised():
  config, shape = TINY["resnet18"]
  config = dict(config, head_dim=7)
  assert models.embedding_dim(config, 5) == 7
  _, _, out = _run(config, shape, classifier=True)
  assert out["embedding"].shape == (8, 7) and out["backbone"].shape == (8, 32)
  assert out["logits"].shape == (8, 5)
  assert (out["features"] >= 0).all()
  np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
  # Without the final ReLU only the head's output may go negative; the backbone keeps its ReLU.
  _, _, out = _run(dict(config, final_relu=False), shape)
  assert (out["backbone"] >= 0).all() and (out["features"] < 0).any()


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  config, shape = TINY["resnet18"]
  _, variables, out = _run(dict(config, dtype="bfloat16"), shape, classifier=True)
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert out["embedding"].dtype == np.float32 and out["logits"].dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)


def test_zero_features_give_finite_embedding_and_gradient():
  f = jnp.zeros((2, 3))
  grad = jax.grad(lambda f: models.l2_normalize(f).sum())(f)
  assert np.isfinite(np.asarray(models.l2_normalize(f))).all()
  assert np.isfinite(np.asarray(grad)).all()


def _shapes(config, image_shape, num_classes=10, classifier=False):
  model = models.create_model(config, num_classes, classifier=classifier)
  x = jax.ShapeDtypeStruct((2,) + image_shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  return variables, out


def _num_params(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_resnet18_full_width_dimension_and_parameter_count():
  config = model_config(name="resnet18")
  assert models.embedding_dim(config, 10) == 512
  variables, out = _shapes(config, (32, 32, 3), classifier=True)
  assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, 10)
  # The CIFAR ResNet-18 with a 10-way head has 11,173,962 parameters (torchvision's 11,689,512
  # minus the 1000-way fc (513,000) plus a 10-way fc (5,130), minus 7x7 stem 9,408 plus 3x3
  # stem 1,728). BN scale/bias are parameters there too; running statistics are not.
  assert _num_params(variables["params"]) == 11_173_962
  _, out = _shapes(config, (28, 28, 1))
  assert out["embedding"].shape == (2, 512)


def _densenet_params_by_hand(num_classes):
  """torchvision DenseNet(growth 12, blocks (6,6,6), bn_size 4, 64 stem maps) count."""
  total = 7 * 7 * 3 * 64 + 2 * 64
  channels = 64
  for block in range(3):
    for _ in range(6):
      total += 2 * channels + channels * 48 + 2 * 48 + 3 * 3 * 48 * 12
      channels += 12
    if block < 2:
      total += 2 * channels + channels * (channels // 2)
      channels //= 2
  total += 2 * channels                         # final BN
  return channels, total + channels * num_classes + num_classes


def test_densenet40_full_width_dimension_and_parameter_count():
  config = model_config(name="densenet40")
  d, params = _densenet_params_by_hand(10)
  assert d == 142 and models.embedding_dim(config, 10) == 142
  variables, out = _shapes(config, (32, 32, 3), classifier=True)
  assert out["embedding"].shape == (2, 142)
  assert _num_params(variables["params"]) == params
  _, out = _shapes(config, (28, 28, 1))
  assert out["embedding"].shape == (2, 142)


def test_densenet_rejects_tiny_images_and_bad_configs():
  with pytest.raises(ValueError, match="at least 13x13"):
    _shapes(model_config(name="densenet40"), (8, 8, 1))
  with pytest.raises(ValueError, match="model.name"):
    models.create_model(model_config(name="vgg"), 10)
  with pytest.raises(ValueError, match="model.dtype"):
    models.create_model(model_config(name="mlp", dtype="float8"), 10)
  with pytest.raises(ValueError, match="model.width"):
    models.create_model(model_config(name="resnet18", width=0.0), 10)


def test_config_dict_is_accepted():
  ml_collections = pytest.importorskip("ml_collections")
  config = ml_collections.ConfigDict(model_config(
      name="mlp", width=1.0, final_relu=False, extra_linear=False, head_dim=0,
      mlp_widths=(16, 6), dtype="float32"))
  assert models.embedding_dim(config, 3) == 6
  _, _, out = _run(config, (5,), batch=4)
  assert out["embedding"].shape == (4, 6)


@pytest.mark.parametrize("name", ["resnet18", "densenet40"])
def test_batchnorm_mask_of_the_conv_nets_makes_padding_invisible(name):
  # Every BatchNorm of the network gets the mask (apply_model's argument): the real rows'
  # outputs and every running statistic equal those of the batch without the padding rows,
  # and without the mask the far-off padding rows move the statistics.
  config, shape = TINY[name]
  model = models.create_model(config, 5)
  x = jax.random.normal(jax.random.key(0), (5,) + shape)
  padded = jnp.concatenate([x, 30.0 + jnp.zeros((3,) + shape)])
  variables = jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)
  apply = jax.jit(lambda v, x, m: models.apply_model(model, v, x, train=True, mask=m))
  out_pad, upd_pad = apply(variables, padded, jnp.arange(8) < 5)
  out, upd = apply(variables, x, None)
  np.testing.assert_allclose(out_pad["embedding"][:5], out["embedding"], atol=1e-4)
  leaves_pad, leaves = jax.tree.leaves(upd_pad), jax.tree.leaves(upd)
  assert len(leaves) == len(leaves_pad) > 4
  for a, b in zip(leaves_pad, leaves):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
  _, upd_unmasked = apply(variables, padded, None)
  assert not all(np.allclose(a, b, atol=1e-3)
                 for a, b in zip(jax.tree.leaves(upd_unmasked), leaves))


def test_extra_linear_is_the_linear_projection_without_relu_at_the_backbone_width():
  # One layer implementation serves both fields: with the same weights, extra_linear and a
  # projection of the backbone's width without ReLU are the same function, and both end
  # with an affine map (features of both signs).
  config, shape = TINY["mlp"]
  extra = models.create_model(dict(config, extra_linear=True), 5)
  projection = models.create_model(dict(config, projection_dim=_tiny_dim("mlp"),
                                        projection_relu=False), 5)
  x = jax.random.normal(jax.random.key(0), (6,) + shape)
  variables = extra.init(jax.random.key(1), x, train=False)
  params = dict(variables["params"])
  params["projection"] = params.pop("extra_linear")
  a = extra.apply(variables, x, train=False)
  b = projection.apply(dict(variables, params=params), x, train=False)
  np.testing.assert_array_equal(np.asarray(a["features"]), np.asarray(b["features"]))
  assert (np.asarray(a["features"]) < 0).any() and (np.asarray(a["features"]) > 0).any()
  assert models.embedding_dim(dict(config, extra_linear=True)) == _tiny_dim("mlp")


@pytest.mark.parametrize("field", sorted(model_config()))
def test_a_missing_model_field_is_one_config_error_naming_it(field):
  # No field has a fallback in code, whatever the architecture reads: the base recipe's model
  # section without any one of its fields is refused, by name, for an MLP too.
  config = model_config(name="mlp", mlp_widths=(4,))
  del config[field]
  for build in (lambda: models.create_model(config, 3), lambda: models.embedding_dim(config)):
    with pytest.raises(config_lib.ConfigError) as info:
      build()
    message = str(info.value)
    assert f"'model.{field}' is missing" in message and "\n" not in message


@pytest.mark.parametrize("changes, before", [
    ({"final_relu": True}, "backbone"), ({"final_relu": False}, "backbone"),
    ({"extra_linear": True}, "extra_linear"),
    ({"projection_dim": 5, "projection_relu": True}, "projection"),
    ({"projection_dim": 5, "projection_relu": False}, "projection"),
    ({"head_dim": 3, "final_relu": True}, "head_out"),
    ({"head_dim": 3, "final_relu": False}, "head_out")])
def test_model_facts_are_what_the_built_network_does(changes, before):
  # The facts are checked against the network's own output: its width, and whether the
  # normalised features are non-negative (a ReLU's output) or take both signs.
  config, shape = TINY["mlp"]
  config = dict(config, **changes)
  facts = models.model_facts(config)
  _, _, out = _run(config, shape)
  assert facts["before_embedding"] == before and facts["name"] == "mlp"
  assert facts["embedding_dim"] == out["embedding"].shape[-1]
  assert facts["backbone_dim"] == 12
  assert facts["relu_before_embedding"] == bool((out["features"] >= 0).all())
  if not facts["relu_before_embedding"]:
    assert (out["features"] < 0).any()


def test_extra_linear_is_a_deprecated_name_of_the_projection(tmp_path, capsys):
  config, _ = TINY["mlp"]
  width = _tiny_dim("mlp")
  assert models.deprecations(config) == []
  assert models.deprecations(dict(config, extra_linear=True)) == [
      f"model.extra_linear is deprecated (accepted until the next release): it is "
      f"model.projection_dim={width} with model.projection_relu=False, the same network"]
  with pytest.raises(ValueError, match="either it or model.projection_dim"):
    models.create_model(dict(config, extra_linear=True, projection_dim=3), 5)
  # The trainer says so once, on stderr, when it sets the run up.
  from deepnet import run_setup  # pylint: disable=g-import-not-at-top
  from deepnet_train_helper import tiny_config  # pylint: disable=g-import-not-at-top
  run_setup.setup_run(tiny_config({"model.extra_linear": True}), str(tmp_path / "run"))
  lines = [l for l in capsys.readouterr().err.splitlines() if "deprecated" in l]
  assert lines == ["scl-train: model.extra_linear is deprecated (accepted until the next "
                   "release): it is model.projection_dim=8 with model.projection_relu=False, "
                   "the same network"]
