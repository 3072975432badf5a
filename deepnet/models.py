"""Flax networks whose L2-normalised output is the embedding h of docs/theory.md#scl-loss.

Families (docs/theory.md#models, #choice-no-relu):

- ``resnet18``: ResNet-18 with the CIFAR stem (3x3 stride-1 conv without bias, BN, ReLU, no
  max-pool), BasicBlocks [2, 2, 2, 2] with widths 64-128-256-512 (each times ``width``), global
  average pooling; d = round(512 * width). Any input size works (8x8 digits, 28x28, 32x32).
- ``densenet40``: the DenseNet-40-BC-like network of the paper's code: growth 12, blocks
  (6, 6, 6), bn_size 4, 64 stem maps, compression 1/2, 7x7 stride-2 stem and 3x3 stride-2
  max-pool, final BN -> ReLU -> global average pooling; d = 142 at width 1
  (64 -> 136 -> 68 -> 140 -> 70 -> 142). ``width`` scales the growth rate and the stem. The two
  stride-2 stem ops and two transitions divide the side by 16, so the input must be at least
  13 px (16 px or more in practice); a smaller input raises ValueError.
- ``mlp``: Dense -> BN -> ReLU layers of widths ``mlp_widths`` on the flattened input; the
  last layer's output is the embedding, d = mlp_widths[-1]. ``mlp_norm`` chooses the layers
  with BatchNorm: ``"all"`` (default), ``"none"``, or 1-based layer numbers such as ``"1"``
  or ``"1,2"``; a layer without BN is Dense (with bias) -> ReLU. BN on every layer slows the
  approach to the OF (the batch statistics couple the rows of a batch), see docs/results.md.

The final ReLU (``final_relu``, docs/theory.md#choice-no-relu): with ``final_relu=True`` the features that are
normalised are non-negative, which is what makes the orthogonal frame the optimum (Thm 1).
``final_relu=False`` removes only that last activation and nothing else:

- ResNet-18: the last BasicBlock outputs bn2(conv2(.)) + shortcut without its output ReLU;
- DenseNet: the ReLU after the final BN is skipped;
- MLP: the last layer is Dense -> BN without the ReLU (an affine last layer).

The linear projection after the backbone (``linear_layers``): ``projection_dim > 0`` appends
a Dense(projection_dim) with bias, followed by a ReLU iff ``projection_relu``; its output is
what gets normalised (d = projection_dim).

- Without the ReLU it is the other option of docs/theory.md#choice-no-relu: keep the
  backbone's ReLU and let a linear layer give the features any sign again.
- With it, it is the second way of having a final ReLU that the paper's reviewers describe: a
  ReLU after a linear layer rather than the backbone's own last activation (compare
  ``final_relu``, which acts on the backbone).
- ``extra_linear=True`` is the deprecated name of that projection at the backbone width
  without ReLU (`EXTRA_LINEAR_DEPRECATION`); its layer keeps the parameter name
  ``extra_linear``, so the checkpoints of runs that used it still restore. It cannot be
  combined with ``projection_dim > 0``.

Optional projection head (``head_dim > 0``, not in the paper): Dense(d) -> ReLU ->
Dense(head_dim) on the backbone output, followed by a ReLU iff ``final_relu``; the head's output
is what gets normalised (so d = head_dim, and the backbone's own final ReLU then is an internal
activation and is kept whatever ``final_relu``). The backbone output is returned as
``"backbone"`` in that case.

Output of ``model.apply(variables, x, train=..., mask=..., mutable=...)``: a dict with

- ``"embedding"``: h = f / max(||f||, 1e-12), float32 [B, d] (normalised in float32);
- ``"features"``: f, the un-normalised input of the normalisation, float32 [B, d];
- ``"logits"``: [B, K] float32, only with ``classifier=True`` (CE runs): a linear classifier
  with bias on the backbone output (= ``features`` when there is no projection head).

Precision: ``dtype`` is the compute dtype (``"bfloat16"`` is fine on accelerators); parameters
are always float32 and the returned arrays float32.

The project uses flax.linen: ``init`` and ``apply`` are pure functions of explicit ``params``
and ``batch_stats`` pytrees, which makes buffer donation, ``jax.sharding`` placement and orbax
checkpoints of plain pytrees straightforward. BatchNorm is plain ``nn.BatchNorm`` without
``axis_name``: under ``jit`` with a batch sharded over devices the statistics are those of the
global batch. BN momentum 0.9 and epsilon 1e-5 match PyTorch's defaults (momentum 0.1 there).

Padded batches: ``mask`` ([B] bool over the leading axis of ``x``, train mode only) is passed
to every BatchNorm, which then computes its batch statistics over the rows where it is True:

  mu = sum_i m_i x_i / sum_i m_i,   var = sum_i m_i (x_i - mu)^2 / sum_i m_i,

so rows added to fill a batch change neither the outputs of the real rows nor the running
statistics (``apply_model``).

This module imports only jax, flax, numpy and ``deepnet.config`` (standard library only), which
the GPU benchmark relies on. Every ``model`` field is required; their defaults live in the
config files (``experiments/configs/cifar10_resnet18.py``), and a missing one raises one
ConfigError naming it.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepnet import config as config_lib

MODELS = ("resnet18", "densenet40", "mlp")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

_RESNET_WIDTHS = (64, 128, 256, 512)
_RESNET_BLOCKS = (2, 2, 2, 2)
_DENSENET_GROWTH = 12
_DENSENET_BLOCKS = (6, 6, 6)
_DENSENET_BN_SIZE = 4
_DENSENET_STEM = 64

# torchvision initialises convolutions with Kaiming-normal (fan_out, ReLU gain).
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _scaled(channels: int, width: float) -> int:
  """round(channels * width), at least 1."""
  return max(1, int(round(channels * float(width))))


def l2_normalize(features: jax.Array, eps: float = 1e-12) -> jax.Array:
  """h = f / max(||f||_2, eps) row-wise, in float32.

  The clamp keeps the value and the gradient finite for an all-zero row (possible behind a
  ReLU): such a row maps to 0 instead of NaN.
  """
  features = features.astype(jnp.float32)
  sq = jnp.sum(jnp.square(features), axis=-1, keepdims=True)
  return features * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _norm(x, train: bool, mask, dtype, name=None):
  """BatchNorm of ``x`` whose batch statistics skip the rows where ``mask`` ([B] bool, or None
  for all rows) is False."""
  if mask is not None:
    mask = jnp.broadcast_to(jnp.reshape(mask, mask.shape + (1,) * (x.ndim - 1)), x.shape)
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32, name=name)(x, mask=mask)


def _conv(features, kernel, strides=1, padding=0, dtype=jnp.float32, name=None):
  """A bias-free conv with PyTorch-style symmetric zero padding (not 'SAME', which pads
  asymmetrically under stride 2)."""
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((padding, padding), (padding, padding)), use_bias=False,
                 kernel_init=_conv_init, dtype=dtype, param_dtype=jnp.float32, name=name)


class BasicBlock(nn.Module):
  """ResNet BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)).

  ``output_relu=False`` drops the outer ReLU (the last block of a ResNet without final ReLU).
  """
  features: int
  strides: int = 1
  output_relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    y = _conv(self.features, 3, self.strides, 1, self.dtype, name="conv1")(x)
    y = nn.relu(_norm(y, train, mask, self.dtype, "bn1"))
    y = _conv(self.features, 3, 1, 1, self.dtype, name="conv2")(y)
    y = _norm(y, train, mask, self.dtype, "bn2")
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = _conv(self.features, 1, self.strides, 0, self.dtype, name="shortcut_conv")(x)
      shortcut = _norm(shortcut, train, mask, self.dtype, "shortcut_bn")
    y = y + shortcut
    return nn.relu(y) if self.output_relu else y


class ResNet18(nn.Module):
  """ResNet-18 with the CIFAR stem; returns the globally average-pooled features [B, d]."""
  width: float = 1.0
  final_relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    x = _conv(_scaled(64, self.width), 3, 1, 1, self.dtype, name="stem_conv")(x)
    x = nn.relu(_norm(x, train, mask, self.dtype, "stem_bn"))
    num_stages = len(_RESNET_BLOCKS)
    for stage, (channels, blocks) in enumerate(zip(_RESNET_WIDTHS, _RESNET_BLOCKS)):
      for block in range(blocks):
        last = stage == num_stages - 1 and block == blocks - 1
        x = BasicBlock(_scaled(channels, self.width),
                       strides=2 if (stage > 0 and block == 0) else 1,
                       output_relu=self.final_relu or not last, dtype=self.dtype,
                       name=f"stage{stage + 1}_block{block + 1}")(x, train, mask)
    return jnp.mean(x, axis=(1, 2))


def _densenet_out_side(side: int) -> int:
  """Spatial side after the DenseNet stem conv, max-pool and the two transitions."""
  side = (side + 2 * 3 - 7) // 2 + 1   # 7x7 stride-2 conv, padding 3
  side = (side + 2 * 1 - 3) // 2 + 1   # 3x3 stride-2 max-pool, padding 1
  for _ in range(len(_DENSENET_BLOCKS) - 1):
    side //= 2                         # 2x2 stride-2 average pool of each transition
  return side


def _densenet_channels(width: float) -> list[int]:
  """Channel counts after the stem and after each dense block / transition."""
  growth = _scaled(_DENSENET_GROWTH, width)
  channels = [_scaled(_DENSENET_STEM, width)]
  for i, layers in enumerate(_DENSENET_BLOCKS):
    channels.append(channels[-1] + layers * growth)
    if i != len(_DENSENET_BLOCKS) - 1:
      channels.append(channels[-1] // 2)  # compression 1/2, as torchvision's num_features // 2
  return channels


class DenseLayer(nn.Module):
  """Bottleneck layer: conv3x3(relu(bn(conv1x1(relu(bn x))))) concatenated to x."""
  growth: int
  bn_size: int = _DENSENET_BN_SIZE
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    y = nn.relu(_norm(x, train, mask, self.dtype, "bn1"))
    y = _conv(self.bn_size * self.growth, 1, 1, 0, self.dtype, name="conv1")(y)
    y = nn.relu(_norm(y, train, mask, self.dtype, "bn2"))
    y = _conv(self.growth, 3, 1, 1, self.dtype, name="conv2")(y)
    return jnp.concatenate([x, y], axis=-1)


class DenseNet40(nn.Module):
  """DenseNet-40-BC-like network of the paper's code; returns pooled features [B, d]."""
  width: float = 1.0
  final_relu: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    side = min(x.shape[1], x.shape[2])
    if _densenet_out_side(side) < 1:
      raise ValueError(
          f"densenet40 needs images of at least 13x13 pixels (16 or more recommended); got "
          f"{x.shape[1]}x{x.shape[2]}: use resnet18 or mlp for small images")
    growth = _scaled(_DENSENET_GROWTH, self.width)
    x = _conv(_scaled(_DENSENET_STEM, self.width), 7, 2, 3, self.dtype, name="stem_conv")(x)
    x = nn.relu(_norm(x, train, mask, self.dtype, "stem_bn"))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for i, layers in enumerate(_DENSENET_BLOCKS):
      for j in range(layers):
        x = DenseLayer(growth, dtype=self.dtype,
                       name=f"block{i + 1}_layer{j + 1}")(x, train, mask)
      if i != len(_DENSENET_BLOCKS) - 1:
        x = nn.relu(_norm(x, train, mask, self.dtype, f"transition{i + 1}_bn"))
        x = _conv(x.shape[-1] // 2, 1, 1, 0, self.dtype, name=f"transition{i + 1}_conv")(x)
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = _norm(x, train, mask, self.dtype, "final_bn")
    if self.final_relu:
      x = nn.relu(x)
    return jnp.mean(x, axis=(1, 2))


class MLP(nn.Module):
  """Dense -> BN -> ReLU layers on the flattened input; BN only on the (0-based) layers in
  ``norm_layers``; no ReLU after the last one iff ``final_relu`` is False."""
  widths: Sequence[int] = (256, 256)
  final_relu: bool = True
  dtype: Any = jnp.float32
  norm_layers: Sequence[int] | None = None   # None: every layer

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32, name=f"dense{i + 1}")(x)
      if self.norm_layers is None or i in self.norm_layers:
        x = _norm(x, train, mask, self.dtype, f"bn{i + 1}")
      if self.final_relu or i != len(self.widths) - 1:
        x = nn.relu(x)
    return x


