"""Theory-vs-practice report: UFM / UFM+ solves beside trained networks.

Usage::

  python -m experiments.report --out runs/report RUN_DIR [RUN_DIR ...]
  make report RUNS="runs/demo/ufm_plus runs/demo/relu" OUT=runs/report

A RUN_DIR is recognised by its files:

- ``result.json`` (+ ``embeddings.npy``, ``labels.npy``): a ``ufm solve`` result;
- ``metrics.jsonl`` + ``config.json`` (+ ``embeddings_final.npz``): a training workdir;
- any other folder is searched one level down for such runs (so a sweep folder works).

The report is ``OUT/index.html`` (self-contained: every figure is embedded as base64 and also
written as a PNG next to it) and ``OUT/report.json``, which holds every number shown together
with its provenance, so a reader (or a test) can check each one against its source:

- ``{"value": v, "source": "run/metrics.jsonl", "line": i, "key": "dist_of"}``: line ``i``
  (0-based) of a JSON-lines file, key path ``key`` (dots separate nested keys / list indices);
- ``{"value": v, "source": "run/result.json", "key": "seeds.0.loss"}``: a JSON file;
- ``{"values": [...], "x": [...], "x_key": "epoch", "source": ..., "key": ..., "lines": [...]}``:
  a curve read from a JSON-lines file;
- ``{"value": v, "source": "run/embeddings_final.npz", "computed": "gram"}``: computed from
  saved embeddings with `geometry.metrics` (``gram``, ``angle_values``, ``dist_etf_weighted``);
- ``{"value": v, "derived": OP, "from": [...], ...}``: a simple function of other numbers
  (``difference``, ``ratio``, ``max``, ``first_epoch_at_least``, ``first_epoch_below``,
  ``min_difference``, ``gram_distance``, ``median``).

Source paths are relative to ``OUT``. Each verdict lists its numbers and a machine-readable
rule (``conditions``: comparisons that must all hold).

Training runs whose configs differ only in ``seed`` are one setting (experiments/seeds.py):
figures and tables show seed means with their min and max, and a verdict on them holds only
when it holds on every seed (seed counts in ``seeds_total``, ``seeds_holding``, ...).

Report hints (an experiment's ``"report"`` dict, see experiments/sweep.py): ``heatmaps`` (run
names, in panel order), ``thresholds`` (overrides of `THRESHOLDS`), ``references`` (reference
values to check, e.g. docs/theory.md#reference-values: ``{"run", "key", "value", "op": "approx"|"<"|">", "tol",
"claim", "source"}``; ``key`` is a result.json key path, a metrics.jsonl key (last epoch), or
``computed:WHAT`` for a value computed from the saved embeddings) and ``tau_steps`` (add the "smaller tau needs more solver steps" verdict
for UFM+ solves that differ only in tau).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments import __version__
from experiments import report_batching

# Thresholds of the verdicts. They are stated beside every verdict; experiments may override
# them through their report hints.
THRESHOLDS = {
    "ufm_of": 1e-3,          # a UFM solve "is an OF": dist_of below this (docs/contracts.md fraction_of)
    "ufm_gap_rel": 1e-5,     # a UFM+ solve "attains the Thm 1/2 minimum": |gap| / |L*| below this
    "ufm_etf": 1e-3,         # a UFM solve "is an ETF": dist_etf below this
    "ufm_not": 0.1,          # a UFM solve "is not an OF / ETF": distance above this
    "train_of": 0.1,         # a trained network "is an OF": final train dist_of below this
    "train_not_of": 0.1,     # a trained network "is not an OF": final train dist_of above this
    "train_etf": 0.1,        # a trained network's centered means "are an ETF": dist_etf below
    "convergence_of": 0.2,   # "reached the OF" for speed comparisons: dist_of below this
    "zero_error_acc": 0.99,  # zero-error epoch: first logged epoch with ncc_acc_train >= this
    "floor_rel": 0.05,       # "the loss reaches the OF floor": (loss - floor) / floor below this
    "floor_slack": 1e-4,     # "never below the floor": loss - floor >= -slack * floor
    "acc_tol": 0.02,         # accuracy differences within this count as "no loss"
    "angle_tol": 0.01,       # median angle value within this of 0.5 counts as an OF
}

# Config fields that do not change what a run computes (or that identify it anyway); they are
# ignored when runs are grouped.
_IGNORED_FIELDS = ("data.data_dir", "data.download", "checkpoint_every_epochs",
                   "eval_batch_size", "distributed", "workdir", "log_epochs", "seed")

_Y_RANGES = {"dist_of": (0.0, 1.1), "dist_etf": (0.0, 1.1), "nc1": (2e-4, 2e2),
             "mean_cos": (0.0, 1.0)}
_METRIC_TITLES = {"dist_of": "distance to OF", "dist_etf": "distance to ETF (centered)",
                  "nc1": "NC1", "mean_cos": "mean pairwise cosine"}


class ReportError(Exception):
  """Bad report input (reported on one line by the command)."""


# ----------------------------------------------------------------------------------------------
# Reading runs.


def _get_path(obj, key: str):
  """obj[k1][k2]... for key "k1.k2" (integer parts index lists)."""
  for part in key.split("."):
    if isinstance(obj, list):
      obj = obj[int(part)]
    elif isinstance(obj, dict) and part in obj:
      obj = obj[part]
    else:
      raise KeyError(key)
  return obj


def _has_path(obj, key: str) -> bool:
  try:
    _get_path(obj, key)
    return True
  except (KeyError, IndexError, ValueError, TypeError):
    return False


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"model": {"final_relu": True}} -> {"model.final_relu": True}."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def _finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _usable(value) -> bool:
  """A logged value worth plotting or comparing: a finite number, a bool or a list."""
  return isinstance(value, (bool, list)) or _finite(value)


def _balanced(flat: dict) -> bool:
  return flat.get("data.imbalance", "none") == "none" or flat.get("data.ratio", 1) == 1


@dataclass
class Run:
  """One run folder: a UFM result or a training workdir."""
  name: str
  path: Path
  kind: str                                   # "ufm" | "train"
  data: dict = field(default_factory=dict)    # result.json (ufm) or config.json (train)
  metrics: list = field(default_factory=list)  # metrics.jsonl lines (train)
  _emb_cache: Any = None

  # -- setup --------------------------------------------------------------------------------
  @property
  def flat(self) -> dict:
    return flatten(self.data) if self.kind == "train" else {}

  def field_key(self, name: str) -> str | None:
    """Key path of a problem/config field, looked up at the top level and in nested dicts."""
    if self.kind == "train":
      return name if _has_path(self.data, name) else None
    for prefix in ("", "problem.", "config.", "args."):
      if _has_path(self.data, prefix + name):
        return prefix + name
    return None

  def get(self, name: str, default=None):
    key = self.field_key(name)
    return default if key is None else _get_path(self.data, key)

  @property
  def data_file(self) -> Path:
    return self.path / ("result.json" if self.kind == "ufm" else "config.json")

  # -- embeddings ---------------------------------------------------------------------------
  @property
  def embeddings_file(self) -> Path | None:
    path = self.path / ("embeddings.npy" if self.kind == "ufm" else "embeddings_final.npz")
    return path if path.exists() else None

  def embeddings(self):
    """(embeddings [n, d] float64, labels [n] int) or None when not saved."""
    if self._emb_cache is None and self.embeddings_file is not None:
      self._emb_cache = load_embeddings(self.embeddings_file)
    return self._emb_cache

  # -- training metrics ---------------------------------------------------------------------
  def metric_lines(self, key: str) -> list[int]:
    """Indices of metrics lines holding a finite `key`, one per epoch (the last line wins,
    so a resumed run that re-logged an epoch is counted once), sorted by epoch."""
    by_epoch = {}
    for i, line in enumerate(self.metrics):
      if "epoch" in line and _has_path(line, key) and _usable(_get_path(line, key)):
        by_epoch[line["epoch"]] = i
    return [by_epoch[e] for e in sorted(by_epoch)]

  @property
  def final_line(self) -> int | None:
    lines = self.metric_lines("dist_of") or self.metric_lines("train_loss")
    return lines[-1] if lines else None


def load_embeddings(path: Path):
  """Embeddings and labels from a UFM folder (embeddings.npy + labels.npy) or a training
  workdir (embeddings_final.npz with the train embeddings and labels)."""
  if path.suffix == ".npy":
    emb = np.load(path)
    labels = np.load(path.parent / "labels.npy")
  else:
    with np.load(path) as npz:
      names = set(npz.files)
      emb_key = next((k for k in ("embeddings", "train_embeddings", "h", "features")
                      if k in names), None)
      lab_key = next((k for k in ("labels", "train_labels", "y") if k in names), None)
      if emb_key is None or lab_key is None:
        raise ReportError(f"{path}: expected embeddings and labels arrays, found {sorted(names)}")
      emb, labels = npz[emb_key], npz[lab_key]
  return np.asarray(emb, np.float64), np.asarray(labels).astype(np.int64)


def _read_jsonl(path: Path) -> list:
  lines = []
  for raw in path.read_text().splitlines():
    raw = raw.strip()
    if raw:
      try:
        lines.append(json.loads(raw))
      except json.JSONDecodeError:
        # A run killed mid-write leaves a truncated last line; keep the complete ones.
        lines.append({})
  return lines


def _is_ufm(path: Path) -> bool:
  return (path / "result.json").is_file()


def _is_train(path: Path) -> bool:
  return (path / "metrics.jsonl").is_file() and (path / "config.json").is_file()


def discover(paths: Sequence[str | os.PathLike]) -> list[Run]:
  """The runs in `paths` (run folders, or folders holding run folders one level down)."""
  folders = []
  for raw in paths:
    path = Path(raw)
    if not path.is_dir():
      raise ReportError(f"{path}: not a folder")
    if _is_ufm(path) or _is_train(path):
      folders.append(path)
      continue
    found = [p for p in sorted(path.iterdir()) if p.is_dir() and (_is_ufm(p) or _is_train(p))]
    if not found:
      raise ReportError(f"{path}: neither a UFM result (result.json) nor a training workdir "
                        "(metrics.jsonl + config.json), and holds none")
    folders.extend(found)
  runs, names, broken = [], set(), []
  for path in folders:
    name = path.name if path.name not in names else f"{path.parent.name}/{path.name}"
    names.add(name)
    try:
      runs.append(_load_run(name, path))
    except ValueError as e:
      # A run folder broken by a fault (a kill mid-write, a full disk) costs its own run only.
      broken.append(str(e))
      print(f"report: warning: {name} left out: {e}", file=sys.stderr)
  if not runs:
    raise ReportError(f"no readable run: {'; '.join(broken)}")
  return runs


def _load_run(name: str, path: Path) -> Run:
  """One run folder as a `Run`; a file that cannot be read raises `ValueError` naming it."""
  from geometry import runfiles  # pylint: disable=g-import-not-at-top
  if _is_ufm(path):
    run = Run(name, path, "ufm", runfiles.read_json(path / "result.json"))
  else:
    metrics_path = path / "metrics.jsonl"
    try:
      metrics = _read_jsonl(metrics_path)
    except (OSError, UnicodeDecodeError) as e:
      raise ValueError(f"{metrics_path}: cannot be read ({e})") from None
    run = Run(name, path, "train", runfiles.read_json(path / "config.json"), metrics)
    # No logged epoch is a run that has just started, unless it has finished (the trainer
    # writes embeddings_final.npz last): then its metrics were lost.
    if not any(metrics) and run.embeddings_file is not None:
      raise ValueError(f"{metrics_path}: no complete line, although the run finished "
                       f"({run.embeddings_file.name} exists)")
  if not isinstance(run.data, dict):
    raise ValueError(f"{run.data_file}: not a JSON object")
  if run.embeddings_file is not None:
    # Header and size only (a memory map, the zip directory): the arrays load when drawn.
    try:
      if run.embeddings_file.suffix == ".npy":
        np.load(run.embeddings_file, mmap_mode="r")
      else:
        with np.load(run.embeddings_file) as npz:
          npz.files  # pylint: disable=pointless-statement
    except Exception as e:  # a truncated .npy / .npz raises one of several errors
      raise ValueError(f"{run.embeddings_file}: cannot be read "
                       f"({type(e).__name__}: {e})") from None
  return run


# ----------------------------------------------------------------------------------------------
# Numbers with provenance.


class Numbers:
  """Makes provenance records (see the module docstring); sources relative to the report."""

  def __init__(self, out_dir: Path):
    self.out_dir = out_dir

  def rel(self, path: Path) -> str:
    return os.path.relpath(Path(path).resolve(), self.out_dir.resolve())

  def json_value(self, run: Run, key: str) -> dict:
    return {"value": _get_path(run.data, key), "source": self.rel(run.data_file), "key": key}

  def field(self, run: Run, name: str) -> dict | None:
    key = run.field_key(name)
    return None if key is None else self.json_value(run, key)

  def line_value(self, run: Run, line: int, key: str) -> dict:
    record = {"value": _get_path(run.metrics[line], key),
              "source": self.rel(run.path / "metrics.jsonl"), "line": line, "key": key}
    if "epoch" in run.metrics[line]:
      record["epoch"] = run.metrics[line]["epoch"]
    return record

  def final(self, run: Run, key: str) -> dict | None:
    """`key` at the run's last logged epoch (None when that line lacks it; a NaN stays NaN,
    never replaced by an earlier epoch's value)."""
    line = run.final_line
    if line is None or not _has_path(run.metrics[line], key):
      return None
    return self.line_value(run, line, key)

  def series(self, run: Run, key: str) -> dict:
    lines = run.metric_lines(key)
    return {"values": [_get_path(run.metrics[i], key) for i in lines],
            "x": [run.metrics[i]["epoch"] for i in lines], "x_key": "epoch", "lines": lines,
            "source": self.rel(run.path / "metrics.jsonl"), "key": key}

  def computed(self, run: Run, what: str) -> dict | None:
    """A metric computed from the saved embeddings with geometry.metrics."""
    loaded = run.embeddings()
    if loaded is None:
      return None
    from geometry import metrics  # pylint: disable=g-import-not-at-top
    emb, labels = loaded
    k = int(labels.max()) + 1
    means, counts = metrics.class_means(emb, labels, k)
    if what == "gram":
      value = metrics.gram(means).tolist()
    elif what == "angle_values":
      value = metrics.angle_values(means).tolist()
    elif what == "dist_etf_weighted":
      value = metrics.dist_etf(means, weights=counts)
    elif what == "counts":
      value = counts.tolist()
    else:
      raise ValueError(what)
    return {"value": value, "source": self.rel(run.embeddings_file), "computed": what}

  @staticmethod
  def derived(op: str, sources: list, value, **extra) -> dict:
    return {"value": value, "derived": op, "from": sources, **extra}

  def first_epoch(self, run: Run, key: str, threshold: float, op: str) -> dict:
    """First logged epoch with `key` >= threshold (op "first_epoch_at_least") or < threshold
    ("first_epoch_below"); None when never."""
    s = self.series(run, key)
    hit = None
    for x, v in zip(s["x"], s["values"]):
      if (v >= threshold) if op == "first_epoch_at_least" else (v < threshold):
        hit = x
        break
    return {"value": hit, "derived": op, "threshold": threshold, "source": s["source"],
            "key": key}


