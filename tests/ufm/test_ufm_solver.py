"""The solver finds the minimizers that docs/theory.md theory and reference numbers predict.

Expected values come from the closed forms (Theorems 1-2, docs/theory.md#theory) and the reference numbers
of docs/theory.md#reference-values, never from the solver itself. Starts are random.
"""

import jax
import numpy as np
import pytest

from geometry import frames
from geometry import metrics
from ufm import problem as problem_lib
from ufm import solver as solver_lib



@pytest.fixture(autouse=True)
def _float64():
  """x64 per test, so that other packages' tests in the same process keep float32."""
  with jax.enable_x64(True):
    yield

C1_FILE = "experiments/schedules/c1_violation.json"
C2_FILE = "experiments/schedules/c2_violation.json"


def _solve(seeds=2, steps=6000, **kwargs):
  problem = problem_lib.make_problem(**kwargs)
  options = solver_lib.SolverOptions(steps=steps, seeds=seeds)
  return problem, solver_lib.solve(problem, options)


def _means(problem, h):
  return metrics.class_means(h, problem.labels, problem.num_classes)[0]


@pytest.mark.parametrize("sizes, dim, tau", [
    ([10, 10, 2, 2], 4, 0.5),      # ratio 5, d = K
    ([40, 8, 4, 2], 6, 1.0),       # ratio 20, d > K
    ([200, 2, 2], 3, 0.5),         # ratio 100, d = K
])
def test_ufm_plus_reaches_an_of_for_any_sizes(sizes, dim, tau):
  problem, sol = _solve(sizes=sizes, dim=dim, temperature=tau)
  expected = frames.scl_optimal_loss(sizes, tau)  # Theorem 1
  for s in range(len(sol.seeds)):
    assert metrics.dist_of(_means(problem, sol.embeddings[s])) < 1e-4
    assert sol.loss[s] == pytest.approx(expected, rel=1e-6)
    assert sol.converged[s]
  # Rows stay feasible: unit norm and non-negative.
  np.testing.assert_allclose(np.linalg.norm(sol.embeddings, axis=-1), 1.0, atol=1e-12)
  assert sol.embeddings.min() >= 0.0


def test_ufm_plus_paper_reference_value():
  # docs/theory.md#ref-thm1: K = 4, n = (10, 10, 2, 2), d = 8, tau = 1 -> 61.824906, dist_of < 1e-12.
  problem, sol = _solve(sizes=[10, 10, 2, 2], dim=8, temperature=1.0, seeds=1)
  assert sol.loss[0] == pytest.approx(61.824906, abs=1e-6)
  assert metrics.dist_of(_means(problem, sol.embeddings[0])) < 1e-10


def test_ufm_balanced_gives_an_etf():
  # docs/theory.md#ref-ufm-balanced: K = 4, five per class, tau = 1 -> ETF, loss 20 log(4 + 15 e^{-4/3}).
  problem, sol = _solve(sizes=[5, 5, 5, 5], dim=4, temperature=1.0, final_relu=False)
  expected = 20 * np.log(4 + 15 * np.exp(-4 / 3))
  for s in range(2):
    means = _means(problem, sol.embeddings[s])
    assert metrics.dist_etf(means) < 1e-3
    np.testing.assert_allclose(metrics.cosines(means)[~np.eye(4, dtype=bool)], -1 / 3, atol=1e-3)
    assert sol.loss[s] == pytest.approx(expected, rel=1e-8)


def test_ufm_imbalanced_breaks_the_symmetry():
  # docs/theory.md#ref-ufm-imbalanced, tau = 1: loss 57.508222 below the OF's 61.824906, cos(maj, maj) = -0.772,
  # cos(min, min) = +0.280, dist_of 0.598: neither an OF nor an ETF. These are the minima of the
  # independent scipy L-BFGS solve (tests/ufm/scl_reference.py), which
  # test_ufm_uniqueness_reference.py recomputes.
  problem, sol = _solve(sizes=[10, 10, 2, 2], dim=8, temperature=1.0, final_relu=False)
  of_value = frames.scl_optimal_loss([10, 10, 2, 2], 1.0)
  for s in range(2):
    means = _means(problem, sol.embeddings[s])
    cos = metrics.cosines(means)
    assert sol.loss[s] == pytest.approx(57.508222, abs=1e-5)
    assert sol.loss[s] < of_value - 4
    assert cos[0, 1] == pytest.approx(-0.772, abs=2e-3)
    assert cos[2, 3] == pytest.approx(0.280, abs=2e-3)
    assert metrics.dist_of(means) == pytest.approx(0.598, abs=2e-3)


def test_c1_violation_reaches_the_bound_without_an_of():
  # docs/theory.md#ref-c1: minimum 6.617337, reached by non-OF solutions.
  problem, sol = _solve(batching=f"fixed:{C1_FILE}", dim=8, temperature=1.0, seeds=4)
  np.testing.assert_allclose(sol.loss, 6.617337, atol=1e-5)
  dist = [metrics.dist_of(_means(problem, h)) for h in sol.embeddings]
  assert max(dist) > 0.1


def test_c1_violation_with_binding_reaches_the_of():
  # docs/theory.md#ref-binding: with one binding row per class the minimum is 22.402654 and unique (OF).
  problem, sol = _solve(batching=f"fixed:{C1_FILE}", binding=1, dim=8, temperature=1.0, seeds=4)
  np.testing.assert_allclose(sol.loss, 22.402654, atol=1e-5)
  for h in sol.embeddings:
    assert metrics.dist_of(_means(problem, h)) < 1e-6


