"""Metrics on exact configurations (docs/theory.md#ref-metrics) and against a separate NumPy version."""

import math

import numpy as np
import pytest

from geometry import frames, imbalance, metrics


def labels_for(sizes):
  return np.repeat(np.arange(len(sizes)), sizes)


def reference_metrics(h, y, k):
  """An independent, loop-based implementation of docs/theory.md#metrics."""
  h = np.asarray(h, np.float64)
  mus = np.stack([h[y == c].mean(0) for c in range(k)])
  g = mus @ mus.T
  d_of = np.linalg.norm(g / np.linalg.norm(g) - np.eye(k) / math.sqrt(k))
  mc = mus - mus.mean(0)
  gc = mc @ mc.T
  d_etf = np.linalg.norm(gc / np.linalg.norm(gc) - (np.eye(k) - 1 / k) / math.sqrt(k - 1))
  sw = sum(np.outer(h[i] - mus[y[i]], h[i] - mus[y[i]]) for i in range(len(y))) / len(y)
  sb = sum(np.outer(mc[c], mc[c]) for c in range(k)) / k
  u, s, vt = np.linalg.svd(sb)
  pinv = sum(np.outer(vt[j], u[:, j]) / s[j] for j in range(k - 1))
  nc1 = np.trace(sw @ pinv)
  cos = [mus[a] @ mus[b] / np.linalg.norm(mus[a]) / np.linalg.norm(mus[b])
         for a in range(k) for b in range(k) if a != b]
  pred = np.array([np.argmin([np.linalg.norm(x - m) for m in mus]) for x in h])
  acc = [np.mean(pred[y == c] == c) for c in range(k)]
  return dict(dist_of=d_of, dist_etf=d_etf, nc1=nc1, mean_cos=np.mean(cos),
              angle_values=[1 - math.acos(c) / math.pi for c in cos],
              ncc_acc=np.mean(acc), ncc_maj=np.mean(acc[: k // 2]),
              ncc_min=np.mean(acc[k // 2:]),
              class_mean_norms=np.linalg.norm(mus, axis=1))


def test_random_data_matches_reference():
  rng = np.random.default_rng(0)
  y = labels_for([30, 20, 9, 6, 5])
  h = rng.normal(size=(len(y), 8)) + 2 * rng.normal(size=(5, 8))[y]
  h /= np.linalg.norm(h, axis=1, keepdims=True)
  got = metrics.geometry_report(h, y, 5)
  ref = reference_metrics(h, y, 5)
  for key in ("dist_of", "dist_etf", "nc1", "mean_cos", "ncc_acc", "ncc_maj", "ncc_min"):
    assert got[key] == pytest.approx(ref[key], rel=1e-9), key
  assert got["nc1_over_k"] == pytest.approx(ref["nc1"] / 5, rel=1e-9)
  np.testing.assert_allclose(got["class_mean_norms"], ref["class_mean_norms"], rtol=1e-12)
  np.testing.assert_allclose(got["angle_values"], ref["angle_values"], rtol=1e-9)


def test_chunked_accumulation_equals_one_call_with_masks():
  rng = np.random.default_rng(1)
  y = rng.integers(0, 4, 101)
  h = rng.normal(size=(101, 6))
  where = rng.random(101) > 0.2
  whole = metrics.geometry_report(h, y, 4, where=where)
  means, _ = metrics.class_means(h, y, 4, where=where)
  acc = metrics.GeometryAccumulator(4, 6, reference_means=means)
  for start in range(0, 101, 17):
    sl = slice(start, start + 17)
    acc.update(h[sl], y[sl], where=where[sl])
  chunked = acc.result()
  for key, value in whole.items():
    np.testing.assert_allclose(np.asarray(chunked[key], float), np.asarray(value, float),
                               rtol=1e-10, err_msg=key)


def test_orthogonal_frame_metrics():
  y = labels_for([10, 10, 2, 2])
  h = frames.frame_embeddings(frames.orthogonal_frame(4, 8), y)
  report = metrics.geometry_report(h, y, 4)
  assert report["dist_of"] == pytest.approx(0, abs=1e-12)
  assert report["dist_etf"] == pytest.approx(0, abs=1e-12)  # centered OF is an ETF
  assert report["nc1"] == pytest.approx(0, abs=1e-12)
  assert report["mean_cos"] == pytest.approx(0, abs=1e-12)
  np.testing.assert_allclose(report["angle_values"], 0.5)
  np.testing.assert_allclose(report["class_mean_norms"], 1.0)
  assert report["ncc_acc"] == 1.0


@pytest.mark.parametrize("k,expected", [(4, 0.517638), (10, 0.320364), (100, 0.100126)])
def test_uncentered_etf_dist_of(k, expected):
  etf = frames.simplex_etf(k, k)
  assert metrics.dist_of(etf) == pytest.approx(expected, abs=5e-7)
  assert metrics.dist_etf(etf) == pytest.approx(0, abs=1e-10)
  assert metrics.mean_cos(etf) == pytest.approx(-1 / (k - 1), abs=1e-12)


def test_equal_means_and_angle_lines():
  assert metrics.dist_of(np.ones((10, 3))) == pytest.approx(1.169421, abs=5e-7)
  np.testing.assert_allclose(metrics.angle_values(frames.simplex_etf(10, 10)),
                             1 - math.acos(-1 / 9) / math.pi)
  assert 1 - math.acos(-1 / 9) / math.pi == pytest.approx(0.464559, abs=5e-7)


@pytest.mark.parametrize("ratio,expected", [(10, 0.416120), (100, 0.506587)])
def test_weighted_centering_of_of_is_not_etf(ratio, expected):
  sizes = imbalance.class_sizes(10, "step", ratio, 5000)
  of = frames.orthogonal_frame(10, 10)
  assert metrics.dist_etf(of, weights=sizes) == pytest.approx(expected, abs=5e-7)
  assert metrics.dist_etf(of) == pytest.approx(0, abs=1e-12)


def test_ncc_with_reference_means_and_split():
  means = np.eye(3)
  h = np.array([[1, 0, 0], [0.1, 0.9, 0], [0.9, 0.1, 0], [0, 0, 1]], float)
  y = np.array([0, 1, 1, 2])
  report = metrics.geometry_report(h, y, 3, reference_means=means, majority=[0])
  # per class: 1, 1/2, 1 -> balanced 5/6; majority {0}: 1; minority {1, 2}: 3/4
  assert report["ncc_acc"] == pytest.approx(5 / 6)
  assert report["ncc_maj"] == pytest.approx(1.0)
  assert report["ncc_min"] == pytest.approx(0.75)


def test_nc1_hand_value():
  # K=2, d=2, means (1,0) and (-1,0); within-class spread only along x: +-0.5 around the means.
  h = np.array([[1.5, 0], [0.5, 0], [-1.5, 0], [-0.5, 0]])
  y = np.array([0, 0, 1, 1])
  # Sigma_W = diag(0.25, 0), Sigma_B = diag(1, 0) -> Tr(Sigma_W Sigma_B^+) = 0.25
  assert metrics.geometry_report(h, y, 2)["nc1"] == pytest.approx(0.25, rel=1e-12)