def _v(record):
  return None if record is None else record["value"]


# ----------------------------------------------------------------------------------------------
# Describing runs.


def _fmt(value) -> str:
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, float):
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
      return f"{value:.3g}"
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(_fmt(v) for v in value) + "]"
  return str(value)


def ufm_loss_kind(run: Run) -> str:
  """"scl" or "ce" for a UFM result (its `loss` key is the objective value, so the problem's
  loss kind may sit under another key or in a nested problem definition)."""
  for key in ("problem.loss", "config.loss", "args.loss", "loss_kind", "loss_type",
              "objective", "loss"):
    if _has_path(run.data, key) and isinstance(_get_path(run.data, key), str):
      return _get_path(run.data, key)
  return "scl"


def run_label(run: Run) -> str:
  """Short role label: UFM+ / UFM / CE-UFM, or SCL ReLU / SCL no ReLU / CE (+ binding)."""
  if run.kind == "ufm":
    relu = bool(run.get("relu", True))
    if ufm_loss_kind(run) == "ce":
      return "CE-UFM+" if relu else "CE-UFM"
    return "UFM+" if relu else "UFM"
  flat = run.flat
  if flat.get("loss", "scl") == "ce":
    label = "CE"
  else:
    label = "SCL, ReLU" if flat.get("model.final_relu", True) else "SCL, no ReLU"
    if flat.get("model.extra_linear"):
      label += " + linear"
  if flat.get("binding", 0):
    label += f", binding {flat['binding']}"
  return label


def setup_text(run: Run, skip: Sequence[str] = ()) -> str:
  """The exact setup of a run, for captions."""
  if run.kind == "ufm":
    parts = [run_label(run)]
    parts.append(f"loss {ufm_loss_kind(run)}")
    for name, fmt in (("sizes", "class sizes {}"), ("dim", "d={}"), ("tau", "τ={}"),
                      ("batching", "batching {}"),
                      ("binding", "binding {}/class"), ("seed", "seed {}"), ("dtype", "{}")):
      value = run.get(name)
      if value is not None and name not in skip:
        parts.append(fmt.format(_fmt(value)))
    steps = run.get("steps")
    if steps is not None:
      parts.append(f"{steps} steps")
    return ", ".join(parts)
  f = run.flat
  items = [
      ("data.name", lambda: f"{f.get('data.name')}"),
      ("model.name", lambda: f"{f.get('model.name')}"
       + (f" widths {_fmt(f.get('model.mlp_widths'))}" if f.get("model.name") == "mlp"
          else f" width x{_fmt(f.get('model.width', 1.0))}")),
      ("model.final_relu", lambda: "final ReLU" if f.get("model.final_relu", True)
       else "no final ReLU" + (" (extra linear)" if f.get("model.extra_linear") else "")),
      ("loss", lambda: f"{str(f.get('loss', 'scl')).upper()}"),
      ("temperature", lambda: f"τ={_fmt(f.get('temperature'))}"),
      ("data.imbalance", lambda: f"imbalance {f.get('data.imbalance')}"),
      ("data.ratio", lambda: f"R={_fmt(f.get('data.ratio'))}"),
      ("data.rho", lambda: f"ρ={_fmt(f.get('data.rho'))}"),
      ("data.n_max", lambda: f"n_max={f.get('data.n_max')}"),
      ("batch_size", lambda: f"batch size {f.get('batch_size')}"),
      ("batching", lambda: f"{f.get('batching')} batches"),
      ("binding", lambda: f"binding {f.get('binding', 0)}/class"),
      ("data.views", lambda: f"views {f.get('data.views')}"),
      ("num_epochs", lambda: f"{f.get('num_epochs')} epochs"),
      ("lr", lambda: f"lr {_fmt(f.get('lr'))}"),
      ("seed", lambda: seeds_text(f.get("seed"))),
  ]
  parts = []
  for name, text in items:
    if name in skip or (name not in f and name not in ("model.final_relu", "loss")):
      continue
    if name in ("data.ratio", "data.rho") and f.get("data.imbalance") == "none":
      continue
    if name == "temperature" and f.get("loss") == "ce":
      continue
    parts.append(text())
  return ", ".join(parts)