class EmbeddingModel(nn.Module):
  """Backbone (+ optional extra linear layer, projection head, classifier) -> output dict.

  See the module docstring for the meaning of the fields and of the returned dict.
  """
  arch: str = "resnet18"
  width: float = 1.0
  final_relu: bool = True
  head_dim: int = 0
  mlp_widths: Sequence[int] = (256, 256)
  mlp_norm_layers: Sequence[int] | None = None
  # (name, width, relu) of each Dense after the backbone (``linear_layers`` of create_model).
  linear_layers: Sequence[tuple[str, int, bool]] = ()
  num_classes: int = 10
  classifier: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    x = jnp.asarray(x).astype(self.dtype)
    # With a projection head the switch acts on the head's output; the backbone's last ReLU
    # is then an ordinary hidden activation and stays.
    backbone_relu = self.final_relu or self.head_dim > 0
    if self.arch == "resnet18":
      backbone = ResNet18(self.width, backbone_relu, self.dtype, name="backbone")
    elif self.arch == "densenet40":
      backbone = DenseNet40(self.width, backbone_relu, self.dtype, name="backbone")
    elif self.arch == "mlp":
      backbone = MLP(tuple(self.mlp_widths), backbone_relu, self.dtype,
                     norm_layers=self.mlp_norm_layers, name="backbone")
    else:
      raise ValueError(f"model.name must be one of {MODELS}, got {self.arch!r}")
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    h = backbone(x, train, mask)
    for name, features, relu in self.linear_layers:
      h = dense(features, name=name)(h)
      if relu:
        h = nn.relu(h)
    out = {}
    if self.head_dim > 0:
      z = dense(h.shape[-1], name="head_hidden")(h)
      z = dense(self.head_dim, name="head_out")(nn.relu(z))
      if self.final_relu:
        z = nn.relu(z)
      out["backbone"] = h.astype(jnp.float32)
    else:
      z = h
    features = z.astype(jnp.float32)
    out["features"] = features
    out["embedding"] = l2_normalize(features)
    if self.classifier:
      logits = dense(self.num_classes, use_bias=True, name="classifier")(h)
      out["logits"] = logits.astype(jnp.float32)
    return out


