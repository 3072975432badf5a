"""Runs described in words: labels, setup lines and number formats for captions and tables."""

from __future__ import annotations

from typing import Sequence

from experiments.report.runs import Run, embedding_relu, ufm_loss_kind


def fmt(value) -> str:
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, float):
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
      return f"{value:.3g}"
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(fmt(v) for v in value) + "]"
  return str(value)


def run_label(run: Run) -> str:
  """Short role label: UFM+ / UFM / CE-UFM, or SCL ReLU / SCL no ReLU / CE (+ binding)."""
  if run.kind == "ufm":
    relu = bool(run.get("final_relu", True))
    if ufm_loss_kind(run) == "ce":
      return "CE-UFM+" if relu else "CE-UFM"
    return "UFM+" if relu else "UFM"
  flat = run.flat
  if flat.get("loss", "scl") == "ce":
    label = "CE"
  else:
    label = "SCL, ReLU" if embedding_relu(flat) else "SCL, no ReLU"
    if flat.get("model.projection_dim", 0):
      label += f" after a projection to {flat['model.projection_dim']}"
    elif flat.get("model.extra_linear"):
      label += " + linear"
  if flat.get("binding", 0):
    label += f", binding {flat['binding']}"
  return label


def seeds_text(seed) -> str:
  """"seed 0", or "seeds 0, 1, 2" for the seed list of a group of seed runs."""
  if isinstance(seed, list):
    return ("seed " if len(seed) == 1 else "seeds ") + ", ".join(map(str, seed))
  return f"seed {seed}"


def settings_text(group: Sequence[Run]) -> str:
  """The settings a verdict over training runs covers, in words: "at R = 1 and 10
  reshuffled", "at R = 100 with binding", "at R = 1 (balanced)"."""
  ratios = []
  for run in group:
    ratio = 1 if run.flat.get("data.imbalance", "none") == "none" else run.flat.get("data.ratio")
    if fmt(ratio) not in ratios:
      ratios.append(fmt(ratio))
  if not ratios:
    return "(no run)"
  text = "at R = " + (ratios[0] if len(ratios) == 1 else
                      ", ".join(ratios[:-1]) + " and " + ratios[-1])
  flat = group[0].flat
  if flat.get("binding", 0):
    return text + " with binding"
  return text + (" reshuffled" if flat.get("batching", "shuffle") == "shuffle" else
                 f" ({flat.get('batching')} batches)")


# Config fields of a training run's setup line, in order, with their text.
_SETUP_FIELDS = (("temperature", "τ={}"), ("data.imbalance", "imbalance {}"),
                 ("data.ratio", "R={}"), ("data.rho", "ρ={}"), ("data.n_max", "n_max={}"),
                 ("batch_size", "batch size {}"),
                 ("batching", "{} batches"), ("binding", "binding {}/class"),
                 ("data.views", "views {}"), ("num_epochs", "{} epochs"), ("lr", "lr {}"))


def setup_text(run: Run, skip: Sequence[str] = ()) -> str:
  """The exact setup of a run, for captions."""
  if run.kind == "ufm":
    parts = [run_label(run)]
    parts.append(f"loss {ufm_loss_kind(run)}")
    for name, form in (("sizes", "class sizes {}"), ("dim", "d={}"), ("temperature", "τ={}"),
                       ("batching", "batching {}"),
                       ("binding", "binding {}/class"), ("seed", "seed {}"), ("dtype", "{}")):
      value = run.get(name)
      if value is not None and name not in skip:
        parts.append(form.format(fmt(value)))
    steps = run.get("steps")
    if steps is not None:
      parts.append(f"{steps} steps")
    return ", ".join(parts)
  f = run.flat
  model = f"{f.get('model.name')}" + (f" widths {fmt(f.get('model.mlp_widths'))}"
                                      if f.get("model.name") == "mlp"
                                      else f" width x{fmt(f.get('model.width', 1.0))}")
  relu = "final ReLU" if embedding_relu(f) else "no final ReLU"
  if f.get("model.projection_dim", 0):
    relu += f" (after a linear projection to {fmt(f['model.projection_dim'])})"
  elif f.get("model.extra_linear"):
    relu += " (extra linear)"
  parts = []
  for name, text in (("data.name", "{}"), ("model.name", model), ("model.final_relu", relu),
                     ("loss", str(f.get("loss", "scl")).upper()), *_SETUP_FIELDS,
                     ("seed", seeds_text(f.get("seed")))):
    if name in skip or (name not in f and name not in ("model.final_relu", "loss")):
      continue
    if name in ("data.ratio", "data.rho") and f.get("data.imbalance") == "none":
      continue
    if name == "temperature" and f.get("loss") == "ce":
      continue
    parts.append(text.format(fmt(f.get(name, 0))) if "{}" in text else text)
  return ", ".join(parts)


def line_label(run: Run, fields: Sequence[str]) -> str:
  """A curve's legend entry: the values of `fields` that tell the runs of a figure apart."""
  parts = []
  for f in fields:
    value = run.flat.get(f)
    if f == "data.ratio":
      parts.append(f"R={fmt(value)}")
    elif f == "binding":
      parts.append(f"binding {value}" if value else "no binding")
    elif f == "batching":
      parts.append(f"{value}")
    elif f == "temperature":
      parts.append(f"τ={fmt(value)}")
    elif f == "model.final_relu":
      parts.append("ReLU" if value else "no ReLU")
    elif f == "loss":
      parts.append(str(value).upper())
    else:
      parts.append(f"{f}={fmt(value)}")
  return ", ".join(parts)
