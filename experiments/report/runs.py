"""Run folders: finding them and reading them, through one reader.

A run folder is recognised by its files (docs/contracts.md):

- ``result.json`` (+ ``embeddings.npy``, ``labels.npy``): a ``ufm solve`` result
  (docs/contracts.md#result-json: the problem definition at the top level, its loss kind
  ``loss_fn``);
- ``metrics.jsonl`` + ``run.json`` (+ ``embeddings_final.npz`` with ``train_embeddings``
  and ``train_labels``): a training workdir (docs/contracts.md#metrics-jsonl);
- both hold ``run.json``, the run record (docs/contracts.md#run-json,
  ``geometry.runfiles.read_run``): what the run was (its setup line, class sizes, the model's
  own facts, loss, temperature, batching, planned and reached epochs), in the same keys for
  both kinds, and the run's whole definition (`SETTINGS`: a training run's config, a solve's
  problem). The report takes every fact and every field that names a run (grouping and
  pairing runs) from it: it never opens a training run's config.json, which only
  ``scl-report --upgrade`` reads, to write a record for a folder from before run records;
- any other folder is searched one level down for such runs (so a sweep folder works).

`load_run` reads each of these files once, by its contract key names. A folder without a
schema-2 run.json stops the report with one line saying how to get one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deepnet import workdir as workdir_lib
from geometry import runfiles

# Config fields that do not change what a run computes (those a resume ignores) or that
# identify it anyway; they are ignored when runs are grouped.
IGNORED_FIELDS = workdir_lib.RESUME_IGNORED_KEYS + ("workdir", "log_epochs", "seed")


class ReportError(Exception):
  """Bad report input (reported on one line by the command)."""


def get_path(obj, key: str):
  """obj[k1][k2]... for key "k1.k2" (integer parts index lists)."""
  for part in key.split("."):
    if isinstance(obj, list):
      obj = obj[int(part)]
    elif isinstance(obj, dict) and part in obj:
      obj = obj[part]
    else:
      raise KeyError(key)
  return obj


def has_path(obj, key: str) -> bool:
  try:
    get_path(obj, key)
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


def finite(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def usable(value) -> bool:
  """A logged value worth plotting or comparing: a finite number, a bool or a list."""
  return isinstance(value, (bool, list)) or finite(value)


# Where a run record keeps the run's whole definition: the two kinds truly differ here (a
# training config and a UFM problem have different fields), and `Run.get` reads either.
SETTINGS = {"train": "extra.config", "ufm": "extra.problem"}


def balanced(flat: dict) -> bool:
  return flat.get("data.imbalance", "none") == "none" or flat.get("data.ratio", 1) == 1


@dataclass
class Run:
  """One run folder: a UFM result or a training workdir."""
  name: str
  path: Path
  kind: str                                   # "ufm" | "train"
  data: dict = field(default_factory=dict)    # result.json (ufm; a training run: {})
  metrics: list = field(default_factory=list)  # metrics.jsonl lines (train)
  record: dict = field(default_factory=dict)  # run.json (geometry.runfiles.read_run)
  warnings: list = field(default_factory=list)  # damage found while reading, one line each
  _emb_cache: Any = None

  # -- facts of run.json ---------------------------------------------------------------------
  @property
  def relu(self) -> bool:
    """Whether the normalised embedding is a ReLU's output (docs/theory.md#choice-no-relu)."""
    return self.record["model"]["relu_before_embedding"]

  @property
  def loss(self) -> str:
    """"scl" or "ce"."""
    return self.record["loss"]["name"]

  @property
  def temperature(self):
    return self.record["loss"]["temperature"]

  @property
  def batching(self) -> str:
    return self.record["batching"]["scheme"]

  @property
  def binding(self) -> int:
    return self.record["batching"]["binding"]

  @property
  def class_sizes(self) -> list:
    return self.record["class_sizes"]

  @property
  def setup(self) -> str:
    """run.json's one-line name of the run (shown beside its label in the report)."""
    return self.record["setup"]

  # -- setup: the run's definition, from run.json (`SETTINGS`) ------------------------------
  @property
  def settings_key(self) -> str:
    return SETTINGS[self.kind]

  @property
  def settings(self) -> dict:
    """The run's whole definition as its run.json records it: a training run's config, a
    solve's problem (sizes, dim, temperature, ..., the base seed)."""
    value = get_path(self.record, self.settings_key) if self.record else {}
    return value if isinstance(value, dict) else {}

  @property
  def flat(self) -> dict:
    return flatten(self.settings)

  def get(self, name: str, default=None):
    """A field of the run's definition (dotted: "data.ratio"), from run.json."""
    return get_path(self.settings, name) if has_path(self.settings, name) else default

  @property
  def record_file(self) -> Path:
    return self.path / runfiles.RUN_FILE

  # -- results of a solve (result.json); a training run's are its metrics lines -------------
  def field_key(self, name: str) -> str | None:
    """Key path of a result field of a solve (result.json, dotted); None when absent (and for
    a training run, whose results are its metrics lines)."""
    return name if has_path(self.data, name) else None

  @property
  def data_file(self) -> Path:
    # The results file: the kinds truly differ (one JSON result, or one line per epoch).
    return self.path / ("result.json" if self.kind == "ufm" else "metrics.jsonl")

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
      if _is_epoch(line.get("epoch")) and has_path(line, key) and usable(get_path(line, key)):
        by_epoch[line["epoch"]] = i
    return [by_epoch[e] for e in sorted(by_epoch)]

  @property
  def final_line(self) -> int | None:
    """The line of the last logged epoch (the last such line when an epoch was re-logged),
    whatever its values: a NaN or null there is the run's final value, never replaced by an
    earlier epoch's."""
    best = None
    for i, line in enumerate(self.metrics):
      epoch = line.get("epoch")
      if _is_epoch(epoch) and (best is None or epoch >= self.metrics[best]["epoch"]):
        best = i
    return best

  @property
  def last_epoch(self) -> int | None:
    line = self.final_line
    return None if line is None else self.metrics[line]["epoch"]