def _model_fields(model_config) -> dict:
  """The EmbeddingModel fields of ``model_config``. Every field is read whatever the
  architecture and none has a fallback (the defaults live in
  experiments/configs/cifar10_resnet18.py)."""
  def get(name):
    return config_lib.read_field(model_config, f"model.{name}")

  name = str(get("name"))
  if name not in MODELS:
    raise ValueError(f"model.name must be one of {MODELS}, got {name!r}")
  width = float(get("width"))
  if not width > 0:
    raise ValueError(f"model.width must be > 0, got {width}")
  dtype_name = str(get("dtype"))
  if dtype_name not in DTYPES:
    raise ValueError(f"model.dtype must be one of {tuple(DTYPES)}, got {dtype_name!r}")
  mlp_widths = tuple(int(w) for w in get("mlp_widths"))
  if name == "mlp" and (not mlp_widths or min(mlp_widths) < 1):
    raise ValueError(f"model.mlp_widths must be a non-empty list of positive ints, got "
                     f"{mlp_widths}")
  head_dim = int(get("head_dim"))
  if head_dim < 0:
    raise ValueError(f"model.head_dim must be >= 0, got {head_dim}")
  projection_dim = int(get("projection_dim"))
  if projection_dim < 0:
    raise ValueError(f"model.projection_dim must be >= 0, got {projection_dim}")
  extra_linear, projection_relu = bool(get("extra_linear")), bool(get("projection_relu"))
  final_relu, mlp_norm = bool(get("final_relu")), get("mlp_norm")
  if extra_linear and projection_dim > 0:
    raise ValueError("model.extra_linear is the projection to the backbone width without ReLU; "
                     "give either it or model.projection_dim, not both")
  linear_layers = []
  if extra_linear:
    linear_layers.append(("extra_linear", _backbone_width(name, width, mlp_widths), False))
  if projection_dim > 0:
    linear_layers.append(("projection", projection_dim, projection_relu))
  return dict(arch=name, width=width, final_relu=final_relu, head_dim=head_dim,
              mlp_widths=mlp_widths, mlp_norm_layers=parse_mlp_norm(mlp_norm, len(mlp_widths)),
              linear_layers=tuple(linear_layers), dtype=DTYPES[dtype_name])


