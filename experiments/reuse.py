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

from pathlib import Path

import deepnet
import ufm
from deepnet import config as config_lib
from deepnet import workdir as workdir_lib
from geometry import runfiles
from ufm.problem import ProblemError

# Where the sweep runs its commands (`experiments.sweep`): the folder their relative paths
# (config files, schedule files) start from.
REPO = Path(__file__).resolve().parent.parent


def mismatch(run: dict, run_dir: Path, overrides: dict | None = None) -> str | None:
  """Why the finished folder `run_dir` is not `run`'s result (None when it is)."""
  try:
    if run["kind"] == "ufm":
      return _ufm_mismatch(run["args"], Path(run_dir))
    return _train_mismatch(run, Path(run_dir), overrides)
  except ValueError as e:
    return str(e)


def _ufm_mismatch(args, run_dir: Path) -> str | None:
  held = runfiles.read_json(run_dir / "result.json")
  try:
    problem, options = ufm.load_config(args, base_dir=REPO)
  except ProblemError as e:
    raise ValueError(f"the run's arguments are not a valid `ufm solve` ({e})") from None
  wanted = runfiles.to_json(problem.describe())
  if not isinstance(held, dict):
    return f"{run_dir / 'result.json'} is not a ufm result"
  problem = held.get("problem")
  if not isinstance(problem, dict):
    return f"{run_dir / 'result.json'} has no problem definition"
  differ = sorted(k for k in set(problem) | set(wanted) if problem.get(k) != wanted.get(k))
  if differ:
    return "its result.json is another problem (" + ", ".join(
        f"{k} {problem.get(k)} there, {wanted.get(k)} asked" for k in differ[:3]) + ")"
  asked = {"num_seeds": options.seeds, "steps_budget": options.steps}
  found = {"num_seeds": held.get("num_seeds"),
           "steps_budget": (held.get("solver") or {}).get("steps_budget")}
  differ = [k for k in asked if found[k] is not None and found[k] != asked[k]]
  if differ:
    return "its result.json was solved with other settings (" + ", ".join(
        f"{k} {found[k]} there, {asked[k]} asked" for k in differ) + ")"
  return None


def _train_mismatch(run: dict, run_dir: Path, overrides: dict | None) -> str | None:
  held = runfiles.read_json(run_dir / "config.json")
  # The config the sweep's command trains (deepnet.load_config, the trainer's own loader),
  # as the trainer writes it into config.json.
  wanted = config_lib.config_to_dict(deepnet.load_config(
      run["config"], {**run.get("overrides", {}), **(overrides or {})}, base_dir=REPO))
  # The trainer's own test of "the same run" (deepnet.workdir.resume_diff), so that a run the
  # sweep reuses is one the trainer would resume.
  differ = workdir_lib.resume_diff(held, wanted)
  if differ:
    return ("its config.json is another run (differs in: " + ", ".join(differ[:6])
            + (", ..." if len(differ) > 6 else "") + ")")
  return None