def _is_epoch(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def unfinished(run: Run) -> str | None:
  """Why a training run's last logged epoch is not its final one, or None when it is: no
  logged epoch, no integer planned epochs in its run.json (``epochs.planned``, the config's
  num_epochs), or last logged epoch < num_epochs."""
  if run.kind != "train":
    # A solve logs no epochs: result.json is written once, at its end (`converged` says how).
    return None
  total = run.record["epochs"]["planned"]
  last = run.last_epoch
  if last is None:
    return f"run {run.name}: no logged epoch"
  if not _is_epoch(total):
    return f"run {run.name}: run.json has no planned epochs, so its last epoch is unknown"
  if last < total:
    return f"run {run.name} is unfinished: last logged epoch {last} < num_epochs {total}"
  return None


def load_embeddings(path: Path):
  """Embeddings and labels from a UFM folder (embeddings.npy + labels.npy) or a training
  workdir (embeddings_final.npz: train_embeddings, train_labels)."""
  if path.suffix == ".npy":
    emb = np.load(path)
    labels = np.load(path.parent / "labels.npy")
  else:
    with np.load(path) as npz:
      missing = {"train_embeddings", "train_labels"} - set(npz.files)
      if missing:
        raise ReportError(f"{path}: no {', '.join(sorted(missing))} array (found "
                          f"{sorted(npz.files)})")
      emb, labels = npz["train_embeddings"], npz["train_labels"]
  return np.asarray(emb, np.float64), np.asarray(labels).astype(np.int64)


def _read_jsonl(path: Path) -> tuple[list, list[str]]:
  """(lines, warnings): each line of a metrics.jsonl (``runfiles.read_jsonl``) as a dict; a
  line that is not JSON (a run killed mid-write cuts its last line), not a JSON object or
  without an integer epoch becomes {} (so the line numbers of the provenance records stay
  those of the file) and one warning naming the file and line (1-based)."""
  lines, warnings = [], []
  for number, line, why in runfiles.read_jsonl(path):
    if why is None and "epoch" in line and not _is_epoch(line["epoch"]):
      why = f"epoch {line['epoch']!r} is not an integer"
    if why is not None:
      warnings.append(f"{path}: line {number} {why}; left out")
      line = {}
    lines.append(line)
  return lines, warnings


# The config fields that name a training run in the report (its seed and imbalance), read
# from run.json's ``extra.config``; a record without one of them is never read as defaults.
REPORT_FIELDS = ("seed", "data.imbalance", "data.ratio")


def _is_ufm(path: Path) -> bool:
  return (path / "result.json").is_file()


def _is_train(path: Path) -> bool:
  # config.json still marks a training folder from before run records (its run.json is then
  # missing, and the report says how to write one), but is never read.
  return (path / "metrics.jsonl").is_file() and any(
      (path / name).is_file() for name in (runfiles.RUN_FILE, "config.json"))


def is_run_folder(path: Path) -> bool:
  return _is_ufm(path) or _is_train(path)


def discover(paths: Sequence[str | os.PathLike]) -> list[Run]:
  """The runs in `paths` (run folders, or folders holding run folders one level down); each
  warning of `read_runs` is printed on stderr."""
  runs, warnings = read_runs(paths)
  for line in warnings:
    print(f"report: warning: {line}", file=sys.stderr)
  return runs


def read_runs(paths: Sequence[str | os.PathLike]) -> tuple[list[Run], list[str]]:
  """(runs, warnings) of `paths`: a run folder that cannot be read is left out with one
  warning naming the file; damage inside a run it keeps (a metrics line left out, an
  unreadable run.json) is one warning each, also in that run's ``warnings``."""
  folders = []
  for raw in paths:
    path = Path(raw)
    if not path.is_dir():
      raise ReportError(f"{path}: not a folder")
    if is_run_folder(path):
      folders.append(path)
      continue
    found = [p for p in sorted(path.iterdir()) if p.is_dir() and is_run_folder(p)]
    if not found:
      raise ReportError(f"{path}: neither a UFM result (result.json) nor a training workdir "
                        "(metrics.jsonl + run.json), and holds none")
    folders.extend(found)
  runs, names, broken, warnings = [], set(), [], []
  for path in folders:
    name = path.name if path.name not in names else f"{path.parent.name}/{path.name}"
    names.add(name)
    try:
      run = load_run(name, path)
    except ValueError as e:
      # A run folder broken by a fault (a kill mid-write, a full disk) costs its own run only.
      broken.append(str(e))
      warnings.append(f"{name} left out: {e}")
      continue
    runs.append(run)
    warnings.extend(run.warnings)
  if not runs:
    raise ReportError(f"no readable run: {'; '.join(broken)}")
  return runs, warnings


def load_run(name: str, path: Path) -> Run:
  """One run folder as a `Run`; a file that cannot be read raises `ValueError` naming it, a
  folder from before schema-2 run records `ReportError` saying how to get one (damage to the
  run's own files is named first). A training run's config.json is never opened: its fields
  are run.json's ``extra.config``."""
  if _is_ufm(path):
    run = Run(name, path, "ufm", runfiles.read_json(path / "result.json"))
    if not isinstance(run.data, dict):
      raise ValueError(f"{run.data_file}: not a JSON object")
  else:
    metrics_path = path / "metrics.jsonl"
    try:
      metrics, warnings = _read_jsonl(metrics_path)
    except OSError as e:
      raise ValueError(f"{metrics_path}: cannot be read ({e})") from None
    run = Run(name, path, "train", {}, metrics, warnings=warnings)
    # No logged epoch is a run that has just started, unless it has finished (the trainer
    # writes embeddings_final.npz last): then its metrics were lost.
    if not any(metrics) and run.embeddings_file is not None:
      raise ValueError(f"{metrics_path}: no complete line, although the run finished "
                       f"({run.embeddings_file.name} exists)")
  try:
    record = runfiles.read_run(path)
  except runfiles.OldRunRecord as e:
    raise ReportError(str(e)) from None
  if record["kind"] != run.kind:
    raise ValueError(f"{path / runfiles.RUN_FILE}: kind {record['kind']!r}, but the folder "
                     f"holds a {run.kind} run")
  run.record = record
  if not has_path(record, run.settings_key) or not isinstance(
      get_path(record, run.settings_key), dict):
    raise ValueError(f"{run.record_file}: no {run.settings_key} (the run's definition)")
  if run.kind == "train":  # a solve's fields are its problem's, always complete
    lacking = [f for f in REPORT_FIELDS if not has_path(run.settings, f)]
    if lacking:
      raise ValueError(f"{run.record_file}: no {', '.join(f'extra.config.{f}' for f in lacking)}"
                       " (a run is never judged on default settings)")
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
# Grouping runs.


def _group_key(run: Run, vary: Sequence[str]) -> str:
  flat = {k: v for k, v in run.flat.items()
          if k not in vary and not k.startswith(IGNORED_FIELDS)}
  return json.dumps(flat, sort_keys=True, default=str)


def group_runs(runs: Sequence[Run], vary: Sequence[str]) -> list[list[Run]]:
  """Training runs grouped so that members differ only in the fields `vary` (in run order)."""
  groups: dict[str, list[Run]] = {}
  for run in runs:
    groups.setdefault(_group_key(run, vary), []).append(run)
  return list(groups.values())


def sort_key(run: Run, fields: Sequence[str]):
  return tuple(str(run.flat.get(f)) if not finite(run.flat.get(f)) else f"{run.flat[f]:020.6f}"
               for f in fields)


def ratio_sorted(group: Sequence[Run]) -> list[Run]:
  """A group of runs in increasing imbalance ratio."""
  return sorted(group, key=lambda r: sort_key(r, ["data.ratio"]))


def study_groups(runs: Sequence[Run], fields: Sequence[str]) -> list:
  """The groups of training runs that differ in `fields` only, with at least two variants
  and a logged dist_of, each sorted by `fields`: [(index, group)] (the index counts every
  group, so a figure keeps its number whichever groups qualify)."""
  out = []
  for gi, group in enumerate(group_runs(runs, list(fields))):
    variants = {tuple(str(r.flat.get(f)) for f in fields) for r in group}
    if len(variants) < 2 or not any(r.metric_lines("dist_of") for r in group):
      continue
    out.append((gi, sorted(group, key=lambda r: sort_key(r, fields))))
  return out


def angle_groups(runs: Sequence[Run]) -> list:
  """Groups of training runs that differ only in R and have saved embeddings, each its runs
  with embeddings in increasing R: [(index, group)]."""
  groups = [g for g in group_runs(runs, ["data.ratio"]) if any(r.embeddings_file for r in g)]
  return [(gi, [r for r in ratio_sorted(g) if r.embeddings_file])
          for gi, g in enumerate(groups)]


def num_classes(run: Run) -> int:
  return run.record["num_classes"]