# What the trainer prints once when a config uses the old name of the projection.
EXTRA_LINEAR_DEPRECATION = (
    "model.extra_linear is deprecated (accepted until the next release): it is "
    "model.projection_dim={width} with model.projection_relu=False, the same network")


def deprecations(model_config) -> list[str]:
  """The deprecation lines of ``model_config`` (one per old field it uses)."""
  fields = _model_fields(model_config)
  return [EXTRA_LINEAR_DEPRECATION.format(width=w)
          for n, w, _ in fields["linear_layers"] if n == "extra_linear"]


def parse_mlp_norm(spec, num_layers: int) -> tuple[int, ...] | None:
  """``model.mlp_norm`` -> the 0-based MLP layers with BatchNorm (None: all of them).

  ``"all"`` -> None, ``"none"`` -> (), ``"1,3"`` -> (0, 2) (1-based numbers in the config, as
  the parameter names ``dense1``, ``bn1``, ... are).
  """
  text = str(spec).strip().lower()
  if text == "all":
    return None
  if text in ("none", ""):
    return ()
  try:
    layers = sorted({int(t) for t in text.split(",")})
  except ValueError:
    layers = None
  if not layers or layers[0] < 1 or layers[-1] > num_layers:
    raise ValueError(f"model.mlp_norm must be 'all', 'none' or comma-separated layer numbers "
                     f"in 1..{num_layers}, got {spec!r}")
  return tuple(l - 1 for l in layers)