def test_c2_violation_leaves_two_classes_unconstrained():
  # docs/theory.md#ref-c2: minimum 23.963646 with cos(mu_1, mu_2) clearly positive.
  problem, sol = _solve(batching=f"fixed:{C2_FILE}", dim=8, temperature=1.0, seeds=4)
  np.testing.assert_allclose(sol.loss, 23.963646, atol=1e-5)
  cos12 = [metrics.cosines(_means(problem, h))[1, 2] for h in sol.embeddings]
  assert max(cos12) > 0.1


def test_reshuffled_batches_with_binding_reach_the_of():
  problem, sol = _solve(sizes=[8, 8, 4], dim=3, temperature=1.0, batching="shuffle:5", binding=1)
  for h in sol.embeddings:
    assert metrics.dist_of(_means(problem, h)) < 1e-4


def test_streaming_path_gives_the_same_solution():
  problem = problem_lib.make_problem(sizes=[6, 6, 2], dim=3, temperature=0.5)
  opts = dict(steps=200, tol=1e-30, continuation=False, chunk=50)
  dense = solver_lib.solve(problem, solver_lib.SolverOptions(**opts))
  streamed = solver_lib.solve(problem, solver_lib.SolverOptions(block_size=4, **opts))
  assert streamed.block_size == 4
  np.testing.assert_allclose(streamed.embeddings, dense.embeddings, atol=1e-8)


def test_auto_block_size_streams_when_dense_does_not_fit():
  for platform in ("cpu", "gpu"):
    assert solver_lib.auto_block_size(1000, 8, 1, memory=1 << 30, platform=platform) is None
    block = solver_lib.auto_block_size(100_000, 8, 1, memory=1 << 30, platform=platform)
    assert block is not None and 6 * 100_000 * block * 8 <= (1 << 30) // 4


def test_auto_block_size_on_cpu_streams_once_n_by_n_outgrows_the_cache():
  # 5050^2 float32 = 102 MB: fits in 64 GB, but on a CPU blocks of 512 rows are faster.
  assert solver_lib.auto_block_size(5050, 4, 1, memory=64 << 30, platform="gpu") is None
  assert solver_lib.auto_block_size(5050, 4, 1, memory=64 << 30, platform="cpu") == 512
  # 2000^2 float32 = 16 MB stays dense.
  assert solver_lib.auto_block_size(2000, 4, 1, memory=64 << 30, platform="cpu") is None


def test_float32_reaches_an_of():
  problem, sol = _solve(sizes=[10, 10, 2, 2], dim=4, temperature=1.0, dtype="float32")
  assert sol.embeddings.dtype == np.float64  # returned as float64 NumPy
  for h in sol.embeddings:
    assert metrics.dist_of(_means(problem, h)) < 1e-3


def test_ce_balanced_gives_an_etf_for_classifier_and_means():
  # Balanced CE-UFM: neural collapse to a simplex ETF (docs/theory.md#ce-ufm), for W and the class means.
  problem, sol = _solve(sizes=[5, 5, 5, 5], dim=6, final_relu=False, loss="ce", seeds=1,
                        steps=6000)
  means = _means(problem, sol.embeddings[0])
  assert metrics.dist_etf(means) < 1e-2
  assert metrics.dist_etf(sol.classifier[0]) < 1e-2
  cos = metrics.cosines(sol.classifier[0])[~np.eye(4, dtype=bool)]
  np.testing.assert_allclose(cos, -1 / 3, atol=1e-2)


def _phase_reports(sizes, steps, chunk=50):
  reports = []
  problem = problem_lib.make_problem(sizes=sizes, dim=3, temperature=0.5)
  options = solver_lib.SolverOptions(steps=steps, seeds=1, chunk=chunk)
  solver_lib.solve(problem, options, progress=reports.append)
  return reports


def test_the_warm_up_phase_ends_at_a_quarter_of_the_budget():
  # docs of SolverOptions.warmup_steps: the warm-up takes min(warmup_steps, steps // 4) steps,
  # 600 // 4 = 150 here; the final phase takes the rest.
  reports = _phase_reports([6, 3, 2], steps=600)
  names = [r["phase_name"] for r in reports]
  assert names == sorted(names, key=["warm-up", "final"].index)   # warm-up first, then final
  warm = [r["step"] for r in reports if r["phase_name"] == "warm-up"]
  final = [r["step"] for r in reports if r["phase_name"] == "final"]
  assert warm == [50, 100, 150]                                 # chunks of 50 up to step 150
  assert final and final[0] == 200 and all(r["final"] == (r["phase_name"] == "final")
                                           for r in reports)


def test_a_phase_lifted_from_the_cut_solve_measures_its_start_first():
  # sizes 40 > warmup_rows = 32: the warm-up solves the cut problem in steps // 2 = 300 steps;
  # the final phase then reports its start (0 steps run), then a tenth of a chunk (5 steps).
  reports = _phase_reports([40, 4, 4], steps=600)
  cut = [r for r in reports if r["phase_name"] == "cut"]
  final = [r["step"] for r in reports if r["phase_name"] == "final"]
  assert cut and all(r["step"] <= 300 for r in cut)
  assert final[:2] == [cut[-1]["step"], cut[-1]["step"] + 5]
