"""Geometry metrics of docs/theory.md#metrics, shared by the UFM solver and the trainer.

Everything is accumulated and computed in NumPy float64 (docs/theory.md#choice-metrics-pass). The metrics only
need per-class sums, counts and the total second moment, so a data set of any size is
evaluated chunk by chunk with `GeometryAccumulator` without an N x N matrix;
`geometry_report` is the one-call form and gives the same result. It needs no d x d matrix
either: Sigma_B^+ has rank K - 1 and comes from the SVD of the `[K, d]` centered class means,
and NC1 only needs Sigma_W along its K - 1 directions, so a solve at d = 10^5 costs
O(N d K) memory and time, not d^2.
"""

from __future__ import annotations

import numpy as np

# A converged UFM solve "is an OF" when dist_of is below OF_THRESHOLD and "is an ETF" when
# dist_etf is below ETF_THRESHOLD: far below the distances of the other candidate frames
# (dist_of of the simplex ETF is 0.096 at K = 10), yet above a float32 solve's residual.
# result.json's reached_of / fraction_of, the ufm summary and the report's verdicts use them.
OF_THRESHOLD = 1e-3
ETF_THRESHOLD = 1e-3


def _as_f64(x):
  return np.asarray(x, dtype=np.float64)


def class_means(embeddings, labels, num_classes: int, *, where=None):
  """Masked class means `[K, d]` and counts `[K]` (a class with no example gets a zero mean)."""
  h, y = _kept(embeddings, labels, where, num_classes)
  sums = np.zeros((num_classes, h.shape[1]))
  np.add.at(sums, y, h)
  counts = np.bincount(y, minlength=num_classes)
  return sums / np.maximum(counts, 1)[:, None], counts


def _kept(embeddings, labels, where, num_classes):
  """Rows kept by `where` as float64, labels as int64 checked to lie in [0, K)."""
  h = _as_f64(embeddings)
  y = np.asarray(labels).astype(np.int64)
  if where is not None:
    keep = np.asarray(where, bool)
    h, y = h[keep], y[keep]
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes})")
  return h, y


def gram(means) -> np.ndarray:
  """G_M = M M^T for class means as rows `[K, d]`."""
  m = _as_f64(means)
  return m @ m.T


def dist_of(means) -> float:
  """|| G_M / ||G_M||_F - I_K / sqrt(K) ||_F with uncentered means (0 for an OF)."""
  g = gram(means)
  k = g.shape[0]
  return float(np.linalg.norm(g / np.linalg.norm(g) - np.eye(k) / np.sqrt(k)))


def centered_means(means, weights=None) -> np.ndarray:
  """Means minus their mean: unweighted (the paper's metric) or weighted by `weights`."""
  m = _as_f64(means)
  w = np.ones(len(m)) if weights is None else _as_f64(weights)
  return m - (w @ m) / w.sum()


def dist_etf(means, weights=None) -> float:
  """|| G_c/||G_c||_F - (I - 11^T/K)/sqrt(K-1) ||_F, means centered by the unweighted mean of
  the class means (pass class sizes as `weights` for the weighted variant of docs/theory.md#centering)."""
  g = gram(centered_means(means, weights))
  k = g.shape[0]
  target = (np.eye(k) - np.full((k, k), 1.0 / k)) / np.sqrt(k - 1)
  return float(np.linalg.norm(g / np.linalg.norm(g) - target))


def cosines(means) -> np.ndarray:
  """`[K, K]` cosines between class means."""
  m = _as_f64(means)
  norms = np.linalg.norm(m, axis=1)
  return (m @ m.T) / np.maximum(np.outer(norms, norms), np.finfo(np.float64).tiny)


def mean_cos(means) -> float:
  """Average cosine over ordered class pairs c != c' (OF 0, ETF -1/(K-1))."""
  cos = cosines(means)
  k = cos.shape[0]
  return float((cos.sum() - np.trace(cos)) / (k * (k - 1)))


