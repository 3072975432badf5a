"""The two views of a batch, built on the device inside the jitted step (``make_views``), and
the augmentation options of each data set (``view_options``). ``deepnet.data`` documents the
modes; every function here is pure jnp and jittable, with the modes and options as Python
values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deepnet import config as config_lib

VIEW_MODES = ("augment", "vflip", "noise", "single")
# Config fields of ``data`` that set make_views options (None: the data set's default).
VIEW_OPTION_FIELDS = ("crop_pad", "hflip", "max_shift", "noise_std")
KINDS = ("image", "vector")


def default_crop_pad(side: int) -> int:
  """4 px for images of 28 px or more (the CIFAR recipe), round(side / 8) >= 1 below."""
  return 4 if side >= 28 else max(1, int(round(side / 8)))


def _random_crop(x, key, pad: int):
  """Per-sample crop of the zero-padded batch back to its size; offsets uniform in [0, 2 pad]."""
  if pad == 0:
    return x
  n, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def _random_hflip(x, key):
  """Mirrors each image along W with probability 1/2."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def _random_roll(x, key, max_shift: int):
  """Per-sample circular shift of the feature axis by s uniform in [-max_shift, max_shift]."""
  if max_shift == 0:
    return x
  n, dim = x.shape
  shifts = jax.random.randint(key, (n, 1), -max_shift, max_shift + 1)
  # out[i, j] = x[i, (j - s_i) mod D], i.e. jnp.roll(x[i], s_i).
  source = jnp.mod(jnp.arange(dim)[None, :] - shifts, dim)
  return jnp.take_along_axis(x, source, axis=1)


def augment(x, key, kind: str, *, crop_pad: int | None = None, hflip: bool = False,
            max_shift: int = 2, noise_std: float = 0.1):
  """One random view of the batch (see the module docstring); row i comes from row i."""
  crop_key, flip_key = jax.random.split(key)
  if kind == "image":
    if x.ndim != 4:
      raise ValueError(f"image batches must be [B, H, W, C], got shape {x.shape}")
    pad = default_crop_pad(min(x.shape[1], x.shape[2])) if crop_pad is None else int(crop_pad)
    out = _random_crop(x, crop_key, pad)
    return _random_hflip(out, flip_key) if hflip else out
  if x.ndim != 2:
    raise ValueError(f"vector batches must be [B, D], got shape {x.shape}")
  out = _random_roll(x, crop_key, int(max_shift))
  if noise_std:
    out = out + noise_std * jax.random.normal(flip_key, out.shape, out.dtype)
  return out


def view_options(data_config, dataset) -> dict:
  """``make_views`` keyword options: the data set's defaults (``dataset.view_options``), then
  every field of ``VIEW_OPTION_FIELDS`` that ``data_config`` sets to a value other than None.

  The fields are required (the config files hold them as None placeholders); a missing one
  raises one ConfigError naming it.
  """
  options = dict(dataset.view_options)
  for field in VIEW_OPTION_FIELDS:
    value = config_lib.read_field(data_config, f"data.{field}")
    if value is not None:
      options[field] = value
  if options.get("crop_pad") is not None and int(options["crop_pad"]) < 0:
    raise ValueError(f"data.crop_pad must be >= 0, got {options['crop_pad']}")
  if "max_shift" in options and int(options["max_shift"]) < 0:
    raise ValueError(f"data.max_shift must be >= 0, got {options['max_shift']}")
  if "noise_std" in options and not float(options["noise_std"]) >= 0:
    raise ValueError(f"data.noise_std must be >= 0, got {options['noise_std']}")
  return options


def make_views(x, key, mode: str, kind: str, *, crop_pad: int | None = None,
               hflip: bool = False, max_shift: int = 2, noise_std: float = 0.1):
  """The batch's views concatenated along the batch axis.

  - ``"single"``: x, [B, ...].
  - ``"vflip"``: concat([x, flip(x)]), [2B, ...]; images are flipped along H (the paper's
    deterministic vertical flip), vectors along the feature axis. ``key`` is unused.
  - ``"augment"``: concat([x, aug(x)]), [2B, ...]: per-sample random crop of the zero-padded
    image (+ per-sample horizontal flip if ``hflip``) for images; per-sample random circular
    shift in [-max_shift, max_shift] plus N(0, noise_std^2) noise for vectors.
  - ``"noise"``: concat([x, x + noise_std * eps]), eps ~ N(0, I) per entry, [2B, ...].

  Args:
    x: [B, H, W, C] images or [B, D] vectors.
    key: a jax PRNG key (the result is a deterministic function of it).
    mode, kind, crop_pad, hflip, max_shift, noise_std: Python values (static under jit).

  Returns:
    An array of x's dtype.
  """
  if mode not in VIEW_MODES:
    raise ValueError(f"views must be one of {VIEW_MODES}, got {mode!r}")
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  x = jnp.asarray(x)
  if mode == "single":
    return x
  if mode == "vflip":
    if kind == "image" and x.ndim != 4:
      raise ValueError(f"image batches must be [B, H, W, C], got shape {x.shape}")
    # Axis 1 is H for NHWC images and the feature axis for [B, D] vectors.
    second = x[:, ::-1]
  elif mode == "noise":
    second = x + float(noise_std) * jax.random.normal(key, x.shape, x.dtype)
  else:
    second = augment(x, key, kind, crop_pad=crop_pad, hflip=hflip, max_shift=max_shift,
                     noise_std=noise_std)
  return jnp.concatenate([x, second.astype(x.dtype)], axis=0)
