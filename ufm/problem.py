"""UFM / UFM+ problem definitions: class sizes, dimension, temperature, loss, constraint set and
batching, validated with one clear error per bad input (docs/theory.md#ufm, #theory, #data-protocol;
docs/contracts.md "The `ufm` command").

A problem is pure data: the solver (`ufm.solver`) turns it into arrays. Rows of H are ordered by
label (class 0's examples first) for `--sizes`/`--classes`, and in the file's order for a
schedule file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Sequence

import numpy as np

from geometry import batching as batching_lib
from geometry import frames
from geometry import imbalance as imbalance_lib

LOSSES = ("scl", "ce")
# Seeds become int32 PRNG keys (float32 solves run without x64), and the solver keys its noise
# with 10_000 + seed: every seed S..S+N-1 must stay at or below this.
SEED_MAX = 2**31 - 1 - 10_000
DTYPES = ("float32", "float64")


class ProblemError(ValueError):
  """A bad user input; the CLI prints its message as one line and exits non-zero."""


def _error(message: str):
  raise ProblemError(message)


def parse_sizes(text: str) -> list[int]:
  """`"500,500,50,50"` -> [500, 500, 50, 50]; every size a positive integer."""
  parts = [p.strip() for p in str(text).split(",")]
  sizes = []
  for part in parts:
    try:
      value = int(part)
    except ValueError:
      _error(f"--sizes: {part!r} is not an integer class size")
    if value <= 0:
      _error(f"--sizes: class sizes must be positive integers, got {value}")
    sizes.append(value)
  if len(sizes) < 2:
    _error(f"need at least 2 classes, got {len(sizes)}")
  return sizes


def parse_imbalance(text: str) -> tuple[str, float]:
  """`none`, `step:R` or `exp:R` -> (kind, R)."""
  text = str(text).strip()
  if text == "none":
    return "none", 1.0
  kind, _, ratio = text.partition(":")
  if kind not in ("step", "exp") or not ratio:
    _error(f"--imbalance must be none, step:R or exp:R, got {text!r}")
  try:
    value = float(ratio)
  except ValueError:
    _error(f"--imbalance: ratio {ratio!r} is not a number")
  if not math.isfinite(value) or value < 1:
    _error(f"--imbalance: the ratio R must be a finite number >= 1, got {ratio}")
  return kind, value


def sizes_from_recipe(num_classes: int, imbalance: str, n_max: int, rho: float = 0.5) -> list[int]:
  """Class sizes from the paper's recipes (docs/theory.md#data-protocol) via `geometry.imbalance.class_sizes`."""
  if num_classes < 2:
    _error(f"need at least 2 classes, got {num_classes}")
  if n_max < 1:
    _error(f"--n-max must be a positive integer, got {n_max}")
  kind, ratio = parse_imbalance(imbalance)
  try:
    return imbalance_lib.class_sizes(num_classes, kind, ratio, n_max, rho)
  except ValueError as e:
    _error(str(e))


