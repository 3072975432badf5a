"""Each threshold of a verdict has one name and one home (docs/contracts.md#thresholds): the
UFM "is an OF / ETF" levels live in `geometry.metrics`, the solver's default tolerance and
step size in `ufm.options`, and every module that states or applies them imports them."""

import ast
from pathlib import Path

import numpy as np

from experiments import figures as experiment_figures
from experiments.report import THRESHOLDS
from geometry import metrics
from ufm import cli, options

REPO = Path(__file__).resolve().parent.parent
# The modules that apply or print the levels; none may write the numbers again.
USERS = ("ufm/cli.py", "ufm/result.py", "experiments/report/builder.py", "experiments/figures.py")


def _literals(path: Path) -> list:
  """Every number constant of the file, and every number written inside a string."""
  found = []
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
      found.append(node.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      found += [w for w in ("1e-3", "1e-9", "1e-5", "1e-2", "5e-2") if w in node.value]
  return found


def test_the_of_and_etf_levels_are_written_once():
  # The value docs/contracts.md states for fraction_of, and far below dist_of of the simplex
  # ETF at K = 10 (sqrt(2 (1 - 1/sqrt(K))) ... computed here from its Gram matrix).
  assert metrics.OF_THRESHOLD == 1e-3 and metrics.ETF_THRESHOLD == 1e-3
  k = 10
  etf = np.eye(k) - np.ones((k, k)) / k
  assert metrics.dist_of(etf) > 50 * metrics.OF_THRESHOLD
  assert THRESHOLDS["ufm_of"] is metrics.OF_THRESHOLD
  assert THRESHOLDS["ufm_etf"] is metrics.ETF_THRESHOLD
  for name in USERS:
    written = _literals(REPO / name)
    assert 1e-3 not in written and "1e-3" not in written, name


def test_the_binding_figure_draws_the_reports_convergence_level():
  assert experiment_figures._CONVERGED is THRESHOLDS["convergence_of"]
  assert 0.2 not in _literals(REPO / "experiments/figures.py")


def test_the_solver_defaults_are_written_once():
  opts = options.SolverOptions()
  assert opts.resolved_tol("float64") == options.DEFAULT_TOL["float64"] == 1e-9
  assert opts.resolved_tol("float32") == options.DEFAULT_TOL["float32"] == 1e-5
  assert opts.resolved_lr("scl") == options.DEFAULT_LR["scl"] == 1e-2
  assert opts.resolved_lr("ce") == options.DEFAULT_LR["ce"] == 5e-2
  assert not [w for w in _literals(REPO / "ufm/cli.py") if isinstance(w, str)]


def test_the_summary_states_the_level_it_counts_with():
  result = {"setup": "UFM", "gap": None, "of_loss": None, "loss": 1.0, "dist_of": 0.0,
            "dist_etf": 0.5, "nc1": 0.0, "mean_cos": 0.0, "steps": 3, "seconds": 0.1,
            "converged": True, "num_seeds": 2, "fraction_of": 1.0,
            "spread": {"dist_of_min": 0.0, "dist_of_max": 0.0, "loss_min": 1.0, "loss_max": 1.0}}
  assert f"dist_of < {metrics.OF_THRESHOLD:g})" in cli.summary(result, "out")