def seeds_text(seed) -> str:
  """"seed 0", or "seeds 0, 1, 2" for the seed list of a group of seed runs."""
  if isinstance(seed, list):
    return ("seed " if len(seed) == 1 else "seeds ") + ", ".join(map(str, seed))
  return f"seed {seed}"


def _num_classes(run: Run) -> int | None:
  if run.kind == "ufm":
    sizes = run.get("sizes")
    if sizes:
      return len(sizes)
    norms = run.get("class_mean_norms")
    return len(norms) if norms else None
  line = run.final_line
  if line is not None and "class_mean_norms" in run.metrics[line]:
    return len(run.metrics[line]["class_mean_norms"])
  loaded = run.embeddings()
  return None if loaded is None else int(loaded[1].max()) + 1


def _group_key(run: Run, vary: Sequence[str]) -> str:
  flat = {k: v for k, v in run.flat.items()
          if k not in vary and not k.startswith(_IGNORED_FIELDS)}
  return json.dumps(flat, sort_keys=True, default=str)


def group_runs(runs: Sequence[Run], vary: Sequence[str]) -> list[list[Run]]:
  """Training runs grouped so that members differ only in the fields `vary` (in run order)."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(_group_key(run, vary), []).append(run)
  return list(groups.values())


def _sort_key(run: Run, fields: Sequence[str]):
  return tuple(str(run.flat.get(f)) if not _finite(run.flat.get(f)) else f"{run.flat[f]:020.6f}"
               for f in fields)


# ----------------------------------------------------------------------------------------------
# Figures.


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


@dataclass
class Figure:
  id: str
  title: str
  caption: str
  file: str
  data: list


def _save(fig, out_dir: Path, stem: str) -> str:
  name = f"{stem}.png"
  fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
  _plt().close(fig)
  return name


def _colors(n):
  plt = _plt()
  cmap = plt.get_cmap("viridis")
  return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def _line_label(run: Run, fields: Sequence[str]) -> str:
  parts = []
  for f in fields:
    value = run.flat.get(f)
    if f == "data.ratio":
      parts.append(f"R={_fmt(value)}")
    elif f == "binding":
      parts.append(f"binding {value}" if value else "no binding")
    elif f == "batching":
      parts.append(f"{value}")
    elif f == "temperature":
      parts.append(f"τ={_fmt(value)}")
    elif f == "model.final_relu":
      parts.append("ReLU" if value else "no ReLU")
    elif f == "loss":
      parts.append(str(value).upper())
    else:
      parts.append(f"{f}={_fmt(value)}")
  return ", ".join(parts)


class Builder:
  """Collects figures, tables and verdicts for one report."""

  def __init__(self, runs: list[Run], out_dir: Path, thresholds: dict | None = None,
               hints: dict | None = None, *, numbers: Numbers | None = None, draw: bool = True,
               keep=None):
    """`numbers` reads the runs (experiments/seeds.py passes one that reads seed groups);
    `draw=False` builds the figures' data without writing them; `keep(verdict, on_means)`
    selects the verdicts kept (all when None; the others stay in `all_verdicts`)."""
    self.runs = runs
    self.out_dir = out_dir
    self.num = numbers or Numbers(out_dir)
    self.draw = draw
    self.keep = keep
    self.all_verdicts: list[dict] = []
    self.t = {**THRESHOLDS, **(thresholds or {})}
    self.hints = hints or {}
    self.figures: list[Figure] = []
    self.tables: list[dict] = []
    self.verdicts: list[dict] = []
    self.ufm = [r for r in runs if r.kind == "ufm"]
    self.train = [r for r in runs if r.kind == "train"]

  # -- verdicts -----------------------------------------------------------------------------
  def verdict(self, section: str, claim: str, setup: str, conditions: list[dict],
              numbers: list[dict], rule: str, reference: str = "", on_means: bool = False):
    """Adds a verdict. `conditions` are {"lhs": record, "op": "<", "rhs": record or float}; the
    claim holds when all hold, does not hold when one fails, and is inconclusive when a
    number is missing (None / NaN). `on_means`: over seeds, the claim is decided on the seed
    means rather than on every seed (experiments/seeds.py)."""
    outcome = "holds"
    for cond in conditions:
      lhs = _v(cond["lhs"]) if isinstance(cond["lhs"], dict) else cond["lhs"]
      rhs = _v(cond["rhs"]) if isinstance(cond["rhs"], dict) else cond["rhs"]
      result = compare(lhs, cond["op"], rhs, cond.get("missing"))
      if result is None:
        outcome = "inconclusive"
        break
      if not result:
        outcome = "does not hold"
    entry = {"section": section, "claim": claim, "setup": setup, "verdict": outcome,
             "rule": rule, "reference": reference, "conditions": conditions, "numbers": numbers}
    self.all_verdicts.append(entry)
    if self.keep is None:
      self.verdicts.append(entry)
    elif self.keep(entry, on_means):
      self.verdicts.append({**entry, "_on_means": on_means})

  def _save(self, fig, stem: str) -> str:
    if self.draw:
      return _save(fig, self.out_dir, stem)
    _plt().close(fig)
    return f"{stem}.png"

  @staticmethod
  def _band(ax, series: dict, color, floor: float | None = None):
    """The min-max band of a curve averaged over seeds (nothing for a single run)."""
    if "min" in series and series["x"] and max(series.get("count", [1])) > 1:
      lo, hi = np.asarray(series["min"], np.float64), np.asarray(series["max"], np.float64)
      if floor is not None:
        lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
      ax.fill_between(series["x"], lo, hi, color=color, alpha=0.2, lw=0)

  # -- heatmaps -----------------------------------------------------------------------------
  def heatmap_runs(self) -> list[Run]:
    names = self.hints.get("heatmaps")
    if names:
      chosen = [r for r in self.runs if r.name in names]
      return sorted(chosen, key=lambda r: names.index(r.name))
    order = {"UFM+": 0, "UFM": 1, "CE-UFM+": 2, "CE-UFM": 2}
    ufm = sorted(self.ufm, key=lambda r: order.get(run_label(r), 3))
    train = self.train
    if len(ufm) + len(train) > 16:
      # Keep the largest R of each group of runs that differ only in R.
      train = [max(g, key=lambda r: r.flat.get("data.ratio", 1)) for g in
               group_runs(self.train, ["data.ratio"])]

    def train_rank(run):
      f = run.flat
      return (f.get("loss") == "ce", not f.get("model.final_relu", True),
              bool(f.get("binding", 0)))
    return (ufm + sorted(train, key=train_rank))[:16]

  def gram_record(self, run: Run) -> dict | None:
    if run.kind == "ufm" and run.field_key("gram"):
      return self.num.field(run, "gram")
    if run.kind == "train":
      line = run.final_line
      if line is not None and "gram" in run.metrics[line]:
        return self.num.line_value(run, line, "gram")
    return self.num.computed(run, "gram")

  def add_heatmaps(self):
    runs = [r for r in self.heatmap_runs() if self.gram_record(r) is not None]
    if not runs:
      return
    plt = _plt()
    cols = len(runs) if len(runs) <= 5 else 4
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
    data, lines = [], []
    for ax in axes.flat[len(runs):]:
      ax.axis("off")
    for i, (ax, run) in enumerate(zip(axes.flat, runs)):
      gram = self.gram_record(run)
      # Cosines put every panel on one scale (CE features are not normalised).
      cos = Numbers.derived("cosines", [gram], cosines_from_gram(gram["value"]).tolist())
      g = np.asarray(cos["value"], np.float64)
      dist = self.num.field(run, "dist_of") if run.kind == "ufm" else self.num.final(run, "dist_of")
      im = ax.imshow(g, cmap="RdBu_r", vmin=-1, vmax=1)
      k = g.shape[0]
      if k <= 12:
        for a in range(k):
          for b in range(k):
            ax.text(b, a, f"{g[a, b]:.2f}".replace("0.", ".").replace("-.", "-."),
                    ha="center", va="center", fontsize=5 if k > 6 else 7,
                    color="white" if abs(g[a, b]) > 0.6 else "black")
      title = f"({chr(97 + i)}) {run_label(run)}"
      if run.kind == "train" and run.flat.get("data.imbalance") not in (None, "none"):
        title += f", R={_fmt(run.flat.get('data.ratio'))}"
      ax.set_title(title + (f"\ndist_of={_v(dist):.3f}" if dist and _finite(_v(dist)) else ""),
                   fontsize=9)
      ax.set_xticks(range(k))
      ax.set_yticks(range(k))
      ax.tick_params(labelsize=6)
      data.append({"run": run.name, "panel": chr(97 + i), "gram": gram, "cosines": cos,
                   "dist_of": dist})
      lines.append(f"({chr(97 + i)}) {run.name}: {setup_text(run)}"
                   + ("" if run.kind == "ufm" else
                      f"; final class means at epoch {run.metrics[run.final_line]['epoch']}"))
    fig.colorbar(im, ax=axes, shrink=0.8)
    file = self._save(fig, "fig_gram_heatmaps")
    caption = ("Cosines between the (uncentered) class means, i.e. the Gram matrix G_M = M M^T "
               "normalised to unit diagonal; OF = identity, simplex ETF = -1/(K-1) off the "
               "diagonal. Panel titles give dist_of of G_M. Panels: "
               + "; ".join(lines) + ".")
    self.figures.append(Figure("gram_heatmaps", "Class-mean geometry: theory vs practice",
                               caption, file, data))

  # -- curves -------------------------------------------------------------------------------
  def _zero_error(self, runs: list[Run]):
    thr = self.t["zero_error_acc"]
    per_run = {r.name: self.num.first_epoch(r, "ncc_acc_train", thr, "first_epoch_at_least")
               for r in runs}
    values = [_v(v) for v in per_run.values() if _v(v) is not None]
    overall = Numbers.derived("max", list(per_run.values()), max(values) if values else None)
    return per_run, overall

  def add_metric_curves(self):
    metrics = ("dist_of", "dist_etf", "nc1", "mean_cos")
    plt = _plt()
    for gi, group in enumerate(group_runs(self.train, ["data.ratio"])):
      group = sorted(group, key=lambda r: _sort_key(r, ["data.ratio"]))
      if not any(r.metric_lines("dist_of") for r in group):
        continue
      fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
      colors = _colors(len(group))
      per_zero, zero = self._zero_error(group)
      data = {"runs": [r.name for r in group], "series": {}, "zero_error_epoch": per_zero,
              "zero_error_line": zero}
      for ax, key in zip(axes, metrics):
        lo, hi = _Y_RANGES[key]
        for color, run in zip(colors, group):
          s = self.num.series(run, key)
          data["series"].setdefault(key, {})[run.name] = s
          if not s["values"]:
            continue
          y = np.asarray(s["values"], np.float64)
          # The paper's y-ranges, extended only when the data leave them.
          if key == "nc1":
            y = np.maximum(y, 1e-12)
            lo = lo if y.min() >= lo else y.min() / 1.5
            hi = hi if y.max() <= hi else y.max() * 1.5
          else:
            lo = lo if y.min() >= lo else y.min() - 0.05
            hi = hi if y.max() <= hi else y.max() + 0.05
          ax.plot(s["x"], y, "-o", ms=3, color=color, label=_line_label(run, ["data.ratio"])
                  if run.flat.get("data.imbalance") != "none" else "balanced")
          self._band(ax, s, color, floor=1e-12 if key == "nc1" else None)
        if _v(zero) is not None:
          ax.axvline(_v(zero), color="k", ls="--", lw=1, label="Zero Error")
        if key == "nc1":
          ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ax.set_xlabel("epoch")
        ax.set_title(_METRIC_TITLES[key], fontsize=10)
        ax.grid(alpha=0.3)
      axes[0].legend(fontsize=7)
      file = self._save(fig, f"fig_curves_{gi}")
      zero_text = ("no run reached zero training error" if _v(zero) is None else
                   f"dashed line: zero-error epoch {_v(zero)} (the latest over the lines of the "
                   f"first logged epoch with balanced train NCC accuracy >= {self.t['zero_error_acc']})")
      caption = (f"Train-set geometry against epoch, one line per R. Setup: "
                 f"{setup_text(group[0], skip=['data.ratio'])}; lines: "
                 + ", ".join(_line_label(r, ["data.ratio"]) for r in group)
                 + f". {zero_text}. Runs: " + ", ".join(r.name for r in group) + ".")
      self.figures.append(Figure(f"curves_{gi}", f"Geometry over training: {run_label(group[0])}"
                                 f", {group[0].flat.get('data.name')}", caption, file, [data]))
      self._curve_verdicts(group, per_zero)

  def _curve_verdicts(self, group: list[Run], per_zero: dict):
    first = group[0]
    if first.flat.get("loss", "scl") != "scl":
      return
    setup = setup_text(first, skip=["data.ratio"])
    finals = {r.name: self.num.final(r, "dist_of") for r in group}
    finals = {k: v for k, v in finals.items() if v is not None}
    if not finals:
      return
    relu = first.flat.get("model.final_relu", True)
    if relu:
      thr = self.t["train_of"]
      self.verdict(
          "E1", "SCL with a final ReLU learns an orthogonal frame at every R", setup,
          [{"lhs": v, "op": "<", "rhs": thr} for v in finals.values()], list(finals.values()),
          f"holds if the final train dist_of of every run is < {thr}", "docs/theory.md#e1, Thm 1")
      etf = {r.name: self.num.final(r, "dist_etf") for r in group}
      etf = [v for v in etf.values() if v is not None]
      if etf:
        thr = self.t["train_etf"]
        self.verdict(
            "E3", "centering the learned class means (unweighted) gives a simplex ETF", setup,
            [{"lhs": v, "op": "<", "rhs": thr} for v in etf], etf,
            f"holds if the final train dist_etf (unweighted centering) of every run is < {thr}",
            "docs/theory.md#geometries, #centering")
      # The OF keeps forming after zero training error (E1 curve shapes).
      conds, nums = [], []
      for run in group:
        ze = per_zero[run.name]
        final = finals.get(run.name)
        if _v(ze) is None or final is None or _v(ze) >= run.metrics[run.final_line]["epoch"]:
          continue
        line = next(i for i in run.metric_lines("dist_of") if run.metrics[i]["epoch"] == _v(ze))
        at_zero = self.num.line_value(run, line, "dist_of")
        conds.append({"lhs": final, "op": "<", "rhs": at_zero})
        nums += [ze, at_zero, final]
      if conds:
        self.verdict("E1", "dist_of keeps decreasing after the zero-error epoch", setup, conds,
                     nums, "holds if, for every run that reached zero train error before its last "
                     "epoch, the final dist_of is below the dist_of at the zero-error epoch",
                     "docs/theory.md#zero-error, #e1")
    else:
      imbalanced = [r for r in group if not _balanced(r.flat)]
      balanced = [r for r in group if r not in imbalanced]
      if imbalanced:
        thr = self.t["train_not_of"]
        nums = [finals[r.name] for r in imbalanced if r.name in finals]
        self.verdict(
            "E2", "without the final ReLU the learned geometry is not an OF under imbalance",
            setup, [{"lhs": v, "op": ">", "rhs": thr} for v in nums], nums,
            f"holds if the final train dist_of of every imbalanced run (R > 1) is > {thr}",
            "docs/theory.md#ufm-no-relu, #e2")
      if balanced:
        thr = self.t["train_etf"]
        nums = [n for n in (self.num.final(r, "dist_etf") for r in balanced) if n is not None]
        if nums:
          self.verdict(
              "E2", "without the final ReLU, balanced training gives an ETF-like geometry", setup,
              [{"lhs": v, "op": "<", "rhs": thr} for v in nums], nums,
              f"holds if the final train dist_etf of every balanced run is < {thr}",
              "docs/theory.md#ufm-no-relu, #e2")

  # -- final geometry across R (E2) ---------------------------------------------------------
  def add_geometry_vs_ratio(self):
    plt = _plt()
    vary = ["data.ratio", "model.final_relu", "loss", "model.extra_linear"]
    for gi, group in enumerate(group_runs(self.train, vary)):
      ratios = {r.flat.get("data.ratio") for r in group}
      if len(ratios) < 2 or not any(r.final_line is not None for r in group):
        continue
      variants = group_runs(group, ["data.ratio"])
      fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
      data = []
      for variant in variants:
        variant = sorted(variant, key=lambda r: _sort_key(r, ["data.ratio"]))
        entry = {"label": run_label(variant[0]), "runs": [r.name for r in variant]}
        for ax, key in zip(axes, ("dist_of", "dist_etf")):
          recs = [self.num.final(r, key) for r in variant]
          xs = [self.num.field(r, "data.ratio") for r in variant]
          entry[key] = recs
          entry["ratio"] = xs
          pts = [(_v(x), _v(y)) for x, y in zip(xs, recs) if y is not None]
          if pts:
            line, = ax.plot(*zip(*pts), "-o", label=run_label(variant[0]))
            # A mean over seeds: its min-max range as an error bar.
            spread = [(_v(x), _v(y), y["min"], y["max"]) for x, y in zip(xs, recs)
                      if y is not None and "min" in y]
            if spread:
              x, m, lo, hi = (np.asarray(c, np.float64) for c in zip(*spread))
              ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt="none", capsize=3,
                          color=line.get_color())
        data.append(entry)
      for ax, key in zip(axes, ("dist_of", "dist_etf")):
        ax.set_xscale("log")
        ax.set_xlabel("imbalance ratio R")
        ax.set_title(f"final {_METRIC_TITLES[key]}", fontsize=10)
        ax.set_ylim(0, 1.1)
        ax.grid(alpha=0.3)
      axes[0].legend(fontsize=7)
      file = self._save(fig, f"fig_geometry_vs_R_{gi}")
      scl = next((r for r in group if r.flat.get("loss", "scl") == "scl"), group[0])
      caption = ("Final train-set dist_of and dist_etf against the imbalance ratio R, one line "
                 "per variant (" + "; ".join(
                     f"{run_label(v[0])}: R = " + ", ".join(
                         _fmt(r.flat.get("data.ratio")) for r in v) for v in variants)
                 + "). Shared setup: " + setup_text(scl, skip=vary)
                 + (" (τ applies to the SCL variants)" if scl is not group[0] or any(
                     r.flat.get("loss") == "ce" for r in group) else "") + ".")
      self.figures.append(Figure(f"geometry_vs_R_{gi}", "Final geometry across R", caption,
                                 file, data))

  # -- binding / batching / tau comparisons -------------------------------------------------
  def add_comparisons(self):
    plt = _plt()
    studies = [(("model.final_relu", "loss", "model.extra_linear"),
                "With vs without the final ReLU (and CE)", "E2", "relu",
                ("dist_of", "dist_etf", "mean_cos")),
               (("binding", "batching"), "Batch-binding and batch-shuffling", "E5", "binding",
                ("dist_of", "mean_cos", "train_loss")),
               (("temperature",), "Effect of the temperature τ", "E6", "temperature",
                ("dist_of", "mean_cos", "train_loss"))]
    thr = self.t["convergence_of"]
    for fields, title, section, stem, panels in studies:
      for gi, group in enumerate(group_runs(self.train, list(fields))):
        variants = {tuple(str(r.flat.get(f)) for f in fields) for r in group}
        if len(variants) < 2 or not any(r.metric_lines("dist_of") for r in group):
          continue
        group = sorted(group, key=lambda r: _sort_key(r, fields))
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
        colors = _colors(len(group))
        data = {"runs": [r.name for r in group], "series": {}, "first_epoch_below": {}}
        for color, run in zip(colors, group):
          label = _line_label(run, fields) if stem != "relu" else run_label(run)
          for ax, key in zip(axes, panels):
            s = self.num.series(run, key)
            data["series"].setdefault(key, {})[run.name] = s
            if s["values"]:
              ax.plot(s["x"], s["values"], "-o", ms=3, color=color, label=label)
              self._band(ax, s, color)
          fe = self.num.first_epoch(run, "dist_of", thr, "first_epoch_below")
          data["first_epoch_below"][run.name] = fe
          if _v(fe) is not None:
            axes[0].axvline(_v(fe), color=color, ls=":", lw=1)
        axes[0].axhline(thr, color="gray", ls="--", lw=1)
        for ax, key in zip(axes, panels):
          ax.set_xlabel("epoch")
          ax.set_title({"train_loss": "training loss"}.get(key, _METRIC_TITLES.get(key)),
                       fontsize=10)
          ax.grid(alpha=0.3)
        axes[0].set_ylim(0, 1.1)
        axes[0].legend(fontsize=7)
        file = self._save(fig, f"fig_{stem}_{gi}")
        scl = next((r for r in group if r.flat.get("loss", "scl") == "scl"), group[0])
        names = {"dist_of": "dist_of", "dist_etf": "dist_etf", "mean_cos": "mean cosine",
                 "train_loss": "training loss"}
        caption = (f"{title}: " + ", ".join(names[p] for p in panels) + " against epoch. "
                   f"Setup: {setup_text(scl, skip=list(fields))}; lines: "
                   + "; ".join(f"{r.name} ({_line_label(r, fields) if stem != 'relu' else run_label(r)})"
                               for r in group)
                   + f". Dotted verticals: first logged epoch with dist_of < {thr} (gray line).")
        self.figures.append(Figure(f"{stem}_{gi}", title, caption, file, [data]))
        if section == "E5":
          self._binding_verdicts(group, data["first_epoch_below"])

  def _binding_verdicts(self, group: list[Run], first: dict):
    thr = self.t["convergence_of"]
    for run in group:
      if not run.flat.get("binding", 0) or run.flat.get("loss", "scl") != "scl":
        continue
      partner = next((r for r in group if not r.flat.get("binding", 0)
                      and r.flat.get("batching") == run.flat.get("batching")), None)
      if partner is None or not run.flat.get("model.final_relu", True):
        continue
      a, b = first[run.name], first[partner.name]
      setup = setup_text(run, skip=["binding"])
      if _v(a) is None and _v(b) is None:
        fa, fb = self.num.final(run, "dist_of"), self.num.final(partner, "dist_of")
        self.verdict("E5", "batch-binding speeds up convergence to the OF", setup,
                     [{"lhs": fa, "op": "<", "rhs": fb}], [a, b, fa, fb],
                     f"neither run reached dist_of < {thr}; holds if the final dist_of with "
                     f"binding ({run.name}) is below the one without ({partner.name})",
                     "docs/theory.md#batch-binding, #e5")
      else:
        self.verdict("E5", "batch-binding speeds up convergence to the OF", setup,
                      [{"lhs": a, "op": "<", "rhs": b, "missing": "infinity"}], [a, b],
                      f"holds if the first logged epoch with dist_of < {thr} is earlier with "
                      f"binding ({run.name}) than without ({partner.name}); never = infinity",
                      "docs/theory.md#batch-binding, #e5")
      # The union of the batches seen so far: one epoch alone never certifies when drop-last
      # leaves examples out (an example in no batch is an isolated vertex of its C1 graph).
      cert = self.num.final(run, "of_unique_so_far")
      partner_cert = self.num.final(partner, "of_unique_so_far")
      if cert is not None:
        self.verdict("E5", "with binding the batches seen certify the OF as the unique UFM+ "
                     "minimizer (C1 and C2 over the union of epochs)", setup,
                     [{"lhs": cert, "op": "==", "rhs": True}],
                     [cert] + ([partner_cert] if partner_cert else []),
                     f"holds if of_unique_so_far is true at the last epoch of {run.name} (the "
                     f"second number is {partner.name}'s, without binding, for comparison; "
                     "examples that drop-last leaves out of every batch are isolated vertices, "
                     "so a fixed partition with a remainder never certifies)",
                     "docs/theory.md#theorem-2, #batch-binding")

  # -- loss against the OF floor (E6) -------------------------------------------------------
  def add_loss_floor(self):
    plt = _plt()
    for gi, group in enumerate(group_runs(self.train, ["data.ratio"])):
      group = [r for r in sorted(group, key=lambda r: _sort_key(r, ["data.ratio"]))
               if r.flat.get("loss", "scl") == "scl" and r.metric_lines("optimal_loss")]
      if not group:
        continue
      fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
      colors = _colors(len(group))
      data = {"runs": [r.name for r in group], "train_loss": {}, "optimal_loss": {}, "gap": {}}
      gaps_min, gaps_final = [], []
      for color, run in zip(colors, group):
        loss = self.num.series(run, "train_loss")
        floor = self.num.series(run, "optimal_loss")
        data["train_loss"][run.name], data["optimal_loss"][run.name] = loss, floor
        label = _line_label(run, ["data.ratio"])
        axes[0].plot(loss["x"], loss["values"], "-", color=color, label=f"loss, {label}")
        self._band(axes[0], loss, color)
        axes[0].plot(floor["x"], floor["values"], "--", color=color, label=f"OF floor, {label}")
        common = sorted(set(loss["x"]) & set(floor["x"]))
        lv = dict(zip(loss["x"], loss["values"]))
        fv = dict(zip(floor["x"], floor["values"]))
        gap = [lv[e] - fv[e] for e in common]
        data["gap"][run.name] = Numbers.derived("difference", [loss, floor], gap, x=common)
        axes[1].plot(common, gap, "-o", ms=3, color=color, label=label)
        if gap:
          gaps_min.append((run, Numbers.derived("min_difference", [loss, floor], min(gap)),
                           floor))
          i_last = common[-1]
          line_l = next(i for i in loss["lines"] if run.metrics[i]["epoch"] == i_last)
          line_f = next(i for i in floor["lines"] if run.metrics[i]["epoch"] == i_last)
          lrec = self.num.line_value(run, line_l, "train_loss")
          frec = self.num.line_value(run, line_f, "optimal_loss")
          rel = Numbers.derived("ratio", [Numbers.derived("difference", [lrec, frec],
                                                          lv[i_last] - fv[i_last]), frec],
                                (lv[i_last] - fv[i_last]) / fv[i_last] if fv[i_last] else None)
          gaps_final.append((run, rel))
      axes[1].axhline(0, color="k", lw=1)
      axes[0].set_title("training loss (solid) and OF floor (dashed)", fontsize=10)
      axes[1].set_title("gap = loss - OF floor", fontsize=10)
      for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
      axes[0].legend(fontsize=6, ncol=2)
      file = self._save(fig, f"fig_loss_floor_{gi}")
      caption = ("Mean training SCL loss of each epoch beside the OF floor of the run's batch "
                 "composition (Thm 2, same units incl. loss_scale; docs/theory.md#loss-floor, #ref-code-floor). Setup: "
                 + setup_text(group[0], skip=["data.ratio"]) + "; lines: "
                 + ", ".join(_line_label(r, ["data.ratio"]) for r in group) + ".")
      self.figures.append(Figure(f"loss_floor_{gi}", "Training loss against the OF floor",
                                 caption, file, [data]))
      setup = setup_text(group[0], skip=["data.ratio"])
      if group[0].flat.get("model.final_relu", True):
        slack = self.t["floor_slack"]
        conds = [{"lhs": g, "op": ">=",
                  "rhs": Numbers.derived("scale", [f], -slack * abs(f["values"][-1]),
                                         factor=-slack, absolute=True, at="last")}
                 for _, g, f in gaps_min]
        self.verdict("E6", "with a final ReLU the training loss never goes below the OF floor "
                     "(Thm 2 lower bound)", setup, conds, [g for _, g, _ in gaps_min],
                     f"holds if min over logged epochs of (train_loss - optimal_loss) >= "
                     f"-{slack} x floor for every run", "docs/theory.md#batch-bound, #theorem-2")
        thr = self.t["floor_rel"]
        self.verdict("E6", "the training loss approaches the OF floor", setup,
                     [{"lhs": r, "op": "<", "rhs": thr} for _, r in gaps_final],
                     [r for _, r in gaps_final],
                     f"holds if the final (train_loss - optimal_loss) / optimal_loss < {thr} for "
                     "every run", "docs/theory.md#e6")

  # -- angles -------------------------------------------------------------------------------
  def add_angles(self):
    plt = _plt()
    groups = [g for g in group_runs(self.train, ["data.ratio"])
              if any(r.embeddings_file for r in g)]
    for gi, group in enumerate(groups):
      group = [r for r in sorted(group, key=lambda r: _sort_key(r, ["data.ratio"]))
               if r.embeddings_file]
      recs = [self.num.computed(r, "angle_values") for r in group]
      k = _num_classes(group[0]) or 2
      etf_line = 1 - math.acos(-1 / (k - 1)) / math.pi
      fig, ax = plt.subplots(figsize=(6, 0.6 * len(group) + 1.6))
      try:
        ax.boxplot([r["value"] for r in recs], orientation="horizontal", widths=0.6)
      except TypeError:  # matplotlib < 3.10
        ax.boxplot([r["value"] for r in recs], vert=False, widths=0.6)
      ax.set_yticks(range(1, len(group) + 1),
                    [_line_label(r, ["data.ratio"]) for r in group])
      ax.axvline(0.5, color="tab:red", ls="--", label="OF (ours) 0.5")
      ax.axvline(etf_line, color="tab:blue", ls="--", label=f"ETF {etf_line:.4f}")
      values = np.concatenate([np.asarray(r["value"]) for r in recs])
      lo, hi = min(0.45, values.min() - 0.005), max(0.55, values.max() + 0.005)
      ax.set_xlim(lo, hi)
      ax.set_xlabel("1 - θ/π over ordered class pairs")
      ax.legend(fontsize=7)
      file = self._save(fig, f"fig_angles_{gi}")
      extended = "" if (lo, hi) == (0.45, 0.55) else f" (x-range extended to [{lo:.3f}, {hi:.3f}] to show all values)"
      caption = ("Final pairwise angle values 1 - θ/π between train class means (docs/theory.md#angles, "
                 f"without the sign factor), one box per R; OF at 0.5, simplex ETF (K={k}) at "
                 f"{etf_line:.4f}{extended}. Setup: " + setup_text(group[0], skip=["data.ratio"])
                 + ".")
      medians = [Numbers.derived("median", [r], float(np.median(r["value"]))) for r in recs]
      self.figures.append(Figure(f"angles_{gi}", "Angle box-plots", caption, file,
                                 [{"runs": [r.name for r in group], "angle_values": recs,
                                   "medians": medians,
                                   "reference": {"of": 0.5, "etf": etf_line}}]))
      if group[0].flat.get("model.final_relu", True) and group[0].flat.get("loss") == "scl":
        tol = self.t["angle_tol"]
        conds = []
        for m in medians:
          conds += [{"lhs": m, "op": ">", "rhs": 0.5 - tol}, {"lhs": m, "op": "<", "rhs": 0.5 + tol}]
        self.verdict("angles", "with ReLU the pairwise angles sit at the OF value 0.5",
                     setup_text(group[0], skip=["data.ratio"]), conds, medians,
                     f"holds if the median angle value of every run is within {tol} of 0.5",
                     "docs/theory.md#angles, #experiments angle box-plots")

  # -- tables -------------------------------------------------------------------------------
  def add_accuracy_table(self):
    keys = ("ncc_acc_train", "ncc_acc_test", "ncc_maj_test", "ncc_min_test")
    rows = []
    for run in self.train:
      if run.final_line is None:
        continue
      rows.append([run.name, run_label(run), setup_text(run)]
                  + [self.num.final(run, k) for k in keys])
    if not rows:
      return
    self.tables.append({
        "id": "accuracy", "title": "NCC accuracy at the last logged epoch",
        "caption": "Nearest-class-centre accuracy with the train class means (docs/theory.md#ncc): "
                   "balanced train / balanced test / test majority / test minority classes.",
        "columns": ["run", "variant", "setup", "train (balanced)", "test (balanced)",
                    "test majority", "test minority"], "rows": rows})
    # Paired comparisons: ReLU vs no ReLU, binding vs none.
    pairs = []
    tol = self.t["acc_tol"]
    for fields, flag in ((["model.final_relu", "model.extra_linear"], "model.final_relu"),
                         (["binding"], "binding")):
      for group in group_runs(self.train, fields):
        on = [r for r in group if r.flat.get(flag)]
        off = [r for r in group if not r.flat.get(flag)]
        for a in on:
          for b in off:
            if a.flat.get("loss", "scl") != "scl":
              continue
            diffs = []
            for key in keys[1:]:
              ra, rb = self.num.final(a, key), self.num.final(b, key)
              diff = (None if ra is None or rb is None or not _finite(_v(ra)) or
                      not _finite(_v(rb)) else _v(ra) - _v(rb))
              diffs.append(Numbers.derived("difference", [ra, rb], diff))
            name = "ReLU - no ReLU" if flag == "model.final_relu" else "binding - no binding"
            pairs.append([name, a.name, b.name, setup_text(a, skip=fields)] + diffs)
            setup = setup_text(a, skip=fields)
            if flag == "model.final_relu":
              self.verdict("E7", "the final ReLU does not reduce test accuracy", setup,
                           [{"lhs": diffs[0], "op": ">=", "rhs": -tol}], diffs,
                           f"holds if balanced test NCC accuracy with ReLU ({a.name}) minus "
                           f"without ({b.name}) is >= -{tol}", "docs/theory.md#e7", on_means=True)
            else:
              self.verdict("E7", "batch-binding has little effect on test accuracy", setup,
                           [{"lhs": diffs[0], "op": ">=", "rhs": -tol},
                            {"lhs": diffs[0], "op": "<=", "rhs": tol}], diffs,
                           f"holds if |balanced test NCC accuracy with binding ({a.name}) minus "
                           f"without ({b.name})| <= {tol}", "docs/theory.md#e7", on_means=True)
    if pairs:
      self.tables.append({
          "id": "accuracy_pairs", "title": "Accuracy differences of paired runs",
          "caption": "Differences of the last-epoch NCC test accuracies between runs that "
                     "differ only in the named switch.",
          "columns": ["comparison", "run A", "run B", "setup", "Δ test (balanced)",
                      "Δ test majority", "Δ test minority"], "rows": pairs})

  def add_geometry_table(self):
    keys = ("dist_of", "dist_etf", "nc1", "mean_cos", "train_loss", "optimal_loss",
            "test_dist_of", "of_unique_so_far")
    rows = []
    for run in self.train:
      line = run.final_line
      if line is None:
        continue
      rows.append([run.name, run_label(run), self.num.line_value(run, line, "epoch")]
                  + [self.num.final(run, k) for k in keys])
    if rows:
      self.tables.append({
          "id": "final_geometry", "title": "Training runs at the last logged epoch",
          "caption": "Train-set geometry (docs/theory.md#metrics), the mean training loss of the epoch and "
                     "its OF floor, the test-set dist_of, and whether the batches seen so far "
                     "certify the OF as the unique UFM+ minimizer (C1 and C2).",
          "columns": ["run", "variant", "epoch", "dist_of", "dist_etf", "nc1", "mean_cos",
                      "train loss", "OF floor", "test dist_of", "OF unique so far"],
          "rows": rows})

  def add_ufm_table_and_verdicts(self):
    if not self.ufm:
      return
    keys = ("loss", "of_loss", "optimal_loss", "gap", "dist_of", "dist_etf", "nc1",
            "mean_cos", "converged", "steps", "seconds", "fraction_of")
    rows = []
    for run in self.ufm:
      rec = {k: self.num.field(run, k) for k in keys}
      weighted = self.num.computed(run, "dist_etf_weighted")
      rows.append([run.name, setup_text(run)] + [rec[k] for k in keys] + [weighted])
      self._ufm_verdicts(run, rec, weighted)
    self.tables.append({
        "id": "ufm", "title": "UFM / UFM+ solves",
        "caption": "Objective (sum form), the closed-form OF objective of the batching, the gap "
                   "to the Theorem 1/2 minimum (UFM+ SCL only), geometry of the solution, and "
                   "dist_etf after centering by the class-size-weighted mean (docs/theory.md#centering).",
        "columns": ["run", "setup"] + list(keys) + ["dist_etf (weighted centering)"],
        "rows": rows})
    if self.hints.get("tau_steps"):
      self._tau_verdicts()
    self._prediction_verdicts()

  def _certificate(self, run: Run):
    """Whether the batching makes the OF the unique UFM+ minimizer (None when unknown)."""
    for key in ("of_unique", "certificate.of_unique"):
      if run.field_key(key):
        return bool(run.get(key))
    batching = str(run.get("batching", "full"))
    if batching == "full":
      return True
    if run.get("binding", 0):
      return True
    if batching.startswith("fixed:") and not batching[6:].isdigit():
      path = Path(batching[6:])
      if path.is_file():
        from geometry import batching as gb  # pylint: disable=g-import-not-at-top
        schedule = json.loads(path.read_text())
        return gb.batch_certificate(schedule["labels"], schedule["batches"])["of_unique"]
    return None

  def _ufm_verdicts(self, run: Run, rec: dict, weighted: dict | None):
    setup = setup_text(run)
    relu = bool(run.get("relu", True))
    if ufm_loss_kind(run) != "scl":
      return
    sizes = run.get("sizes") or []
    imbalanced = len(set(sizes)) > 1
    if relu:
      # Every seed of a multi-seed solve, else the one solution.
      seeds = run.data.get("seeds") if isinstance(run.data.get("seeds"), list) else None
      prefixes = [f"seeds.{i}." for i in range(len(seeds))] if seeds else [""]
      if rec["gap"] is not None and rec["optimal_loss"] is not None and _v(rec["gap"]) is not None:
        thr = self.t["ufm_gap_rel"]
        conds, nums = [], []
        for prefix in prefixes:
          gap = self.num.json_value(run, prefix + "gap")
          opt = self.num.json_value(run, prefix + "optimal_loss")
          rel = Numbers.derived("ratio", [gap, opt],
                                abs(_v(gap)) / max(abs(_v(opt)), 1e-300), absolute=True)
          conds.append({"lhs": rel, "op": "<", "rhs": thr})
          nums += [gap, rel]
        self.verdict("E3/E4", "UFM+ attains the Theorem 1/2 minimum"
                     + (f" (every one of {len(prefixes)} seeds)" if seeds else ""), setup,
                     conds, nums + [rec["optimal_loss"]],
                     f"holds if |gap| / |optimal_loss| < {thr}"
                     + (" for every seed" if seeds else ""), "docs/theory.md#theorem-1, #theorem-2")
      unique = self._certificate(run)
      if unique is False:
        thr = self.t["ufm_not"]
        dists = [self.num.json_value(run, prefix + "dist_of") for prefix in prefixes]
        worst = Numbers.derived("max", dists, max(_v(d) for d in dists))
        self.verdict("E4", "with C1/C2 violated, minimizers that are not an OF exist", setup,
                     [{"lhs": worst, "op": ">", "rhs": thr}], dists + [worst],
                     f"holds if the largest dist_of over the {len(dists)} solution(s) is > {thr} "
                     "(the batching's C1/C2 certificate fails; that the solutions reach the "
                     "minimum is the verdict above)", "docs/theory.md#theorem-2, #ref-c1, #ref-c2")
      else:
        thr = self.t["ufm_of"]
        self.verdict("E3/E4", "the UFM+ minimizer is an orthogonal frame", setup,
                     [{"lhs": rec["dist_of"], "op": "<", "rhs": thr}], [rec["dist_of"]],
                     f"holds if dist_of < {thr}", "docs/theory.md#theorem-1, #theorem-2, #ref-thm1, #ref-binding")
        if rec["dist_etf"] is not None:
          thr = self.t["ufm_etf"]
          self.verdict("E3", "the centered OF (unweighted mean) is a simplex ETF", setup,
                       [{"lhs": rec["dist_etf"], "op": "<", "rhs": thr}], [rec["dist_etf"]],
                       f"holds if dist_etf < {thr}", "docs/theory.md#geometries, D.1.2")
        if imbalanced and weighted is not None:
          thr = self.t["ufm_not"]
          self.verdict("E3", "under imbalance, centering the OF by the class-size-weighted mean "
                       "does not give an ETF", setup,
                       [{"lhs": weighted, "op": ">", "rhs": thr}], [weighted],
                       f"holds if the weighted-centering dist_etf > {thr}", "docs/theory.md#centering, #ref-metrics")
    else:
      if not imbalanced:
        thr = self.t["ufm_etf"]
        self.verdict("E3", "balanced UFM (no ReLU) gives a simplex ETF", setup,
                     [{"lhs": rec["dist_etf"], "op": "<", "rhs": thr}], [rec["dist_etf"]],
                     f"holds if dist_etf < {thr}", "docs/theory.md#ufm-no-relu, #ref-ufm-balanced")
      else:
        thr = self.t["ufm_not"]
        conds = [{"lhs": rec["dist_of"], "op": ">", "rhs": thr},
                 {"lhs": rec["dist_etf"], "op": ">", "rhs": thr / 2}]
        self.verdict("E3", "imbalanced UFM (no ReLU) breaks the symmetry: neither an OF nor an "
                     "ETF", setup, conds, [rec["dist_of"], rec["dist_etf"]],
                     f"holds if dist_of > {thr} and dist_etf > {thr / 2}", "docs/theory.md#ufm-no-relu, #ref-ufm-imbalanced")
        if rec["of_loss"] is not None and _v(rec["of_loss"]) is not None:
          self.verdict("E3", "imbalanced UFM (no ReLU) reaches a loss below the OF value", setup,
                       [{"lhs": rec["loss"], "op": "<", "rhs": rec["of_loss"]}],
                       [rec["loss"], rec["of_loss"]], "holds if loss < of_loss", "docs/theory.md#ref-ufm-imbalanced")

  def _tau_verdicts(self):
    """UFM+ solves that differ only in tau: the OF for every tau, small tau is slower."""
    groups: dict[str, list[Run]] = {}
    for run in self.ufm:
      if not run.get("relu", True) or ufm_loss_kind(run) != "scl":
        continue
      key = json.dumps({k: run.get(k) for k in ("sizes", "dim", "batching", "binding", "seed",
                                                 "dtype")}, sort_keys=True, default=str)
      groups.setdefault(key, []).append(run)
    for group in groups.values():
      taus = sorted({run.get("tau") for run in group if run.get("tau") is not None})
      if len(taus) < 2:
        continue
      group = sorted(group, key=lambda r: r.get("tau"))
      steps = [self.num.field(r, "steps") for r in group]
      if any(s is None for s in steps):
        continue
      conds = [{"lhs": steps[i], "op": ">=", "rhs": steps[i + 1]} for i in range(len(group) - 1)]
      self.verdict("E6", "UFM+: a smaller τ needs more solver steps", setup_text(group[0],
                   skip=["tau"]) + "; τ = " + ", ".join(_fmt(t) for t in taus), conds, steps,
                   "holds if the step count does not increase with τ (runs sorted by τ)",
                   "docs/theory.md#ufm (negative-pair gradients scale like e^{-1/τ})")

  def _prediction_verdicts(self):
    """Which UFM solve predicts a trained network's Gram matrix (same K)."""
    plus = [r for r in self.ufm if r.get("relu", True) and ufm_loss_kind(r) == "scl"]
    minus = [r for r in self.ufm if not r.get("relu", True) and ufm_loss_kind(r) == "scl"]
    if not plus or not minus:
      return
    for run in self.train:
      if run.flat.get("loss", "scl") != "scl" or not run.flat.get("model.final_relu", True):
        continue
      g_run = self.gram_record(run)
      if g_run is None:
        continue
      k = len(g_run["value"])
      a = [r for r in plus if (gr := self.gram_record(r)) and len(gr["value"]) == k]
      b = [r for r in minus if (gr := self.gram_record(r)) and len(gr["value"]) == k]
      if not a or not b:
        continue
      recs = []
      for ufm_run in (a[0], b[0]):
        g_ufm = self.gram_record(ufm_run)
        recs.append(Numbers.derived("gram_distance", [g_run, g_ufm],
                                    gram_distance(g_run["value"], g_ufm["value"])))
      self.verdict("E2/E3", "the UFM+ (not the UFM) predicts the Gram matrix of the trained "
                   "ReLU network", f"{setup_text(run)}; UFM+: {a[0].name}; UFM: {b[0].name}",
                   [{"lhs": recs[0], "op": "<", "rhs": recs[1]}], recs,
                   "holds if ||G/||G||_F - G_UFM+/||G_UFM+||_F||_F < the same distance to the "
                   "UFM solve", "docs/theory.md#centering, D.1.3")

  # -- reference numbers (docs/theory.md#reference-values) ------------------------------------------------------
  def add_references(self):
    """Verdicts for the experiment's reference values: hints["references"] is a list of
    {"run", "key", "value", "op": "approx" | "<" | ">", "tol", "claim", "source"}."""
    by_name = {r.name: r for r in self.runs}
    for ref in self.hints.get("references", []):
      run = by_name.get(ref["run"])
      if run is None:
        continue
      if ref["key"].startswith("computed:"):
        rec = self.num.computed(run, ref["key"].split(":", 1)[1])
      elif run.kind == "ufm":
        rec = self.num.json_value(run, ref["key"]) if _has_path(run.data, ref["key"]) else None
      else:
        rec = self.num.final(run, ref["key"])
      if rec is None:
        continue
      op = ref.get("op", "approx")
      claim = ref.get("claim") or f"{ref['key']} of {run.name} matches the reference value"
      if op == "approx":
        tol = ref.get("tol", 1e-6)
        diff = Numbers.derived("abs_difference", [rec], abs(_v(rec) - ref["value"]),
                               reference=ref["value"])
        self.verdict("references", claim, setup_text(run),
                     [{"lhs": diff, "op": "<=", "rhs": tol}], [rec, diff],
                     f"holds if |{ref['key']} - {ref['value']}| <= {tol}",
                     ref.get("source", ""))
      else:
        self.verdict("references", claim, setup_text(run),
                     [{"lhs": rec, "op": op, "rhs": ref["value"]}], [rec],
                     f"holds if {ref['key']} {op} {ref['value']}", ref.get("source", ""))

  # -- assembling ---------------------------------------------------------------------------
  def build(self):
    self.add_references()
    self.add_heatmaps()
    self.add_metric_curves()
    self.add_geometry_vs_ratio()
    self.add_comparisons()
    self.add_loss_floor()
    self.add_angles()
    self.add_ufm_table_and_verdicts()
    self.add_geometry_table()
    self.add_accuracy_table()
    report_batching.add_batching(self)
    return self


