"""`scl-report --upgrade DIR ...`: a schema-2 run.json for a run folder written before it.

Such a folder has the files the run's facts follow from: a solve's result.json (its problem
definition), or a training run's config.json, with the first run.json format beside it where
the trainer wrote one (its class sizes and data source). The record is built by the same
functions the solver and the trainer write it with (`ufm.cli.run_record` and
`deepnet.run_record.record_facts`, whose model facts are `deepnet.models.model_facts`), and
it keeps the run's own provenance; ``extra.upgraded_from_schema`` says it was written
afterwards (0: the folder had no run.json). Nothing else in the folder changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from experiments.report.runs import ReportError, is_run_folder
from geometry import runfiles

# The keys of the first run.json format that schema 2 holds elsewhere (or not at all).
_MOVED = ("kind", "setup", "config", "problem", "class_sizes", "num_classes", "embedding_dim",
          "data_source", "provenance")


def upgrade_paths(paths: Sequence[str]) -> list[str]:
  """Upgrades each run folder of ``paths`` (run folders, or folders holding them one level
  down) that lacks a schema-2 run.json; one line per folder, saying what was done."""
  lines = []
  for raw in paths:
    path = Path(raw)
    if not path.is_dir():
      raise ReportError(f"{path}: not a folder")
    folders = [path] if is_run_folder(path) else [
        p for p in sorted(path.iterdir()) if p.is_dir() and is_run_folder(p)]
    if not folders:
      raise ReportError(f"{path}: neither a run folder nor a folder holding run folders")
    lines.extend(upgrade(folder) for folder in folders)
  return lines


def upgrade(folder: Path) -> str:
  """Writes ``folder/run.json`` as a schema-2 record unless it is one already."""
  try:
    runfiles.read_run(folder)
    return f"{folder}: run.json is schema {runfiles.RUN_SCHEMA} already; left as it is"
  except runfiles.RunRecordError:
    pass
  old = _old_record(folder)
  try:
    if (folder / "result.json").is_file():
      from ufm import cli as ufm_cli  # pylint: disable=g-import-not-at-top
      result = _renamed_problem_keys(runfiles.read_json(folder / "result.json"))
      record = ufm_cli.run_record(result, provenance_of=result.get("provenance") or {})
    else:
      record = _train_record(folder, old)
  except (KeyError, AttributeError) as e:
    raise ReportError(f"{folder}: cannot tell the run's facts from its files (no {e})") from None
  except (ValueError, TypeError) as e:   # a damaged file, a config the model refuses
    raise ReportError(f"{folder}: cannot tell the run's facts from its files ({e})") from None
  record["extra"]["upgraded_from_schema"] = old.get("schema", 1) if old else 0
  runfiles.write_json(folder / runfiles.RUN_FILE, record, indent=2, sort_keys=True)
  return f"{folder}: wrote a schema-{runfiles.RUN_SCHEMA} run.json"


# result.json's problem keys before the one vocabulary (docs/contracts.md#names).
_OLD_PROBLEM_KEYS = {"tau": "temperature", "relu": "final_relu"}


def _renamed_problem_keys(result: dict) -> dict:
  """``result`` with an older solve's ``tau`` / ``relu`` problem keys under today's names."""
  problem = {_OLD_PROBLEM_KEYS.get(k, k): v for k, v in result.get("problem", {}).items()}
  return {**{_OLD_PROBLEM_KEYS.get(k, k): v for k, v in result.items()}, "problem": problem}


def _old_record(folder: Path) -> dict:
  """The folder's run.json of the first format, {} when there is none or it is unreadable."""
  try:
    old = runfiles.read_json(folder / runfiles.RUN_FILE)
  except ValueError:
    return {}
  return old if isinstance(old, dict) else {}


def _train_record(folder: Path, old: dict) -> dict:
  import ml_collections  # pylint: disable=g-import-not-at-top
  from deepnet import run_record  # pylint: disable=g-import-not-at-top
  config_dict = runfiles.read_json(folder / "config.json")
  facts = run_record.record_facts(ml_collections.ConfigDict(config_dict))
  sizes = old.get("class_sizes") or _sizes_from_embeddings(folder)
  return runfiles.run_record(
      "train", facts.pop("setup"),
      data={"name": config_dict["data"]["name"], "source": old.get("data_source")},
      class_sizes=sizes, **facts,
      extra={"config": config_dict, **{k: v for k, v in old.items() if k not in _MOVED}},
      provenance_of=old.get("provenance") or {})


def _sizes_from_embeddings(folder: Path) -> list[int]:
  """Class sizes from the training labels of embeddings_final.npz (a finished run)."""
  path = folder / "embeddings_final.npz"
  if not path.is_file():
    raise ReportError(f"{folder}: no run.json and no embeddings_final.npz, so its class "
                      "sizes are unknown; re-run it")
  with np.load(path) as npz:
    return np.bincount(np.asarray(npz["train_labels"]).astype(np.int64)).tolist()
