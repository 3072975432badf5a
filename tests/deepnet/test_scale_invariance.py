"""The scale invariance behind the weight decay of the CPU recipes (docs/training.md#jumps).

SCL reads the embedding f / ||f||, and with a final ReLU f = relu(W z + b) is positively
homogeneous in the last layer's (W, b): scaling them by c > 0 scales f by c and leaves the loss
unchanged. Hence (Euler) its gradient g there is orthogonal to w = (W, b), and one SGD step
w' = (1 - lr wd) w - lr g has ||w'||^2 = (1 - lr wd)^2 ||w||^2 + lr^2 ||g||^2: the gradient
only grows the norm, the decay only shrinks it, and the loss sees the step through
lr / ||w||^2. The expected values are these closed forms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepnet import models
from deepnet import optim
from experiments.configs import digits_mlp
from geometry import losses

LAST = "dense3"


def _setup():
  model = models.EmbeddingModel(arch="mlp", mlp_widths=(16, 12, 8), mlp_norm_layers=(),
                                final_relu=True)
  x = jax.random.normal(jax.random.key(0), (24, 6))
  y = jnp.arange(24) % 4
  params = model.init(jax.random.key(1), x, train=False)["params"]
  # Non-zero biases (Flax starts them at 0, where every layer would be scale-free).
  for i, layer in enumerate(params["backbone"].values()):
    layer["bias"] = 0.3 * jax.random.normal(jax.random.key(10 + i), layer["bias"].shape)

  def loss(p):
    return losses.supcon_loss(model.apply({"params": p}, x)["embedding"], y, temperature=0.1,
                              reduction="mean")

  return params, loss


def _scaled(params, layer, c):
  out = jax.tree.map(lambda v: v, params)
  out["backbone"][layer] = jax.tree.map(lambda v: c * v, params["backbone"][layer])
  return out


def _flat(tree):
  return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(tree)])


def test_loss_does_not_change_when_the_last_layer_is_scaled():
  params, loss = _setup()
  base = float(loss(params))
  for c in (0.25, 3.0):
    np.testing.assert_allclose(float(loss(_scaled(params, LAST, c))), base, rtol=2e-6)
  # Not so for a hidden layer alone: the next layer's bias is not scaled with it.
  assert abs(float(loss(_scaled(params, "dense1", 3.0))) - base) > 1e-3


def test_gradient_is_orthogonal_to_the_last_layer():
  params, loss = _setup()
  grads = jax.grad(loss)(params)
  w, g = _flat(params["backbone"][LAST]), _flat(grads["backbone"][LAST])
  cos = float(jnp.vdot(w, g) / (jnp.linalg.norm(w) * jnp.linalg.norm(g)))
  assert abs(cos) < 1e-4
  w1, g1 = _flat(params["backbone"]["dense1"]), _flat(grads["backbone"]["dense1"])
  assert abs(float(jnp.vdot(w1, g1) / (jnp.linalg.norm(w1) * jnp.linalg.norm(g1)))) > 1e-3


@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_sgd_step_changes_the_norm_by_the_closed_form(wd):
  params, loss = _setup()
  lr = 0.5
  config = digits_mlp.get_config()
  config.lr, config.momentum, config.weight_decay = lr, 0.0, wd
  config.lr_schedule, config.grad_clip_norm, config.warmup_epochs = "cosine", 0.0, 0
  config.num_epochs = 10**6           # the cosine is flat at its first step
  tx = optim.make_optimizer(config, steps_per_epoch=1)
  grads = jax.grad(loss)(params)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  w, g = _flat(params["backbone"][LAST]), _flat(grads["backbone"][LAST])
  expected = (1 - lr * wd) ** 2 * float(jnp.vdot(w, w)) + lr ** 2 * float(jnp.vdot(g, g))
  after = float(jnp.vdot(_flat(new["backbone"][LAST]), _flat(new["backbone"][LAST])))
  np.testing.assert_allclose(after, expected, rtol=1e-5)