def cosines_from_gram(gram) -> np.ndarray:
  """G_ij / sqrt(G_ii G_jj)."""
  g = np.asarray(gram, np.float64)
  d = np.sqrt(np.maximum(np.diag(g), np.finfo(np.float64).tiny))
  return g / np.outer(d, d)


def gram_distance(a, b) -> float:
  """|| A/||A||_F - B/||B||_F ||_F (scale-free distance between Gram matrices)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))


def compare(lhs, op: str, rhs, missing: str | None = None) -> bool | None:
  """lhs op rhs, or None (undecidable) when a number is missing (None or NaN).

  With ``missing="infinity"`` a missing number means "never" (a first epoch that was not
  reached) and counts as +infinity; two missing numbers stay undecidable.
  """
  def bad(x):
    return x is None or (isinstance(x, float) and math.isnan(x))
  if op == "==":
    return None if bad(lhs) else lhs == rhs
  if bad(lhs) and bad(rhs):
    return None
  if bad(lhs) or bad(rhs):
    if missing != "infinity":
      return None
    lhs = math.inf if bad(lhs) else lhs
    rhs = math.inf if bad(rhs) else rhs
  return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}[op]


# ----------------------------------------------------------------------------------------------
# Output.

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}table{border-collapse:collapse;font-size:.85em;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f4f4f4}
.holds{background:#d9f2d9}.does-not-hold{background:#f9d6d5}.inconclusive{background:#f3ecc8}
code{font-size:.9em}.small{font-size:.85em;color:#555}
"""


