"""Whether a finished run folder holds what a sweep's run would compute.

The sweep runner skips a run whose folder has its completion marker. Its own record
(`sweep.json`) says which command it ran there, but a folder can have been made by hand, by
another sweep or before the record was lost, so the folder's own description decides:

* a `ufm solve` folder: the `problem` of its `result.json` (sizes, dim, tau, relu, loss,
  batching, binding, seed, dtype, ...) must equal the problem the run's arguments define, and
  its number of seeds and step budget must be the ones asked for;
* a training workdir: its `config.json` must equal the run's config file with the run's
  overrides applied, up to the keys that do not change a run's numbers (where the data lives,
  checkpoint frequency, ...: the trainer's own `RESUME_IGNORED_KEYS`).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
from pathlib import Path

from deepnet import workdir as workdir_lib
from geometry import runfiles

REPO = Path(__file__).resolve().parent.parent


def mismatch(run: dict, run_dir: Path, overrides: dict | None = None) -> str | None:
  """Why the finished folder `run_dir` is not `run`'s result (None when it is)."""
  try:
    if run["kind"] == "ufm":
      return _ufm_mismatch(run["args"], Path(run_dir))
    return _train_mismatch(run, Path(run_dir), overrides)
  except ValueError as e:
    return str(e)


@contextlib.contextmanager
def _in_repo():
  """Runs resolve relative paths (schedule files, configs) from the repository root."""
  before = os.getcwd()
  os.chdir(REPO)
  try:
    yield
  finally:
    os.chdir(before)


def _ufm_mismatch(args, run_dir: Path) -> str | None:
  from ufm import cli  # pylint: disable=g-import-not-at-top
  from ufm.problem import ProblemError  # pylint: disable=g-import-not-at-top
  held = runfiles.read_json(run_dir / "result.json")
  try:
    parsed = cli._build_parser().parse_args(["solve", *args])  # pylint: disable=protected-access
    with _in_repo():
      wanted = runfiles.to_json(cli._problem_from_args(parsed).describe())  # pylint: disable=protected-access
  except (ProblemError, SystemExit) as e:
    raise ValueError(f"the run's arguments are not a valid `ufm solve` ({e})") from None
  if not isinstance(held, dict):
    return f"{run_dir / 'result.json'} is not a ufm result"
  problem = held.get("problem")
  if not isinstance(problem, dict):
    return f"{run_dir / 'result.json'} has no problem definition"
  differ = sorted(k for k in set(problem) | set(wanted) if problem.get(k) != wanted.get(k))
  if differ:
    return "its result.json is another problem (" + ", ".join(
        f"{k} {problem.get(k)} there, {wanted.get(k)} asked" for k in differ[:3]) + ")"
  asked = {"num_seeds": parsed.seeds, "steps_budget": parsed.steps}
  found = {"num_seeds": held.get("num_seeds"),
           "steps_budget": (held.get("solver") or {}).get("steps_budget")}
  differ = [k for k in asked if found[k] is not None and found[k] != asked[k]]
  if differ:
    return "its result.json was solved with other settings (" + ", ".join(
        f"{k} {found[k]} there, {asked[k]} asked" for k in differ) + ")"
  return None


def _train_mismatch(run: dict, run_dir: Path, overrides: dict | None) -> str | None:
  held = runfiles.read_json(run_dir / "config.json")
  wanted = _expected_config(run["config"], {**run.get("overrides", {}), **(overrides or {})})
  # The trainer's own test of "the same run" (deepnet.workdir.resume_diff), so that a run the
  # sweep reuses is one the trainer would resume.
  differ = workdir_lib.resume_diff(held, wanted)
  if differ:
    return ("its config.json is another run (differs in: " + ", ".join(differ[:6])
            + (", ..." if len(differ) > 6 else "") + ")")
  return None


def _expected_config(config_file: str, overrides: dict) -> dict:
  """The config file's `get_config()` with `overrides` applied, as JSON types."""
  path = Path(config_file)
  if not path.is_file():
    path = REPO / config_file
  spec = importlib.util.spec_from_file_location(f"_reuse_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  with _in_repo():
    spec.loader.exec_module(module)
  tree = runfiles.to_json(_as_dict(module.get_config()))
  for key, value in overrides.items():
    node, *parts = [tree] + key.split(".")
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = runfiles.to_json(_parse(value))
  return tree


def _as_dict(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def _parse(value):
  """An override as the trainer's flags parse it: `--set` gives text such as "0.1", "(8,4)"
  or "True"; text that is no Python literal stays text (a path, a name)."""
  if not isinstance(value, str):
    return value
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value
