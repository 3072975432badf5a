r"""An independent float64 reference for the UFM / UFM+ SCL minima: NumPy + scipy L-BFGS.

Written from the loss definition (docs/theory.md#scl-loss), sharing no code with `geometry` or
`ufm`: for a batch B, with z_il = h_i . h_l / tau and P(i) = {j in B, j != i, y_j = y_i},

    L_B = sum_{i in B, |P(i)| > 0} [ -(1/|P(i)|) sum_{j in P(i)} z_ij + log sum_{l in B, l != i} e^{z_il} ],

and the objective is the sum over the batches (one batch of all rows for full batch). Its
gradient is dL/dH = (A + A^T) H / tau with A_il = softmax_i(z)_l - [l in P(i)] / |P(i)|
(A_ii = 0, rows of anchors without a positive zero).

The feasible set is parametrised without constraints: h = v / ||v|| (UFM, the product of unit
spheres) or h = v**2 / ||v**2|| (UFM+, also non-negative). L-BFGS runs from many random starts
v ~ N(0, 1); `minimize` returns the lowest end point and the largest *feasible-set* gradient
norm over the returned point's rows (the tangent part of dL/dH, clipped to the cone of the
orthant at zero entries for UFM+), which the tests bound.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize


def loss_and_grad(h: np.ndarray, labels: np.ndarray, tau: float, batches=None):
  """The sum-form SCL objective over `batches` (index arrays; None: full batch) and dL/dH."""
  batches = [np.arange(len(labels))] if batches is None else batches
  total, grad = 0.0, np.zeros_like(h)
  for b in batches:
    hb, y = h[b], labels[b]
    z = hb @ hb.T / tau
    np.fill_diagonal(z, -np.inf)
    pos = (y[:, None] == y[None, :]) & ~np.eye(len(b), dtype=bool)
    count = pos.sum(axis=1)
    anchor = count > 0
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    lse = np.log(e.sum(axis=1)) + top[:, 0]
    mean_pos = np.where(pos, z, 0.0).sum(axis=1) / np.maximum(count, 1)
    total += float(np.sum((lse - mean_pos)[anchor]))
    a = e / e.sum(axis=1, keepdims=True) - pos / np.maximum(count, 1)[:, None]
    a[~anchor] = 0.0
    grad[b] += (a + a.T) @ hb / tau
  return total, grad


def feasible_grad_norm(h: np.ndarray, grad: np.ndarray, relu: bool, zero: float = 1e-6) -> float:
  """Largest row norm of the gradient projected onto the tangent cone of the feasible set.

  Under UFM+ an entry below `zero` counts as on the orthant's boundary (h = v**2 / ||v**2||
  reaches 0 only in the limit v -> 0), where only a negative component (one that a descent
  step would follow into the interior) is kept."""
  g = grad - np.sum(grad * h, axis=1, keepdims=True) * h
  if relu:
    g = np.where(h > zero, g, np.minimum(g, 0.0))
  return float(np.linalg.norm(g, axis=1).max())


def _rows(v: np.ndarray, relu: bool):
  u = v ** 2 if relu else v
  norm = np.linalg.norm(u, axis=1, keepdims=True)
  return u / norm, norm


def minimize(labels, dim: int, tau: float, *, relu: bool, batches=None, starts: int = 8,
             seed: int = 0, gtol: float = 1e-10):
  """Lowest end point over `starts` L-BFGS runs: (loss, H, feasible gradient norm there)."""
  labels = np.asarray(labels)
  n = len(labels)
  rng = np.random.default_rng(seed)

  def fun(x):
    v = x.reshape(n, dim)
    h, norm = _rows(v, relu)
    value, g = loss_and_grad(h, labels, tau, batches)
    du = (g - np.sum(g * h, axis=1, keepdims=True) * h) / norm
    dv = 2 * v * du if relu else du
    return value, dv.ravel()

  best = None
  for _ in range(starts):
    res = scipy.optimize.minimize(fun, rng.standard_normal(n * dim), jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=20000, gtol=gtol, ftol=1e-15))
    if best is None or res.fun < best.fun:
      best = res
  h, _ = _rows(best.x.reshape(n, dim), relu)
  if relu:
    # Repeated: setting entries to 0 moves the others' tangent gradients, and an entry that a
    # first pass left (its gradient then pointing inwards) can head for 0 at the new point.
    for _ in range(5):
      snapped = _snap_to_boundary(h, loss_and_grad(h, labels, tau, batches)[1])
      if np.array_equal(snapped == 0, h == 0):
        break
      h = snapped
  value, g = loss_and_grad(h, labels, tau, batches)
  return value, h, feasible_grad_norm(h, g, relu)


def _snap_to_boundary(h: np.ndarray, grad: np.ndarray, small: float = 1e-4) -> np.ndarray:
  """UFM+: the entries that head for 0 (small, with a tangent gradient that pushes them down)
  set to 0 and the rows renormalised. Under h = v**2 such an entry only decays like 1/t, so
  L-BFGS stops (on the objective's relative change) while it is still ~1e-6; setting it to
  the limit it approaches identifies the active constraints, as a KKT check needs."""
  g = grad - np.sum(grad * h, axis=1, keepdims=True) * h
  h = np.where((h < small) & (g > 0), 0.0, h)
  return h / np.linalg.norm(h, axis=1, keepdims=True)


def class_mean_cosines(h: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Cosines between the class means (invariant under rotations of H)."""
  means = np.stack([h[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)])
  means = means / np.linalg.norm(means, axis=1, keepdims=True)
  return means @ means.T