def _cell(value) -> str:
  if isinstance(value, dict) and "value" in value:
    if "min" in value and "max" in value and value["min"] != value["max"] \
        and _finite(value["value"]):
      # A mean over seeds, with its spread.
      return f"{_cell(value['value'])} [{_cell(value['min'])}, {_cell(value['max'])}]"
    value = value["value"]
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  if isinstance(value, list):
    return html.escape(_fmt(value))
  if _finite(value):
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
  return html.escape(str(value))


def _describe(record: dict, depth: int = 0) -> str:
  """Where a number comes from, in words (sources of derived numbers included)."""
  if "derived" in record:
    if "source" in record:
      return f"{record['derived']} {record.get('threshold', '')} of {record['source']} [{record['key']}]"
    inputs = record.get("from", [])
    if depth >= 2 or len(inputs) > 3:
      return f"{record['derived']} of {len(inputs)} numbers"
    return (f"{record['derived']} of (" + "; ".join(_describe(r, depth + 1) for r in inputs
                                                   if isinstance(r, dict)) + ")")
  where = record.get("source", "")
  if "line" in record:
    where += f" line {record['line']}" + (f" (epoch {record['epoch']})" if "epoch" in record
                                          else "")
  if "key" in record:
    where += f" [{record['key']}]"
  if "computed" in record:
    where += f" ({record['computed']})"
  return where