def angle_values(means) -> np.ndarray:
  """1 - theta_{cc'}/pi for every ordered pair c != c' (docs/theory.md#angles, without the sign
  factor): 0.5 for an OF, 1 - arccos(-1/(K-1))/pi for an ETF."""
  cos = np.clip(cosines(means), -1.0, 1.0)
  off = ~np.eye(cos.shape[0], dtype=bool)
  return 1.0 - np.arccos(cos[off]) / np.pi


def between_class_basis(means):
  """The top K-1 eigenpairs of Sigma_B = (1/K) sum_c (mu_c - mu_bar)(mu_c - mu_bar)^T.

  From the thin SVD of the `[K, d]` centered means C = U S V^T: Sigma_B = V (S^2/K) V^T, so
  no d x d matrix is formed (O(K^2 d)). Eigenvalues below 1e-12 of the largest are dropped.

  Returns:
    (vt `[r, d]` orthonormal eigenvectors as rows, eigenvalues `[r]`), r <= K - 1.
  """
  centered = centered_means(means)
  k = centered.shape[0]
  _, s, vt = np.linalg.svd(centered, full_matrices=False)
  eig = s * s / k
  rank = min(k - 1, int(np.sum(eig > eig[0] * 1e-12))) if eig.size and eig[0] > 0 else 0
  return vt[:rank], eig[:rank]


def nc1(within_cov, means) -> float:
  """Tr(Sigma_W Sigma_B^+) with Sigma_B = (1/K) sum_c (mu_c - mu_bar)(mu_c - mu_bar)^T and
  its pseudo-inverse from the top K-1 eigenpairs (no division by K, as the code):
  sum_r v_r^T Sigma_W v_r / lambda_r over the eigenpairs of `between_class_basis`."""
  vt, eig = between_class_basis(means)
  within = _as_f64(within_cov)
  return float(np.sum(np.einsum("rd,de,re->r", vt, within, vt) / eig))


def _nc1_from_rows(h, y, means) -> float:
  """`nc1` from the rows themselves: v^T Sigma_W v = (1/N) sum_i ((h_i - mu_{y_i}) . v)^2,
  so only `[N, K-1]` projections are formed, never the d x d Sigma_W (d may be 10^5)."""
  vt, eig = between_class_basis(means)
  projected = (h - means[y]) @ vt.T
  quadratic = np.sum(projected * projected, axis=0) / max(len(y), 1)
  return float(np.sum(quadratic / eig))


def _summary(means, counts, value_nc1) -> dict:
  """The metrics shared by `GeometryAccumulator.result` and `geometry_report`."""
  k = len(means)
  return {
      "dist_of": dist_of(means),
      "dist_etf": dist_etf(means),
      "nc1": value_nc1,
      "nc1_over_k": value_nc1 / k,
      "mean_cos": mean_cos(means),
      "class_mean_norms": np.linalg.norm(means, axis=1).tolist(),
      "counts": counts.tolist(),
      "gram": gram(means).tolist(),
      "angle_values": angle_values(means).tolist(),
  }


