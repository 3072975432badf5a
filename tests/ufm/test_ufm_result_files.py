"""result.json describes the embeddings.npy saved beside it, whenever the solve stops.

Every number is recomputed from the saved files with independent code: the loss with
`geometry.losses.supcon_loss` in float64, the closed form with `geometry.frames`, the geometry
with NumPy / `geometry.metrics`, the projected gradient with `jax.grad`.
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


def _projected_gradient_rms(h, labels, tau):
  """RMS over rows of the SCL gradient projected onto the tangent cone of UFM+ at h."""
  with jax.enable_x64(True):
    grad = np.asarray(jax.grad(lambda x: losses.supcon_loss(
        x, jnp.asarray(labels), temperature=tau, reduction="sum"))(jnp.asarray(h)))
  tangent = grad - np.sum(grad * h, axis=1, keepdims=True) * h
  cone = np.where(h > 0, tangent, np.minimum(tangent, 0.0))
  return float(np.sqrt(np.sum(cone ** 2) / len(h)))


def _solve_and_write(out, steps, seeds=1, **options):
  problem = problem_lib.make_problem(sizes=[10, 10, 2, 2], dim=8, temperature=1.0)
  opts = solver_lib.SolverOptions(steps=steps, seeds=seeds, **options)
  solution = solver_lib.solve(problem, opts)
  result = cli.build_result(problem, opts, solution)
  cli.write_outputs(str(out), problem, solution, result)
  return result, solution


def test_cli_reproduction_reports_the_saved_embeddings(tmp_path):
  # The reproduction of the reliability issue: result.json used to give the OF's loss while
  # embeddings.npy held a kicked state (SCL 62.039 against 61.825).
  code = cli.main(["solve", "--sizes", "10,10,2,2", "--dim", "8", "--temperature", "1", "--steps",
                   "1700", "--out", str(tmp_path), "--quiet"])
  assert code == 0
  _check_files(tmp_path)


def test_budget_ending_inside_a_kick_reports_the_saved_embeddings(tmp_path):
  # A negative certificate tolerance certifies nothing, so the first stall (at the OF) starts
  # a kick, and a kick of 1000 chunks outlasts the budget: the solve stops by its budget
  # inside a kick, with the state moved off the best point it measured.
  _, solution = _solve_and_write(tmp_path, 1700, certificate_rtol=-1.0, kick_chunks=1000)
  assert not solution.converged[0] and not solution.certified[0]
  _check_files(tmp_path)


def _check_files(tmp_path):
  tau, sizes = 1.0, [10, 10, 2, 2]
  result = json.loads((tmp_path / "result.json").read_text())
  h = np.load(tmp_path / "embeddings.npy")
  labels = np.load(tmp_path / "labels.npy")
  np.testing.assert_array_equal(labels, np.repeat(np.arange(4), sizes))

  with jax.enable_x64(True):
    loss = float(losses.supcon_loss(jnp.asarray(h), jnp.asarray(labels), temperature=tau,
                                    reduction="sum"))
  optimum = frames.scl_optimal_loss(sizes, tau)
  assert result["loss"] == pytest.approx(loss, rel=1e-12, abs=1e-10)
  assert result["optimal_loss"] == pytest.approx(optimum, rel=1e-14)
  assert result["gap"] == pytest.approx(loss - optimum, abs=1e-9)

  # Geometry of the class means, from a NumPy loop.
  means = np.stack([h[labels == c].mean(axis=0) for c in range(4)])
  gram = means @ means.T
  dist_of = np.linalg.norm(gram / np.linalg.norm(gram) - np.eye(4) / 2.0)
  norms = np.linalg.norm(means, axis=1)
  cos = gram / np.outer(norms, norms)
  assert result["dist_of"] == pytest.approx(dist_of, abs=1e-12)
  assert result["dist_etf"] == pytest.approx(metrics.dist_etf(means), abs=1e-12)
  np.testing.assert_allclose(result["gram"], gram, atol=1e-12)
  np.testing.assert_allclose(result["cosines"], cos, atol=1e-12)
  np.testing.assert_allclose(result["class_mean_norms"], norms, atol=1e-12)
  off = cos[~np.eye(4, dtype=bool)]
  assert result["min_cos"] == pytest.approx(off.min(), abs=1e-12)
  assert result["max_cos"] == pytest.approx(off.max(), abs=1e-12)
  assert result["mean_cos"] == pytest.approx(off.mean(), abs=1e-12)
  assert result["reached_of"] == bool(dist_of < 1e-3)
  assert result["pg_norm"] == pytest.approx(_projected_gradient_rms(h, labels, tau),
                                            rel=1e-6, abs=1e-12)
  # The saved rows are feasible (unit norm, non-negative).
  np.testing.assert_allclose(np.linalg.norm(h, axis=1), 1.0, atol=1e-12)
  assert h.min() >= 0.0
  # The per-seed entry of the saved seed says the same.
  seed = result["seeds"][0]
  assert seed["loss"] == result["loss"] and seed["dist_of"] == result["dist_of"]
