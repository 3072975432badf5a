"""Metrics at a dimension whose d x d matrices would not fit: no d x d array is formed, and
the values are those of the same embeddings in a small dimension (the metrics depend only on
inner products, so padding rows with zero coordinates changes none of them)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from geometry import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _reference_nc1(h, y, k):
  """Tr(Sigma_W pinv(Sigma_B)) with NumPy's pinv of the d x d matrices (small d only)."""
  means = np.stack([h[y == c].mean(0) for c in range(k)])
  centered = means - means.mean(0)
  sigma_b = centered.T @ centered / k
  dev = h - means[y]
  sigma_w = dev.T @ dev / len(y)
  return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-12, hermitian=True)))


def test_nc1_equals_the_pseudo_inverse_of_the_d_by_d_matrices():
  rng = np.random.default_rng(3)
  y = np.repeat(np.arange(5), [9, 7, 5, 4, 3])
  h = rng.normal(size=(len(y), 11)) + 3 * rng.normal(size=(5, 11))[y]
  assert metrics.geometry_report(h, y, 5)["nc1"] == pytest.approx(_reference_nc1(h, y, 5),
                                                                  rel=1e-10)


SCRIPT = """
import json, sys
import numpy as np
from geometry import metrics
h = np.load(sys.argv[1])
y = np.load(sys.argv[2])
print(json.dumps(metrics.geometry_report(h, y, 4)))
"""


def test_geometry_report_at_d_30000_forms_no_d_by_d_matrix(tmp_path):
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(4), [6, 5, 3, 2])
  small = np.abs(rng.normal(size=(len(y), 6)) + 2 * rng.normal(size=(4, 6))[y])
  small /= np.linalg.norm(small, axis=1, keepdims=True)
  big = np.zeros((len(y), 30_000))
  big[:, 1000:1006] = small
  np.save(tmp_path / "h.npy", big)
  np.save(tmp_path / "y.npy", y)
  # 2 GiB of address space (set by a shell: no Python between fork and exec here): a d x d
  # float64 matrix at d = 30,000 (7.2 GB) cannot be made.
  proc = subprocess.run(["bash", "-c", 'ulimit -v 2097152; exec "$@"', "bash", sys.executable,
                         "-c", SCRIPT, str(tmp_path / "h.npy"), str(tmp_path / "y.npy")],
                        capture_output=True, text=True, cwd=ROOT, timeout=120,
                        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  import json
  got = json.loads(proc.stdout)
  want = metrics.geometry_report(small, y, 4)
  assert got["nc1"] == pytest.approx(_reference_nc1(small, y, 4), rel=1e-9)
  for key in ("dist_of", "dist_etf", "nc1", "mean_cos", "ncc_acc"):
    assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
  np.testing.assert_allclose(got["gram"], want["gram"], rtol=1e-12)
