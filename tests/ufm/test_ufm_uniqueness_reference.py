"""The independent reference (`scl_reference`: NumPy loss and gradient, scipy L-BFGS on the
sphere parametrisation) against the closed forms, and the solver's minima against it.

The reference is checked first where docs/theory.md has a closed form (the balanced ETF, Theorem
1, Theorem 2's per-batch bound); where the theory has none (the UFM without ReLU, imbalanced,
docs/theory.md#ref-ufm-imbalanced) its lowest end point over random starts is the expected
value. Every reference point is stationary on the feasible set to a feasible-gradient norm of
1e-6 (rows of norm 1).
"""

import json

import jax
import numpy as np
import pytest

from geometry import frames
from geometry import metrics
from ufm import problem as problem_lib
from ufm import solver as solver_lib

import scl_reference as reference  # beside this file, as ufm_cli_helper

GRAD = 1e-6
IMBALANCED = np.repeat(np.arange(4), [10, 10, 2, 2])


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


def _schedule(name):
  with open(f"experiments/schedules/{name}.json") as f:
    spec = json.load(f)
  return np.asarray(spec["labels"]), [np.asarray(b) for b in spec["batches"]]


def test_the_reference_recovers_the_closed_forms():
  balanced = np.repeat(np.arange(4), 5)
  value, _, grad = reference.minimize(balanced, 4, 1.0, relu=False, starts=3)
  assert grad < GRAD and value == pytest.approx(20 * np.log(4 + 15 * np.exp(-4 / 3)), rel=1e-10)
  value, h, grad = reference.minimize(IMBALANCED, 8, 1.0, relu=True, starts=3)
  assert grad < GRAD and value == pytest.approx(frames.scl_optimal_loss([10, 10, 2, 2], 1.0),
                                                rel=1e-10)
  assert metrics.dist_of(metrics.class_means(h, IMBALANCED, 4)[0]) < 1e-4


def test_the_reference_finds_a_c2_minimizer_off_the_of_and_the_of_under_binding():
  labels, batches = _schedule("c2_violation")
  value, h, grad = reference.minimize(labels, 8, 1.0, relu=True, batches=batches, starts=3)
  assert grad < GRAD and value == pytest.approx(frames.scl_batch_bound(labels, batches, 1.0),
                                                rel=1e-10)
  assert reference.class_mean_cosines(h, labels)[1, 2] > 0.1
  problem = problem_lib.make_problem(batching="fixed:experiments/schedules/c2_violation.json",
                                     binding=1, dim=8, temperature=1.0)
  bound_batches = problem.epoch_batches(0)
  for seed in range(3):
    value, h, grad = reference.minimize(labels, 8, 1.0, relu=True, batches=bound_batches,
                                        starts=1, seed=seed)
    assert grad < GRAD
    assert value == pytest.approx(frames.scl_batch_bound(labels, bound_batches, 1.0), rel=1e-10)
    assert metrics.dist_of(metrics.class_means(h, labels, 3)[0]) < 1e-4


@pytest.mark.parametrize("tau, documented", [(1.0, 57.508222), (0.5, 49.401315)])
def test_the_no_relu_imbalanced_minimum_matches_the_reference(tau, documented):
  value, h, grad = reference.minimize(IMBALANCED, 8, tau, relu=False, starts=6)
  assert grad < GRAD
  assert value == pytest.approx(documented, abs=1e-6)      # docs/theory.md#ref-ufm-imbalanced
  problem = problem_lib.make_problem(sizes=[10, 10, 2, 2], dim=8, temperature=tau, final_relu=False)
  solution = solver_lib.solve(problem, solver_lib.SolverOptions(steps=6000, seeds=2))
  expected = reference.class_mean_cosines(h, IMBALANCED)
  for s in range(2):
    assert solution.loss[s] == pytest.approx(value, rel=1e-8)
    np.testing.assert_allclose(reference.class_mean_cosines(solution.embeddings[s], IMBALANCED),
                               expected, atol=1e-3)
