"""CE-UFM stops when its geometry has settled, and the minority collapse survives the rule.

Expected geometry from the theory: balanced CE-UFM collapses to a simplex ETF (cosines
-1/(K-1) between class means and between classifier rows); under imbalance the minority
classifier rows move towards each other, away from the ETF's -1/(K-1) (minority collapse).
"""

import jax
import numpy as np
import pytest

from geometry import metrics
from ufm import problem as problem_lib
from ufm import solver as solver_lib


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


def _solve(sizes):
  problem = problem_lib.make_problem(sizes=sizes, dim=6, final_relu=False, loss="ce")
  return problem, solver_lib.solve(problem, solver_lib.SolverOptions(steps=20000))


def _offdiag(a):
  return a[~np.eye(len(a), dtype=bool)]


def test_balanced_ce_ends_converged_at_a_simplex_etf():
  problem, sol = _solve([5, 5, 5, 5])
  assert sol.converged[0] and sol.steps[0] < 20000
  h, w = sol.embeddings[0], sol.classifier[0]
  means = np.stack([h[problem.labels == c].mean(axis=0) for c in range(4)])
  for frame in (means, w):
    unit = frame / np.linalg.norm(frame, axis=1, keepdims=True)
    np.testing.assert_allclose(_offdiag(unit @ unit.T), -1 / 3, atol=1e-4)
    norms = np.linalg.norm(frame, axis=1)
    np.testing.assert_allclose(norms, norms.mean(), rtol=1e-4)   # equal norms
    assert metrics.dist_etf(frame) < 1e-4


def test_imbalanced_ce_still_shows_minority_collapse():
  problem, sol = _solve([50, 50, 5, 5])
  assert sol.converged[0]
  w = sol.classifier[0]
  cos = metrics.cosines(w)
  # The two minority rows are far closer than an ETF's -1/3, the majority pair is not.
  assert cos[2, 3] > -1 / 3 + 0.3
  assert cos[0, 1] < cos[2, 3] - 0.3
  assert metrics.dist_etf(w) > 0.2