def backbone_dim(model_config) -> int:
  """Width of the backbone's pooled output (before any projection head)."""
  fields = _model_fields(model_config)
  return _backbone_width(fields["arch"], fields["width"], fields["mlp_widths"])


def _backbone_width(arch: str, width: float, mlp_widths: Sequence[int]) -> int:
  if arch == "resnet18":
    return _scaled(_RESNET_WIDTHS[-1], width)
  if arch == "densenet40":
    return _densenet_channels(width)[-1]
  return mlp_widths[-1]


def embedding_dim(model_config, num_classes: int | None = None) -> int:
  """The embedding dimension d: head_dim with a projection head, else projection_dim with a
  linear projection, else the backbone width (512 * width for resnet18, 142 for densenet40 at
  width 1, mlp_widths[-1] for mlp).

  ``num_classes`` is accepted for interface symmetry; d does not depend on it.
  """
  del num_classes
  fields = _model_fields(model_config)
  if fields["head_dim"] > 0:
    return fields["head_dim"]
  if fields["linear_layers"]:       # the projection, else extra_linear (the backbone width)
    return fields["linear_layers"][-1][1]
  return _backbone_width(fields["arch"], fields["width"], fields["mlp_widths"])


def model_facts(model_config) -> dict:
  """What the network built from ``model_config`` is, as run.json's ``model`` records it.

  Read off the same fields that `create_model` builds the network from, so that no reader
  re-derives them from a config: ``embedding_dim`` (d), ``before_embedding`` (the layer whose
  output is normalised: ``"head_out"``, the last of ``linear_layers`` or ``"backbone"``),
  ``relu_before_embedding`` (whether that output is a ReLU's, docs/theory.md#choice-no-relu),
  ``backbone_dim`` and ``linear_layers`` ([{name, width, relu}] after the backbone).
  """
  fields = _model_fields(model_config)
  layers = [{"name": n, "width": int(w), "relu": bool(r)} for n, w, r in fields["linear_layers"]]
  if fields["head_dim"] > 0:
    before, relu = "head_out", fields["final_relu"]
  elif layers:
    before, relu = layers[-1]["name"], layers[-1]["relu"]
  else:
    before, relu = "backbone", fields["final_relu"]
  return {"name": fields["arch"], "embedding_dim": embedding_dim(model_config),
          "relu_before_embedding": bool(relu), "before_embedding": before,
          "backbone_dim": _backbone_width(fields["arch"], fields["width"], fields["mlp_widths"]),
          "head_dim": fields["head_dim"], "linear_layers": layers}


def create_model(model_config, num_classes: int, *, classifier: bool = False) -> nn.Module:
  """Builds the network described by ``model_config`` (the ``model`` ConfigDict).

  Example::

    model = create_model(config.model, num_classes=10, classifier=False)
    variables = model.init(jax.random.key(0), x[:2], train=False)
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    # or apply_model(model, variables, x, train=True, mask=real_rows)
    h = out["embedding"]          # [B, d] float32, unit rows

  Raises:
    ConfigError: a field of ``model`` is missing (it names the field).
    ValueError: unknown name or dtype, non-positive width, bad mlp_widths.
  """
  if int(num_classes) < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  return EmbeddingModel(num_classes=int(num_classes), classifier=bool(classifier),
                        **_model_fields(model_config))


def apply_model(model: nn.Module, variables, x, *, train: bool, mask=None):
  """``(outputs, batch_stats updates)`` of ``model`` on ``x``; ``(outputs, None)`` in eval mode.

  In train mode with ``mask`` ([B] bool over the leading axis of ``x``) every BatchNorm
  computes its batch statistics over the rows where the mask is True (the module docstring
  gives the formula), so padding rows change neither the outputs of the real rows nor the
  running statistics.
  """
  if not train:
    return model.apply(variables, x, train=False), None
  return model.apply(variables, x, train=True, mask=mask, mutable=["batch_stats"])