def _number_text(record: dict) -> str:
  value = record.get("value", record.get("values"))
  shown = "never" if value is None else (_cell(value) if not isinstance(value, list)
                                         else f"{len(value)} values")
  return f"{shown} <span class='small'>({html.escape(_describe(record))})</span>"


def _seed_note(verdict: dict) -> str:
  """The seed count of a verdict over seeds, in words."""
  if verdict.get("decided_on") == "seed means":
    return f"on the means over {verdict['seeds_total']} seeds"
  note = verdict["seed_count"]
  for word, key in (("fails", "seeds_failing"), ("inconclusive", "seeds_inconclusive")):
    if verdict.get(key):
      note += f"; {word} on {seeds_text(list(verdict[key]))}"
  return note


def write_html(builder: Builder, title: str, description: str, out_dir: Path) -> Path:
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
  if description:
    parts.append(f"<p>{html.escape(description)}</p>")
  counts = {}
  for v in builder.verdicts:
    counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
  def seeds_of(run):  # the seeds of a setting run over several seeds
    seed = run.flat.get("seed")
    return f"; {seeds_text(seed)}" if isinstance(seed, list) else ""
  parts.append("<p>Runs: " + ", ".join(f"<code>{html.escape(r.name)}</code> ({run_label(r)}"
                                       f"{seeds_of(r)})" for r in builder.runs)
               + f". Verdicts: {counts.get('holds', 0)} hold, "
               f"{counts.get('does not hold', 0)} do not hold, "
               f"{counts.get('inconclusive', 0)} inconclusive.</p>")
  if builder.verdicts:
    parts.append("<h2>Verdicts</h2><table><tr><th>section</th><th>claim</th><th>verdict</th>"
                 "<th>numbers</th><th>rule</th><th>setup</th></tr>")
    for v in builder.verdicts:
      css = v["verdict"].replace(" ", "-")
      numbers = "<br>".join(_number_text(n) for n in v["numbers"] if n is not None)
      parts.append(f"<tr class='{css}'><td>{html.escape(v['section'])}</td>"
                   f"<td>{html.escape(v['claim'])}<br><span class='small'>"
                   f"{html.escape(v['reference'])}</span></td><td><b>{v['verdict']}</b>"
                   + (f"<br><span class='small'>{html.escape(_seed_note(v))}</span>"
                      if "seeds_total" in v else "") + "</td>"
                   f"<td>{numbers}</td><td>{html.escape(v['rule'])}</td>"
                   f"<td class='small'>{html.escape(v['setup'])}</td></tr>")
    parts.append("</table>")
  if builder.figures:
    parts.append("<h2>Figures</h2>")
  for i, fig in enumerate(builder.figures, 1):
    encoded = base64.b64encode((out_dir / fig.file).read_bytes()).decode("ascii")
    parts.append(f"<figure id='{fig.id}'><h3>Figure {i}. {html.escape(fig.title)}</h3>"
                 f"<img src='data:image/png;base64,{encoded}' data-file='{fig.file}' "
                 f"alt='{html.escape(fig.title)}'><figcaption>{html.escape(fig.caption)} "
                 f"(<a href='{fig.file}'>{fig.file}</a>)</figcaption></figure>")
  for table in builder.tables:
    parts.append(f"<h2>{html.escape(table['title'])}</h2><p class='small'>"
                 f"{html.escape(table['caption'])}</p><table><tr>"
                 + "".join(f"<th>{html.escape(c)}</th>" for c in table["columns"]) + "</tr>")
    for row in table["rows"]:
      parts.append("<tr>" + "".join(f"<td>{_cell(c) if c is not None else '-'}</td>"
                                    for c in row) + "</tr>")
    parts.append("</table>")
  parts.append("<h2>Thresholds</h2><p class='small'>" + ", ".join(
      f"{k} = {v}" for k, v in builder.t.items()) + ". Every number above is listed with its "
      "source in report.json.</p></body></html>")
  path = out_dir / "index.html"
  path.write_text("\n".join(parts))
  return path


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
  return obj


