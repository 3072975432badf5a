"""Runs described in words: labels, setup lines and number formats for captions and tables."""

from __future__ import annotations

from typing import Sequence

from experiments.report.runs import Run


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


def _before_embedding(run: Run) -> str | None:
  """"projection" or "extra_linear" when a linear layer of that name makes the embedding
  (run.json's ``model.before_embedding``), else None."""
  before = run.record["model"]["before_embedding"]
  return before if before in ("projection", "extra_linear") else None


def run_label(run: Run) -> str:
  """Short role label: UFM+ / UFM / CE-UFM, or SCL ReLU / SCL no ReLU / CE (+ binding)."""
  if run.kind == "ufm":   # the kinds differ: a solve is named by its model, not its layers
    if run.loss == "ce":
      return "CE-UFM+" if run.relu else "CE-UFM"
    return "UFM+" if run.relu else "UFM"
  if run.loss == "ce":
    label = "CE"
  else:
    label = "SCL, ReLU" if run.relu else "SCL, no ReLU"
    if _before_embedding(run) == "projection":
      label += f" after a projection to {run.record['model']['embedding_dim']}"
    elif _before_embedding(run) == "extra_linear":
      label += " + linear"
  if run.binding:
    label += f", binding {run.binding}"
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
  if group[0].binding:
    return text + " with binding"
  return text + (" reshuffled" if group[0].batching == "shuffle" else
                 f" ({group[0].batching} batches)")


# Config fields of a training run's setup line, in order, with their text.
_SETUP_FIELDS = (("temperature", "τ={}"), ("data.imbalance", "imbalance {}"),
                 ("data.ratio", "R={}"), ("data.rho", "ρ={}"), ("data.n_max", "n_max={}"),
                 ("batch_size", "batch size {}"),
                 ("batching", "{} batches"), ("binding", "binding {}/class"),
                 ("data.views", "views {}"), ("num_epochs", "{} epochs"), ("lr", "lr {}"))


def setup_text(run: Run, skip: Sequence[str] = ()) -> str:
  """The exact setup of a run, for captions."""
  record = run.record
  if run.kind == "ufm":
    # The kinds differ: a solve's setup is its problem (sizes, d, seed, dtype), a training
    # run's its data, network and schedule.
    parts = [run_label(run)]
    parts.append(f"loss {run.loss}")
    # The best seed is a result (result.json's seed), the rest facts of the run record.
    values = {"sizes": run.class_sizes, "dim": record["model"]["embedding_dim"],
              "temperature": run.temperature, "batching": run.batching, "binding": run.binding,
              "seed": run.data.get("seed"), "dtype": run.get("dtype")}
    for name, form in (("sizes", "class sizes {}"), ("dim", "d={}"), ("temperature", "τ={}"),
                       ("batching", "batching {}"),
                       ("binding", "binding {}/class"), ("seed", "seed {}"), ("dtype", "{}")):
      value = values[name]
      if value is not None and name not in skip:
        parts.append(form.format(fmt(value)))
    steps = record["epochs"]["reached"]
    if steps is not None:
      parts.append(f"{steps} steps")
    return ", ".join(parts)
  # The config (run.json's extra.config) names the run; what it was (loss, temperature,
  # batching, epochs) is the record's own facts.
  f = {**run.flat, "data.name": record["data"]["name"], "model.name": record["model"]["name"],
       "loss": run.loss, "temperature": run.temperature,
       "batch_size": record["batching"]["batch_size"], "batching": run.batching,
       "binding": run.binding, "num_epochs": record["epochs"]["planned"]}
  model = f"{f.get('model.name')}" + (f" widths {fmt(f.get('model.mlp_widths'))}"
                                      if f.get("model.name") == "mlp"
                                      else f" width x{fmt(f.get('model.width', 1.0))}")
  relu = "final ReLU" if run.relu else "no final ReLU"
  if _before_embedding(run) == "projection":
    relu += f" (after a linear projection to {fmt(record['model']['embedding_dim'])})"
  elif _before_embedding(run) == "extra_linear":
    relu += " (extra linear)"
  parts = []
  for name, text in (("data.name", "{}"), ("model.name", model), ("model.final_relu", relu),
                     ("loss", run.loss.upper()), *_SETUP_FIELDS,
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
      parts.append("ReLU" if run.relu else "no ReLU")
    elif f == "loss":
      parts.append(run.loss.upper())
    else:
      parts.append(f"{f}={fmt(value)}")
  return ", ".join(parts)
