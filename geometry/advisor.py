"""The batching advisor: how likely reshuffled drop-last batches are to satisfy C1/C2.

The model is the trainer's batching (``deepnet/train.py``, ``geometry.batching``): n = sum_c n_c
examples; every epoch a uniform random permutation is cut into m = floor(n / B) batches of B
examples and the last r = n - m B are dropped; with binding b, the first b examples of every
class (themselves ordinary examples too) are appended to every batch; each row is seen in V
views. The certificate is ``geometry.batching.BatchCertificate`` (Theorem 2 of Kini et al.,
ICLR 2024; ``docs/theory.md#c1-c2``):

- C1: each class's co-occurrence graph is connected. A dropped example is an isolated vertex.
- C2: every pair of classes shares a batch in which one of the two has >= 2 rows (V >= 2 makes
  every present class qualify).

What is computed, and how (``docs/batching.md`` has the derivations):

- ``guaranteed`` / ``binding_needed``: worst case over all partitions, closed form.
- ``exact_epoch_probabilities``: the per-epoch probabilities wherever they have a closed form
  (binding b >= 1: the certificate only depends on which r examples are dropped, a uniform
  r-subset, so p_c1 is hypergeometric; b = 0 with m >= 2: p_of_unique = 0; one batch, m = 1).
  Elsewhere ``None``.
- ``exact_epochs_until_of_unique``: with binding (and C2 certain), the law of the epoch the
  union first certifies, from a Markov chain on the non-binding examples never kept so far.
- ``simulate`` (``geometry/advisor_mc.py``): Monte Carlo over independent epochs, vectorised over trials, with an
  incremental union (connected components) over epochs for epochs-until-the-union-holds.
- ``advise``: the exact value where there is one, the Monte Carlo estimate otherwise, each with
  its interval: Wilson for probabilities, a bootstrap percentile interval for the mean and a
  distribution-free order-statistic interval for the 90th percentile of the epochs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Sequence

import numpy as np
from scipy import special, stats

from geometry.advisor_mc import (DEFAULT_MAX_EPOCHS, DEFAULT_TRIALS, check_setup, epoch_shape,
                                 simulate)

CONFIDENCE = 0.95


def guaranteed(sizes: Sequence[int], batch_size: int, views: int, binding: int) -> bool:
  """Whether EVERY drop-last partition satisfies C1 and C2 on the examples it keeps.

  "On the examples it keeps": the r = n mod B dropped examples of an epoch are isolated whatever
  the binding, so no binding can promise the full certificate every epoch when r > 0. The
  guarantee is that the epoch's kept examples (binding rows included) satisfy C1, and every
  pair of classes with a kept row is tied; a dropped example joins its class in the union as
  soon as a later epoch keeps it. With r = 0 this is the full certificate of every epoch.

  With m = n // B batches, r = n mod B and uniform binding b (worst case over partitions):

  - m = 1: C1 always holds (one batch). C2 with V >= 2 too. With V = 1 a pair fails iff both
    classes can be left with one row each: b = 0 needs n_c + n_c' - 2 > r, b = 1 needs
    n_c + n_c' > r (all ordinary examples of both dropped), b >= 2 always ties.
  - m >= 2: C1 needs b >= 1 for any class of >= 2 examples (two of them can be put in two
    batches), and b >= 1 suffices (every kept example shares a batch with z_c). C2: with b >= 1
    every class is in every batch, so V >= 2 ties every pair; with V = 1, b = 1 ties (c, c')
    iff some ordinary example of c or c' is kept, guaranteed iff n_c + n_c' > r; b >= 2 always.
    With b = 0 two singleton classes can be put in two batches, so b = 0 never suffices.
  """
  sizes = check_setup(sizes, batch_size, views, binding)
  m, r = epoch_shape(sizes, batch_size)
  two_smallest = sum(sorted(sizes)[:2])
  if m == 1:
    if views >= 2 or binding >= 2:
      return True
    return two_smallest - (2 if binding == 0 else 0) > r
  if binding == 0:
    return False
  return views >= 2 or binding >= 2 or two_smallest > r


def binding_needed(sizes: Sequence[int], batch_size: int, views: int) -> int | None:
  """The smallest binding per class (as ``--binding`` / ``config.binding`` take it) for which
  every partition satisfies C1/C2 on its kept examples (``guaranteed``); ``None`` when no
  binding up to the smallest class size does (V = 1 with two tiny classes)."""
  for b in range(0, min(min(sizes), 2) + 1):
    if guaranteed(sizes, batch_size, views, b):
      return b
  return None


def _prob_avoid(n: int, r: int, forbidden: int) -> float:
  """P(a uniform r-subset of n items misses `forbidden` given items) = C(n - f, r) / C(n, r)."""
  return math.comb(n - forbidden, r) / math.comb(n, r)   # exact integers, one rounding


def exact_epoch_probabilities(sizes: Sequence[int], batch_size: int, views: int,
                              binding: int) -> dict:
  """Per-epoch probabilities with a closed form; ``None`` where Monte Carlo is needed.

  Keys ``p_c1``, ``p_c2``, ``p_of_unique`` and ``p_c1_by_class`` (a list, entries may be None).
  With m batches, r dropped, uniform binding b:

  - b >= 1: class c is connected iff none of its n_c - b non-binding examples is dropped, and
    the dropped set is a uniform r-subset, so P(C1_c) = C(n - n_c + b, r) / C(n, r) and
    P(C1) = C(K b, r) / C(n, r). C2 is certain for V >= 2 or b >= 2 (every class is in every
    batch), and for V = 1, b = 1 when any two classes together exceed r; then
    p_of_unique = p_c1. When B divides n, all three are 1.
  - b = 0, m >= 2: p_of_unique = 0 (C1 puts each class of >= 2 examples in one batch, C2 then
    puts every class in the same batch, which cannot hold n > B examples); P(C1_c) = 0 when
    n_c > B and 1 when n_c = 1.
  - b = 0, m = 1: class c (n_c >= 2) is connected iff none of its examples is dropped; C2 is
    certain when no class can lose all its examples (every n_c > r) and, for V = 1, no two
    classes can both be left with one row (n_c + n_c' - 2 > r); p_of_unique is 1 if r = 0
    (and, for V = 1, at most one singleton class), else 0.
  """
  sizes = check_setup(sizes, batch_size, views, binding)
  n, k = sum(sizes), len(sizes)
  m, r = epoch_shape(sizes, batch_size)
  two_smallest = sum(sorted(sizes)[:2])
  out = {"p_c1": None, "p_c2": None, "p_of_unique": None, "p_c1_by_class": [None] * k}
  if binding >= 1:
    out["p_c1_by_class"] = [_prob_avoid(n, r, s - binding) for s in sizes]
    out["p_c1"] = _prob_avoid(n, r, n - k * binding)
    if views >= 2 or binding >= 2 or two_smallest > r:
      out["p_c2"] = 1.0
      out["p_of_unique"] = out["p_c1"]
    return out
  if m >= 2:
    out["p_c1_by_class"] = [1.0 if s == 1 else 0.0 if s > batch_size else None for s in sizes]
    if any(s > batch_size for s in sizes):
      out["p_c1"] = 0.0
    elif all(s == 1 for s in sizes):
      out["p_c1"] = 1.0
    out["p_of_unique"] = 0.0
    return out
  out["p_c1_by_class"] = [1.0 if s == 1 else _prob_avoid(n, r, s) for s in sizes]
  out["p_c1"] = _prob_avoid(n, r, sum(s for s in sizes if s >= 2))
  if min(sizes) > r and (views >= 2 or two_smallest - 2 > r):
    out["p_c2"] = 1.0
  singletons = sum(s == 1 for s in sizes)
  out["p_of_unique"] = float(r == 0 and (views >= 2 or singletons <= 1))
  return out


def _hypergeom_pmf(hits, total, marked, draws):
  """P(`hits` marked items among `draws` drawn without replacement from `total` of which
  `marked` are marked), elementwise, through log-binomials."""
  hits, marked = np.broadcast_arrays(np.asarray(hits, np.float64), np.asarray(marked, np.float64))
  ok = (hits <= marked) & (draws - hits <= total - marked) & (hits <= draws)
  h, m = np.where(ok, hits, 0), np.where(ok, marked, 0)

  def log_comb(a, b):
    return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)

  logp = log_comb(m, h) + log_comb(total - m, draws - h) - log_comb(total, draws)
  return np.where(ok, np.exp(logp), 0.0)


def exact_epochs_until_of_unique(sizes: Sequence[int], batch_size: int, views: int,
                                 binding: int, max_epochs: int = DEFAULT_MAX_EPOCHS,
                                 tail: float = 1e-12) -> np.ndarray | None:
  """P(T <= E) for E = 1, 2, ..., T the first epoch whose union certifies; None unless exact.

  Exact when b >= 1 and C2 holds every epoch (``exact_epoch_probabilities`` gives p_c2 = 1):
  the union then certifies once each of the U = n - K b non-binding examples has been kept in
  some epoch. X_E, the number of them dropped in every epoch so far, is a Markov chain: X_1 ~
  Hypergeometric(n, U, r) and X_{E+1} | X_E = x ~ Hypergeometric(n, x, r) (the x still missing
  that the next epoch's r dropped examples hit again); P(T <= E) = P(X_E = 0). The returned
  array stops at the first E with P(T <= E) >= 1 - `tail`, or at `max_epochs`. Also exact
  (T = 1) whenever ``p_of_unique`` is exactly 1.
  """
  sizes = check_setup(sizes, batch_size, views, binding)
  exact = exact_epoch_probabilities(sizes, batch_size, views, binding)
  if exact["p_of_unique"] == 1.0:
    return np.ones(1)          # every epoch certifies
  if binding < 1 or exact["p_c2"] != 1.0:
    return None
  n, k = sum(sizes), len(sizes)
  _, r = epoch_shape(sizes, batch_size)
  top = min(n - k * binding, r)
  states = np.arange(top + 1)
  step = _hypergeom_pmf(states[None, :], n, states[:, None], r)       # [x, x']
  step /= step.sum(1, keepdims=True)    # rows are distributions; state 0 stays 0 exactly
  dist = _hypergeom_pmf(states, n, n - k * binding, r)
  dist /= dist.sum()
  cdf = []
  for _ in range(max_epochs):
    cdf.append(float(dist[0]))
    if cdf[-1] >= 1 - tail:
      break
    dist = dist @ step
  return np.asarray(cdf)


# -- intervals -----------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> list:
  """Wilson score interval of a binomial proportion."""
  z = stats.norm.ppf(0.5 + confidence / 2)
  p = successes / trials
  denom = 1 + z * z / trials
  centre = (p + z * z / (2 * trials)) / denom
  half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
  lo = 0.0 if successes == 0 else max(0.0, centre - half)
  hi = 1.0 if successes == trials else min(1.0, centre + half)
  return [float(lo), float(hi)]


def quantile_interval(values: np.ndarray, q: float, confidence: float = CONFIDENCE) -> list:
  """Distribution-free interval [x_(l), x_(u)] for the q-quantile from order statistics:
  the number of samples below the quantile is Binomial(T, q), so l and u are its
  (1 -/+ confidence)/2 quantiles (clipped to the sample)."""
  x = np.sort(values)
  t = len(x)
  lo = int(stats.binom.ppf((1 - confidence) / 2, t, q))
  hi = int(stats.binom.ppf((1 + confidence) / 2, t, q)) + 1
  return [int(x[max(lo, 1) - 1]), int(x[min(hi, t) - 1])]


def bootstrap_mean_interval(values: np.ndarray, confidence: float = CONFIDENCE,
                            resamples: int = 2000, seed: int = 0) -> list:
  """Percentile bootstrap interval of the mean."""
  rng = np.random.default_rng(seed)
  values = np.asarray(values, np.float64)
  means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(1)
  return [float(np.quantile(means, (1 - confidence) / 2)),
          float(np.quantile(means, (1 + confidence) / 2))]


# -- the advice ----------------------------------------------------------------------------


def _estimate(exact, hits: np.ndarray, confidence: float):
  if exact is not None:
    return float(exact), [float(exact), float(exact)], "exact"
  k = int(np.sum(hits))
  return k / len(hits), wilson_interval(k, len(hits), confidence), "monte_carlo"


def advise(sizes: Sequence[int], batch_size: int, *, views: int = 2, binding: int = 0,
           trials: int = DEFAULT_TRIALS, seed: int = 0, max_epochs: int = DEFAULT_MAX_EPOCHS,
           confidence: float = CONFIDENCE) -> dict:
  """Everything the advisor knows about one batching set-up, as a JSON-ready dict.

  ``p_c1``, ``p_c2``, ``p_of_unique``: probabilities that one reshuffled drop-last epoch
  satisfies C1, C2, both (exact where ``exact_epoch_probabilities`` has a closed form, else
  Monte Carlo over `trials` epochs); ``epochs_until_of_unique``: mean and 90th percentile of the
  first epoch whose union of batches satisfies both (1 = the first epoch); ``binding_needed``;
  ``intervals`` and ``methods`` for every estimate.
  """
  sizes = check_setup(sizes, batch_size, views, binding)
  m, r = epoch_shape(sizes, batch_size)
  exact = exact_epoch_probabilities(sizes, batch_size, views, binding)
  cdf = exact_epochs_until_of_unique(sizes, batch_size, views, binding, max_epochs)
  # With an exact law of the epochs every per-epoch number is exact too: nothing to sample.
  sim = None if cdf is not None else simulate(
      sizes, batch_size, views=views, binding=binding, trials=trials, seed=seed,
      max_epochs=max_epochs)
  out = {"sizes": sizes, "batch_size": batch_size, "views": views, "binding": binding,
         "num_batches": m, "dropped_per_epoch": r, "trials": trials, "seed": seed,
         "confidence": confidence}
  intervals, methods = {}, {}
  for key, hits in (("p_c1", "c1"), ("p_c2", "c2"), ("p_of_unique", None)):
    hits = None if sim is None else sim["c1"] & sim["c2"] if hits is None else sim[hits]
    out[key], intervals[key], methods[key] = _estimate(exact[key], hits, confidence)
  by_class = [_estimate(e, None if sim is None else sim["c1_by_class"][:, c], confidence)
              for c, e in enumerate(exact["p_c1_by_class"])]
  out["p_c1_by_class"] = [v for v, _, _ in by_class]
  intervals["p_c1_by_class"] = [i for _, i, _ in by_class]

  until = {"max_epochs": max_epochs, "censored": 0}
  if cdf is not None:
    def quantile(q):   # the first epoch with P(T <= E) >= q
      hit = np.flatnonzero(cdf >= q - 1e-12)
      return int(hit[0]) + 1 if len(hit) else None

    converged = cdf[-1] >= 1 - 1e-12
    mean = 1.0 + float(np.sum(1.0 - cdf)) if converged else None
    # No trials are simulated: what is left beyond max_epochs is a probability, not a count.
    until.update(mean=mean, p10=quantile(0.1), median=quantile(0.5), p90=quantile(0.9),
                 min=int(np.flatnonzero(cdf > 0)[0]) + 1 if cdf[-1] > 0 else None,
                 max=len(cdf) if converged else None,
                 p_not_by_max_epochs=0.0 if converged else float(1.0 - cdf[-1]))
    intervals["epochs_mean"] = None if mean is None else [mean, mean]
    intervals["epochs_p90"] = [until["p90"], until["p90"]]
    methods["epochs_until_of_unique"] = "exact"
  else:
    epochs = sim["epochs"]
    censored = until["censored"] = int(np.sum(epochs > max_epochs))

    def quantile(q):   # None when beyond the simulated epochs
      value = int(np.quantile(epochs, q, method="inverted_cdf"))
      return None if value > max_epochs else value

    until.update(mean=None if censored else float(epochs.mean()), p10=quantile(0.1),
                 median=quantile(0.5), p90=quantile(0.9), min=int(epochs.min()),
                 max=int(epochs.max()))
    intervals["epochs_mean"] = None if censored else bootstrap_mean_interval(
        epochs, confidence, seed=seed)
    intervals["epochs_p90"] = quantile_interval(epochs, 0.9, confidence)
    methods["epochs_until_of_unique"] = "monte_carlo"
  out["epochs_until_of_unique"] = until
  out["binding_needed"] = binding_needed(sizes, batch_size, views)
  out["guaranteed"] = guaranteed(sizes, batch_size, views, binding)
  out["intervals"], out["methods"] = intervals, methods
  return out


def summary(advice: dict) -> str:
  """A few human lines about an `advise` result."""
  iv = advice["intervals"]
  until = advice["epochs_until_of_unique"]
  pct = int(round(100 * advice["confidence"]))

  def prob(key):
    lo, hi = iv[key]
    return f"{advice[key]:.4g}" + ("" if lo == hi else f" [{lo:.3g}, {hi:.3g}]")

  mean = "n/a" if until["mean"] is None else f"{until['mean']:.3g}"
  if "p_not_by_max_epochs" in until:   # the exact law
    beyond = (f"exact; probability {until['p_not_by_max_epochs']:.3g} of not by epoch "
              f"{until['max_epochs']}")
  else:
    beyond = (f"{until['censored']} of {advice['trials']} trials not by epoch "
              f"{until['max_epochs']}")
  p90 = f">{until['max_epochs']}" if until["p90"] is None else str(until["p90"])
  needed = ("no binding suffices" if advice["binding_needed"] is None
            else f"binding {advice['binding_needed']} per class")
  return "\n".join([
      f"ufm advise: n={sum(advice['sizes'])} in K={len(advice['sizes'])} classes, B="
      f"{advice['batch_size']} ({advice['num_batches']} batch"
      f"{'es' if advice['num_batches'] != 1 else ''}, {advice['dropped_per_epoch']} "
      f"dropped per epoch), V={advice['views']}, binding {advice['binding']}",
      f"  one epoch ({pct}% intervals): p_c1 {prob('p_c1')}, p_c2 {prob('p_c2')}, "
      f"p_of_unique {prob('p_of_unique')}",
      f"  epochs until the union satisfies C1/C2: mean {mean}, p90 {p90} ({beyond})",
      f"  every partition satisfies C1/C2 on its kept examples with {needed}"])


def advice_for_training(class_sizes: Sequence[int], batch_size: int, *, views: int,
                        binding: int, batching: str, seed: int, num_epochs: int,
                        trials: int = 100) -> dict | None:
  """The advice for a training run's own batching, as the trainer logs it in ``run.json``.

  Epochs are simulated up to the run's ``num_epochs`` (``censored`` counts the simulated runs
  whose union would not certify within it). ``None`` unless the batching is reshuffled
  (``"shuffle"``): a fixed partition is certified once, by the trainer itself; ``None`` too when
  a class is empty (no pair with it is ever tied, so the union never certifies).
  """
  if batching != "shuffle" or min(class_sizes) < 1:
    return None
  advice = advise(class_sizes, batch_size, views=min(int(views), 2), binding=binding,
                  trials=trials, seed=seed, max_epochs=num_epochs)
  advice.pop("sizes")   # run.json has class_sizes
  return advice


# Where `cached_advice_for_training` keeps its answers: $SCL_ADVICE_CACHE_DIR, else
# $XDG_CACHE_HOME/scl-geometry/advice, else ~/.cache/scl-geometry/advice.
ADVICE_CACHE_ENV = "SCL_ADVICE_CACHE_DIR"


def advice_cache_dir() -> str:
  """The folder of the advice cache, as an absolute path (see ``ADVICE_CACHE_ENV``)."""
  chosen = os.environ.get(ADVICE_CACHE_ENV)
  if not chosen:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    chosen = os.path.join(root, "scl-geometry", "advice")
  return os.path.abspath(os.path.expanduser(chosen))


def cached_advice_for_training(class_sizes: Sequence[int], batch_size: int, *, views: int,
                               binding: int, batching: str, seed: int, num_epochs: int,
                               trials: int = 100, cache_dir: str | None = None) -> dict | None:
  """`advice_for_training`, computed once per setting and then read back from a JSON file.

  The Monte Carlo behind the advice takes up to tens of seconds, and a sweep or a resumed run
  asks for the same setting again; the answer is a pure function of the arguments (the
  simulation is seeded), so it is stored under a key made of all of them and of this code's
  version. A cache file that cannot be read is recomputed; one that cannot be written only
  costs the saving.
  """
  from geometry import _version, runfiles  # pylint: disable=g-import-not-at-top
  key = {"class_sizes": [int(s) for s in class_sizes], "batch_size": int(batch_size),
         "views": int(views), "binding": int(binding), "batching": str(batching),
         "seed": int(seed), "num_epochs": int(num_epochs), "trials": int(trials),
         "version": _version.__version__}
  text = json.dumps(key, sort_keys=True)
  folder = cache_dir or advice_cache_dir()
  path = os.path.join(folder, hashlib.sha256(text.encode()).hexdigest()[:24] + ".json")
  try:
    stored = runfiles.read_json(path)
    if isinstance(stored, dict) and stored.get("key") == key and "advice" in stored:
      return stored["advice"]
  except ValueError:
    pass
  advice = advice_for_training(key["class_sizes"], key["batch_size"], views=key["views"],
                               binding=key["binding"], batching=key["batching"],
                               seed=key["seed"], num_epochs=key["num_epochs"], trials=trials)
  try:
    os.makedirs(folder, exist_ok=True)
    runfiles.write_json(path, {"key": key, "advice": advice})
  except OSError:
    pass
  return runfiles.to_json(advice)