def build_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 title: str = "Theory vs practice: SCL geometry", description: str = "",
                 thresholds: dict | None = None, hints: dict | None = None) -> Path:
  """Builds OUT/index.html, OUT/report.json and the PNG figures; returns the HTML path."""
  out_dir = Path(out_dir)
  runs = discover(run_dirs)
  out_dir.mkdir(parents=True, exist_ok=True)
  for old in out_dir.glob("fig_*.png"):
    old.unlink()
  from experiments import seeds  # pylint: disable=g-import-not-at-top
  settings = seeds.group_settings(runs)
  if seeds.has_seeds(settings):
    builder = seeds.build(Builder, settings, out_dir, thresholds, hints)
  else:
    builder = Builder(runs, out_dir, thresholds, hints).build()
  html_path = write_html(builder, title, description, out_dir)
  report = {
      "title": title, "description": description, "thresholds": builder.t,
      "runs": [{"name": r.name, "kind": r.kind, "dir": builder.num.rel(r.path),
                "label": run_label(r), "setup_text": setup_text(r),
                "setup": (r.flat if r.kind == "train" else
                          {"loss": ufm_loss_kind(r), **{k: r.get(k) for k in (
                              "sizes", "dim", "tau", "relu", "batching", "binding", "seed",
                              "dtype")}})}
               for r in runs],
      "figures": [{"id": f.id, "title": f.title, "file": f.file, "caption": f.caption,
                   "data": f.data} for f in builder.figures],
      "tables": builder.tables,
      "verdicts": builder.verdicts,
      "settings": seeds.describe(settings, builder.num),
  }
  (out_dir / "report.json").write_text(json.dumps(_jsonable(report), indent=1))
  return html_path


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.report",
      description="Build the theory-vs-practice report (HTML + PNG + report.json) from UFM "
                  "result folders and training workdirs (or folders holding them).")
  parser.add_argument("runs", nargs="+", help="run folders (result.json or metrics.jsonl + "
                      "config.json) or folders holding them")
  parser.add_argument("--out", default="runs/report", help="output folder (default runs/report)")
  parser.add_argument("--version", action="version", version=f"scl-report {__version__}")
  parser.add_argument("--title", default="Theory vs practice: SCL geometry")
  parser.add_argument("--experiment", default=None,
                      help="experiment name: use its title, description and report hints")
  parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"))
  args = parser.parse_args(argv)
  title, description, thresholds, hints = args.title, "", None, None
  try:
    if args.experiment:
      from experiments import sweep  # pylint: disable=g-import-not-at-top
      exp = sweep.load_experiment(args.experiment, args.preset)
      title = exp.get("title", title)
      description = exp.get("description", "")
      hints = exp.get("report", {})
      thresholds = hints.get("thresholds")
    path = build_report(args.runs, args.out, title=title, description=description,
                        thresholds=thresholds, hints=hints)
  except (ReportError, OSError, json.JSONDecodeError, ValueError, KeyError) as e:
    print(f"report: error: {e}", file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