def load_schedule(path: str) -> tuple[np.ndarray, list[np.ndarray]]:
  """Reads a schedule file `{"labels": [...], "batches": [[i, ...], ...]}` and validates it."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    _error(f"cannot read schedule file {path}: {e.strerror}")
  try:
    data = json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError as e:
    _error(f"schedule file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
           f"{e.start})")
  except json.JSONDecodeError as e:
    _error(f"schedule file {path} is not valid JSON: {e.msg} (line {e.lineno})")
  except RecursionError:
    _error(f"schedule file {path} is nested too deeply to be a schedule (lists in lists)")
  if not isinstance(data, dict) or "labels" not in data or "batches" not in data:
    _error(f"schedule file {path} must be a JSON object with keys 'labels' and 'batches'")
  labels, batches = data["labels"], data["batches"]

  def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)

  if not isinstance(labels, list) or not all(is_int(y) and y >= 0 for y in labels):
    _error(f"schedule file {path}: 'labels' must be a list of non-negative integers")
  if not labels:
    _error(f"schedule file {path}: 'labels' is empty")
  if max(labels) >= len(labels):
    # Checked before counting: a label of 10^8 would otherwise allocate 10^8 counts.
    _error(f"schedule file {path}: label {max(labels)} with only {len(labels)} examples; "
           "labels must be 0..K-1 with an example of every class")
  labels = np.asarray(labels, np.int64)
  counts = np.bincount(labels)
  if np.any(counts == 0):
    missing = np.flatnonzero(counts == 0).tolist()
    _error(f"schedule file {path}: classes {missing} have no example (labels must be 0..K-1)")
  if len(counts) < 2:
    _error(f"need at least 2 classes, got {len(counts)}")
  if not isinstance(batches, list) or not batches:
    _error(f"schedule file {path}: 'batches' must be a non-empty list of index lists")
  out = []
  for b, batch in enumerate(batches):
    if not isinstance(batch, list) or not all(is_int(i) for i in batch):
      _error(f"schedule file {path}: batch {b} must be a list of integer indices")
    if any(i < 0 or i >= len(labels) for i in batch):
      _error(f"schedule file {path}: batch {b} has an index out of range [0, {len(labels)})")
    if len(batch) < 2:
      _error(f"schedule file {path}: batch {b} has {len(batch)} example(s); batch size must be >= 2")
    if len(set(batch)) < len(batch):
      seen = set()
      repeated = next(i for i in batch if i in seen or seen.add(i))
      _error(f"schedule file {path}: batch {b} repeats index {repeated} (a repeated row would "
             "count as its own positive); list each example once per batch")
    out.append(np.asarray(batch, np.int64))
  return labels, out


@dataclasses.dataclass(frozen=True)
class Problem:
  """One UFM / UFM+ problem.

  Attributes:
    labels: `[n]` labels; `sizes[c]` = number of rows with label c.
    dim: d, the embedding dimension.
    temperature: the temperature tau (the `--temperature` flag, the `temperature` key of
      result.json, the trainer's `temperature` field).
    final_relu: True for UFM+ (H >= 0 and unit rows: the features after a network's final
      ReLU), False for UFM (unit rows) (the `--final-relu/--no-final-relu` flags, the
      `final_relu` key, the trainer's `model.final_relu` field).
    loss_kind: "scl" or "ce" (ridge-regularised CE-UFM with free classifier W,
      docs/theory.md#ce-ufm) (the `--loss` flag, the `loss` key of the problem definition).
    lambda_h, lambda_w: CE ridge weights.
    batching: the batching spec as given ("full", "shuffle:B", "fixed:B", "fixed:FILE").
    kind: "full", "shuffle", "fixed" or "file".
    batch_size: B (before binding rows) for shuffle/fixed.
    file_batches: the batches of a schedule file.
    binding: binding examples per class appended to every batch (docs/theory.md#batch-binding).
    seed: the first seed; the partition of `fixed:B` and the reshuffles use it too.
    dtype: "float32" or "float64".
  """
  labels: np.ndarray
  dim: int
  temperature: float = 0.1
  final_relu: bool = True
  loss_kind: str = "scl"
  lambda_h: float = 5e-4
  lambda_w: float = 5e-4
  batching: str = "full"
  kind: str = "full"
  batch_size: int | None = None
  file_batches: tuple | None = None
  binding: int = 0
  seed: int = 0
  dtype: str = "float64"

  @property
  def num_classes(self) -> int:
    return int(self.labels.max()) + 1

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  @property
  def sizes(self) -> list[int]:
    return np.bincount(self.labels, minlength=self.num_classes).astype(int).tolist()

  @property
  def full_batch(self) -> bool:
    return self.kind == "full" and self.binding == 0

  def binding_rows(self) -> np.ndarray:
    return batching_lib.binding_indices(self.labels, self.binding, self.num_classes)

  def epoch_batches(self, epoch: int) -> list[np.ndarray]:
    """The batches (binding rows included) of one epoch, as a list of index arrays."""
    n = self.num_examples
    if self.kind == "file":
      batches = list(self.file_batches)
    else:
      batches = list(batching_lib.epoch_batches(self.kind, n, self.batch_size, self.seed, epoch))
    if self.binding:
      batches = batching_lib.add_binding(batches, self.binding_rows())
    return [np.asarray(b, np.int64) for b in batches]

  @property
  def reshuffled(self) -> bool:
    return self.kind == "shuffle"

  def of_loss(self, epoch: int = 0) -> float:
    """The SCL objective (sum form, one epoch) of an exact OF: Thm 1 or the Thm 2 bound."""
    if self.full_batch:
      return frames.scl_optimal_loss(self.sizes, self.temperature)
    return frames.scl_batch_bound(self.labels, self.epoch_batches(epoch), self.temperature,
                                  num_classes=self.num_classes)

  def describe(self) -> dict:
    """The problem definition as JSON-ready fields (written into result.json)."""
    return {"sizes": self.sizes, "num_classes": self.num_classes,
            "num_examples": self.num_examples, "dim": self.dim,
            "temperature": self.temperature, "final_relu": self.final_relu, "loss": self.loss_kind,
            "lambda_h": self.lambda_h if self.loss_kind == "ce" else None,
            "lambda_w": self.lambda_w if self.loss_kind == "ce" else None,
            "batching": self.batching, "batch_size": self.batch_size, "binding": self.binding,
            "seed": self.seed, "dtype": self.dtype}


def _check_number(name: str, value, *, positive=False, nonneg=False):
  try:
    value = float(value)
  except (TypeError, ValueError):
    _error(f"{name} must be a number, got {value!r}")
  if not math.isfinite(value):
    _error(f"{name} must be finite, got {value}")
  if positive and value <= 0:
    _error(f"{name} must be > 0, got {value}")
  if nonneg and value < 0:
    _error(f"{name} must be >= 0, got {value}")
  return value


def check_dim(dim: int, num_classes: int, *, final_relu: bool, loss: str) -> None:
  """UFM+ SCL needs d >= K: K orthogonal non-negative unit vectors need K coordinates."""
  if final_relu and loss == "scl" and dim < num_classes:
    _error(f"--dim {dim} < K = {num_classes}: an orthogonal frame of non-negative unit vectors "
           f"needs d >= K under --final-relu (use --dim {num_classes} or more, or --no-final-relu)")


def make_problem(*, sizes: Sequence[int] | None = None, labels=None, dim: int,
                 temperature: float = 0.1, final_relu: bool = True, loss: str = "scl",
                 lambda_h: float = 5e-4, lambda_w: float = 5e-4, batching: str = "full",
                 binding: int = 0, seed: int = 0, dtype: str = "float64",
                 base_dir: str | os.PathLike | None = None) -> Problem:
  """Builds and validates a problem (raises `ProblemError` with a one-line message).

  Give either `sizes` (rows ordered by class) or, for `batching="fixed:FILE"`, nothing: the
  file's labels define the sizes. A relative FILE is read from `base_dir` (default: the
  working directory); the problem's `batching` keeps FILE as it was given.
  """
  temperature = _check_number("--temperature", temperature, positive=True)
  lambda_h = _check_number("--lambda-h", lambda_h, nonneg=True)
  lambda_w = _check_number("--lambda-w", lambda_w, nonneg=True)
  if loss not in LOSSES:
    _error(f"--loss must be one of {LOSSES}, got {loss!r}")
  if dtype not in DTYPES:
    _error(f"--dtype must be one of {DTYPES}, got {dtype!r}")
  if not isinstance(binding, (int, np.integer)) or binding < 0:
    _error(f"--binding must be a non-negative integer, got {binding}")
  if not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
    _error(f"--seed must be an integer in [0, {SEED_MAX}], got {seed}")
  kind, batch_size, file_batches = _parse_batching(batching)
  if kind == "file":
    if sizes is not None or labels is not None:
      _error("a schedule FILE defines the labels: do not give --sizes/--classes with it")
    file_labels, file_batches = load_schedule(
        os.path.join(base_dir, batching.split(":", 1)[1]) if base_dir is not None
        else batching.split(":", 1)[1])
    labels = file_labels
  elif labels is None:
    if sizes is None:
      _error("give the class sizes (--sizes or --classes/--imbalance/--n-max)")
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
      _error(f"need at least 2 classes, got {len(sizes)}")
    if min(sizes) <= 0:
      _error(f"class sizes must be positive integers, got {sizes}")
    labels = np.repeat(np.arange(len(sizes)), sizes)
  labels = np.asarray(labels, np.int64)
  num_classes = int(labels.max()) + 1
  if num_classes < 2:
    _error(f"need at least 2 classes, got {num_classes}")
  if not isinstance(dim, (int, np.integer)) or dim < 1:
    _error(f"--dim must be a positive integer, got {dim}")
  check_dim(dim, num_classes, final_relu=final_relu, loss=loss)
  if kind in ("fixed", "shuffle") and batch_size > len(labels):
    _error(f"batch size {batch_size} exceeds the {len(labels)} examples")
  counts = np.bincount(labels, minlength=num_classes)
  if binding and counts.min() < binding:
    _error(f"--binding {binding}: class {int(counts.argmin())} has only {int(counts.min())} "
           "example(s)")
  return Problem(labels=labels, dim=int(dim), temperature=temperature,
                 final_relu=bool(final_relu),
                 loss_kind=loss,
                 lambda_h=lambda_h, lambda_w=lambda_w, batching=batching, kind=kind,
                 batch_size=batch_size,
                 file_batches=None if file_batches is None else tuple(file_batches),
                 binding=int(binding), seed=int(seed), dtype=dtype)


def _parse_batching(text: str):
  """`full`, `shuffle:B`, `fixed:B` or `fixed:FILE` -> (kind, B, None)."""
  text = str(text)
  if text == "full":
    return "full", None, None
  kind, _, arg = text.partition(":")
  if kind not in ("shuffle", "fixed") or not arg:
    _error(f"--batching must be full, shuffle:B, fixed:B or fixed:FILE, got {text!r}")
  try:
    size = int(arg)
  except ValueError:
    if kind == "fixed":
      return "file", None, None
    _error(f"--batching shuffle:B needs an integer batch size, got {arg!r}")
  if size < 2:
    _error(f"batch size must be >= 2, got {size}")
  return kind, size, None
