"""The optimiser of the training runs: SGD + momentum with coupled L2 decay, and its lr
schedules, all through optax.

  v <- momentum * v + (grad(s * L) + wd * theta),   theta <- theta - lr_t * v,

as PyTorch's ``SGD(weight_decay=...)`` of the paper's code (coupled decay on every parameter,
BN scales and biases too), so ``loss_scale`` s with (lr, wd) is the same run as s = 1 with
(s * lr, wd / s) (docs/theory.md#loss-scale).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from deepnet import config as config_lib


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """lr_t as a function of the step count t (0-based), with S = ``steps_per_epoch``.

  - ``"multistep"``: lr * f^(number of decay epochs m with t >= m * S), f =
    ``lr_decay_factor`` (``optax.piecewise_constant_schedule``): a step function of the epoch,
    as PyTorch's MultiStepLR stepped once per epoch (the steps of epoch e, 1-based, are
    (e-1) S .. e S - 1, and a decay "after epoch m" starts at step m S);
  - ``"cosine"``: lr * (1 + cos(pi t / (E S))) / 2 (``optax.cosine_decay_schedule``).

  A warm-up of W = ``warmup_epochs * S`` steps multiplies either by min(1, (t + 1) / W).
  """
  base_lr = float(config.lr)
  if config.lr_schedule == "cosine":
    decayed = optax.cosine_decay_schedule(base_lr, int(config.num_epochs) * steps_per_epoch)
  else:
    factor = float(config.lr_decay_factor)
    decayed = optax.piecewise_constant_schedule(
        base_lr, {m * steps_per_epoch: factor
                  for m in config_lib.resolve_lr_decay_epochs(config)})
  warmup = int(float(config.warmup_epochs or 0) * steps_per_epoch)
  if warmup <= 0:
    return decayed
  # The ramp is written out: optax.linear_schedule computes the same line as
  # (1/W - 1) (1 - t / (W - 1)) + 1, which differs from (t + 1) / W in the last bit.
  def schedule(count):
    ramp = jnp.minimum(1.0, (jnp.asarray(count, jnp.float32) + 1.0) / warmup)
    return ramp * decayed(count)

  return schedule


def decay_mask(params):
  """True for the parameters that get weight decay: the kernels (ndim >= 2), not the biases
  and BatchNorm scales / offsets (ndim 1)."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(config, steps_per_epoch: int,
                   schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
  """SGD + momentum with coupled L2 decay added to the gradient before the momentum, at the lr
  ``schedule`` (default ``learning_rate_schedule(config, steps_per_epoch)``).

  ``grad_clip_norm > 0`` first rescales the loss gradient g to
  g * min(1, c / ||g||_2) (global norm over all parameters); ``decay_norm_and_bias=False``
  applies the decay to the kernels only (``decay_mask``).
  """
  clip = float(config.grad_clip_norm or 0.0)
  mask = None if config.decay_norm_and_bias else decay_mask
  return optax.chain(
      optax.clip_by_global_norm(clip) if clip > 0 else optax.identity(),
      optax.add_decayed_weights(float(config.weight_decay), mask=mask),
      optax.sgd(schedule or learning_rate_schedule(config, steps_per_epoch),
                momentum=float(config.momentum) or None))