class GeometryAccumulator:
  """Sums and counts for the geometry metrics, fed chunk by chunk.

  Two kinds of statistics: per-class sums / counts and the second moment sum_i h_i h_i^T
  (enough for the class means, the within-class covariance and so every geometry metric),
  and, when `reference_means` is given, per-class nearest-class-centre hits. The second
  moment is d x d (`geometry_report` avoids it when all rows are at hand). NCC on a set with
  its own means therefore needs a second pass (or `geometry_report`, which does it).

  Example:
    >>> acc = GeometryAccumulator(num_classes=10, dim=512)
    >>> for h, y in chunks:
    ...   acc.update(h, y)
    >>> report = acc.result()
  """

  def __init__(self, num_classes: int, dim: int, reference_means=None):
    self.num_classes = num_classes
    self.sums = np.zeros((num_classes, dim))
    self.counts = np.zeros(num_classes, np.int64)
    self.second_moment = np.zeros((dim, dim))
    self.reference_means = None if reference_means is None else _as_f64(reference_means)
    self.ncc_hits = np.zeros(num_classes, np.int64)

  def update(self, embeddings, labels, *, where=None) -> "GeometryAccumulator":
    h, y = _kept(embeddings, labels, where, self.num_classes)
    np.add.at(self.sums, y, h)
    self.counts += np.bincount(y, minlength=self.num_classes)
    self.second_moment += h.T @ h
    if self.reference_means is not None:
      pred = ncc_predict(h, self.reference_means)
      self.ncc_hits += np.bincount(y[pred == y], minlength=self.num_classes)
    return self

  @property
  def means(self) -> np.ndarray:
    return self.sums / np.maximum(self.counts, 1)[:, None]

  def result(self, *, majority=None) -> dict:
    """All metrics as a JSON-ready dict (keys of `result.json` / `metrics.jsonl`)."""
    means, counts = self.means, self.counts
    total = max(int(counts.sum()), 1)
    # N Sigma_W = sum_i h_i h_i^T - sum_c n_c mu_c mu_c^T
    within = (self.second_moment - (means * counts[:, None]).T @ means) / total
    out = _summary(means, counts, nc1(within, means))
    if self.reference_means is not None:
      out.update(ncc_accuracies(self.ncc_hits, counts, majority=majority))
    return out


def ncc_predict(embeddings, means) -> np.ndarray:
  """Nearest class centre: argmin_c ||h - mu_c||_2."""
  h, m = _as_f64(embeddings), _as_f64(means)
  dist2 = (h * h).sum(1)[:, None] - 2.0 * h @ m.T + (m * m).sum(1)[None, :]
  return np.argmin(dist2, axis=1)


def ncc_accuracies(hits, counts, *, majority=None) -> dict:
  """Balanced (mean of per-class accuracies), majority and minority NCC accuracy.

  `majority` lists the majority classes (default the first floor(K/2)); classes with no
  example are left out of the averages.
  """
  hits, counts = np.asarray(hits), np.asarray(counts)
  k = len(counts)
  major = np.zeros(k, bool)
  major[list(range(k // 2)) if majority is None else list(majority)] = True
  present = counts > 0
  per_class = np.where(present, hits / np.maximum(counts, 1), np.nan)

  def avg(mask):
    mask = mask & present
    return float(per_class[mask].mean()) if mask.any() else float("nan")

  return {"ncc_acc": avg(np.ones(k, bool)), "ncc_maj": avg(major), "ncc_min": avg(~major),
          "ncc_per_class": [None if np.isnan(a) else float(a) for a in per_class]}


def geometry_report(embeddings, labels, num_classes: int, *, where=None, reference_means=None,
                    majority=None) -> dict:
  """Every metric of docs/theory.md#metrics for one set of embeddings, as a dict.

  Keys: ``dist_of``, ``dist_etf``, ``nc1``, ``nc1_over_k``, ``mean_cos``,
  ``class_mean_norms``, ``counts``, ``gram`` (G_M), ``angle_values``, and the NCC accuracies
  ``ncc_acc`` (balanced), ``ncc_maj``, ``ncc_min``, ``ncc_per_class``.

  Args:
    embeddings: `[N, d]` (normalised) embeddings.
    labels: `[N]` labels in [0, K).
    num_classes: K.
    where: optional `[N]` mask of rows to use.
    reference_means: class means used for NCC (the train means when evaluating a test set);
      by default the set's own means.
    majority: majority classes for the NCC split (default the first floor(K/2)).
  """
  h, y = _kept(embeddings, labels, where, num_classes)
  means, counts = class_means(h, y, num_classes)
  out = _summary(means, counts, _nc1_from_rows(h, y, means))
  reference = means if reference_means is None else _as_f64(reference_means)
  hits = np.bincount(y[ncc_predict(h, reference) == y], minlength=num_classes)
  out.update(ncc_accuracies(hits, counts, majority=majority))
  return out
