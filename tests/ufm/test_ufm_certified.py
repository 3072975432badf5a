"""Certified or not: for UFM+ with SCL the gap to the closed-form lower bound decides.

The bound is Theorem 1's value (`geometry.frames.scl_optimal_loss`); losses are recomputed in
float64 from the saved embeddings with `geometry.losses.supcon_loss`, and dist_of from the
class means, never taken from the solver.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from geometry import frames
from geometry import losses
from geometry import metrics
from ufm import cli
from ufm import problem as problem_lib
from ufm import solver as solver_lib


def _f64_loss(h, labels, tau):
  with jax.enable_x64(True):
    return float(losses.supcon_loss(jnp.asarray(h, jnp.float64), jnp.asarray(labels),
                                    temperature=tau, reduction="sum"))


def test_a_tiny_budget_stops_at_a_point_that_is_not_certified(tmp_path, capsys):
  # 300 steps at tau = 0.1, K = 10: far from the OF when the budget ends.
  code = cli.main(["solve", "--classes", "10", "--imbalance", "step:10", "--n-max", "20",
                   "--dim", "10", "--steps", "300", "--out", str(tmp_path)])
  out = capsys.readouterr().out
  assert code == 0
  result = json.loads((tmp_path / "result.json").read_text())
  h, labels = np.load(tmp_path / "embeddings.npy"), np.load(tmp_path / "labels.npy")
  bound = frames.scl_optimal_loss(np.bincount(labels), 0.1)
  gap = _f64_loss(h, labels, 0.1) - bound
  # Every row is an anchor (classes of 20 and 2 rows): the tolerance is 1e-9 (|L*| + n / tau).
  assert result["certificate_tol"] == pytest.approx(1e-9 * (abs(bound) + len(labels) / 0.1))
  assert gap > result["certificate_tol"]                   # independently: not certified
  assert result["certified"] is False and result["seeds"][0]["certified"] is False
  assert result["num_certified"] == 0
  assert result["converged"] is False
  assert "NOT certified" in out and "not a global minimizer" in out
  assert "converged True" not in out and "certified global" not in out


def test_a_solve_at_the_bound_is_certified(tmp_path, capsys):
  code = cli.main(["solve", "--sizes", "10,10,2,2", "--dim", "8", "--temperature", "1", "--seeds", "2",
                   "--out", str(tmp_path)])
  out = capsys.readouterr().out
  assert code == 0
  result = json.loads((tmp_path / "result.json").read_text())
  h, labels = np.load(tmp_path / "embeddings.npy"), np.load(tmp_path / "labels.npy")
  bound = frames.scl_optimal_loss([10, 10, 2, 2], 1.0)
  assert result["certificate_rtol"] == 1e-9
  assert result["certificate_tol"] == pytest.approx(1e-9 * (abs(bound) + 24 / 1.0))
  assert _f64_loss(h, labels, 1.0) - bound <= result["certificate_tol"]
  assert [s["certified"] for s in result["seeds"]] == [True, True]
  assert result["num_certified"] == 2 and result["converged"] is True
  assert "certified global minimizer" in out and "2 of 2 seeds" in out
  # The default solve adds nothing to the objective, and says so.
  assert result["solver"]["objective"]["added_terms"] == []


def test_no_certificate_without_a_bound(tmp_path):
  # The UFM without ReLU has no such bound: certified is null, not false.
  code = cli.main(["solve", "--sizes", "5,5,5,5", "--dim", "4", "--temperature", "1", "--no-final-relu",
                   "--steps", "2000", "--out", str(tmp_path), "--quiet"])
  assert code == 0
  result = json.loads((tmp_path / "result.json").read_text())
  assert result["certified"] is None and result["num_certified"] is None


@pytest.mark.parametrize("classes, ratio, n_max, seeds", [
    (20, 5, 10, 3),
    # The configuration with a spurious stationary point (docs/solver.md#why-k--50-stalled):
    # a minority class spread over coordinates other classes hold while one stays free.
    pytest.param(50, 10, 20, 2, marks=pytest.mark.slow),
])
def test_every_seed_is_certified_at_the_of_for_larger_k(classes, ratio, n_max, seeds):
  # Step imbalance, d = K, the paper's tau = 0.1, float32.
  sizes = problem_lib.sizes_from_recipe(classes, f"step:{ratio}", n_max)
  problem = problem_lib.make_problem(sizes=sizes, dim=classes, temperature=0.1, dtype="float32")
  solution = solver_lib.solve(problem, solver_lib.SolverOptions(seeds=seeds))
  bound = frames.scl_optimal_loss(sizes, 0.1)
  for s in range(seeds):
    h = solution.embeddings[s]
    means = np.stack([h[problem.labels == c].mean(axis=0) for c in range(classes)])
    assert metrics.dist_of(means) < 1e-3
    assert solution.certified[s] and solution.converged[s]
    assert _f64_loss(h, problem.labels, 0.1) - bound <= 1e-5 * abs(bound)
