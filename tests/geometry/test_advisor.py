"""The batching advisor against exhaustive enumeration, a plain simulation loop, and hand cases.

References are independent of ``geometry.advisor``: every partition enumerated (or every epoch
of a plain loop) is certified by ``geometry.batching.batch_certificate``, the certificate the
trainer logs.
"""

import itertools
import math

import numpy as np
import pytest

from geometry import advisor, advisor_mc, batching

CONF = 0.999   # intervals in tests: a 1-in-1000 miss rate per comparison


def _blocks(items, size):
  """Every partition of `items` into unordered blocks of `size`."""
  if not items:
    yield []
    return
  first, rest = items[0], items[1:]
  for others in itertools.combinations(rest, size - 1):
    left = [i for i in rest if i not in others]
    for tail in _blocks(left, size):
      yield [[first, *others]] + tail


def all_partitions(n, batch_size):
  """Every drop-last epoch of n examples, each as likely as the others under a uniform
  permutation: (kept batches, dropped examples)."""
  m = n // batch_size
  for dropped in itertools.combinations(range(n), n - m * batch_size):
    kept = [i for i in range(n) if i not in dropped]
    for batches in _blocks(kept, batch_size):
      yield batches, list(dropped)


def _labels(sizes):
  return np.repeat(np.arange(len(sizes)), sizes)


def _with_binding(labels, batches, binding):
  if not binding:
    return batches
  return batching.add_binding(batches, batching.binding_indices(labels, binding))


def enumerate_epoch(sizes, batch_size, views, binding):
  """Exact per-epoch probabilities and the kept-example worst case, by enumeration."""
  y = _labels(sizes)
  k = len(sizes)
  c1 = c2 = both = total = 0
  c1_by_class = np.zeros(k)
  always_on_kept = True
  for batches, dropped in all_partitions(len(y), batch_size):
    batches = _with_binding(y, batches, binding)
    cert = batching.batch_certificate(y, batches, k, views=views)
    ok1 = all(cert["c1_connected"].values())
    ok2 = not cert["c2_pairs_missing"]
    c1, c2, both, total = c1 + ok1, c2 + ok2, both + (ok1 and ok2), total + 1
    c1_by_class += [cert["c1_connected"][c] for c in range(k)]
    # The certificate of the examples the epoch keeps: drop the dropped ones, ignore classes
    # without a row in this epoch.
    rows = np.unique(np.concatenate(batches))
    index = {int(e): i for i, e in enumerate(rows)}
    sub = batching.batch_certificate(y[rows], [[index[int(e)] for e in b] for b in batches], k,
                                     views=views)
    present = set(y[rows].tolist())
    kept_ok = (all(sub["c1_connected"][c] for c in present)
               and all(not (a in present and b in present) for a, b in sub["c2_pairs_missing"]))
    always_on_kept &= kept_ok
  return {"p_c1": c1 / total, "p_c2": c2 / total, "p_of_unique": both / total,
          "p_c1_by_class": list(c1_by_class / total), "guaranteed": always_on_kept}


TINY = [  # (sizes, B): n <= 9, one to four batches, with and without dropped examples
    ([3, 3, 2], 2), ([3, 3, 2], 3), ([3, 3, 2], 4), ([4, 2, 1, 1], 3), ([5, 3], 3),
    ([2, 2, 2, 2], 4), ([4, 3, 2], 4), ([2, 2, 1], 2), ([6, 1, 1], 3), ([3, 2, 2, 1], 2),
    ([5, 1], 4), ([2, 2, 2], 5),
]


@pytest.mark.parametrize("sizes,batch_size", TINY)
def test_exact_probabilities_guarantee_and_binding_needed_equal_enumeration(sizes, batch_size):
  for views in (1, 2):
    guarantees = []
    for binding in range(0, min(min(sizes), 2) + 1):
      truth = enumerate_epoch(sizes, batch_size, views, binding)
      guarantees.append(truth["guaranteed"])
      exact = advisor.exact_epoch_probabilities(sizes, batch_size, views, binding)
      where = (sizes, batch_size, views, binding)
      for key in ("p_c1", "p_c2", "p_of_unique"):
        if exact[key] is not None:
          assert exact[key] == pytest.approx(truth[key], abs=1e-12), (key, where)
      for c, value in enumerate(exact["p_c1_by_class"]):
        if value is not None:
          assert value == pytest.approx(truth["p_c1_by_class"][c], abs=1e-12), (c, where)
      assert advisor.guaranteed(sizes, batch_size, views, binding) == truth["guaranteed"], where
    # binding_needed: the smallest binding under which every partition passes on its kept
    # examples (b >= 2 always does when the smallest class allows it)
    expected = next((b for b, ok in enumerate(guarantees) if ok), None)
    assert advisor.binding_needed(sizes, batch_size, views) == expected, (sizes, views)


@pytest.mark.parametrize("sizes,batch_size,views,binding", [
    ([3, 3, 2], 3, 2, 0), ([4, 3, 2], 4, 1, 0), ([3, 2, 2, 1], 2, 2, 0), ([5, 3], 3, 1, 0),
    ([2, 2, 1], 2, 1, 1), ([4, 2, 1, 1], 3, 1, 1), ([3, 3, 2], 2, 1, 0),
])
def test_monte_carlo_probabilities_contain_enumeration(sizes, batch_size, views, binding):
  truth = enumerate_epoch(sizes, batch_size, views, binding)
  out = advisor.advise(sizes, batch_size, views=views, binding=binding, trials=2000, seed=3,
                       max_epochs=200, confidence=CONF)
  for key in ("p_c1", "p_c2", "p_of_unique"):
    lo, hi = out["intervals"][key]
    assert lo - 1e-12 <= truth[key] <= hi + 1e-12, (key, truth[key], out[key], lo, hi)
  for c, (lo, hi) in enumerate(out["intervals"]["p_c1_by_class"]):
    assert lo - 1e-12 <= truth["p_c1_by_class"][c] <= hi + 1e-12


def _plain_loop(sizes, batch_size, views, binding, seeds, max_epochs=500):
  """The trainer's batching (random_partition(seed, epoch) + add_binding) certified epoch by
  epoch with BatchCertificate: first-epoch C2 and the epoch the union first certifies."""
  y = _labels(sizes)
  c2, epochs = [], []
  for seed in seeds:
    union = batching.BatchCertificate(y, views=views)
    for epoch in range(1, max_epochs + 1):
      batches = _with_binding(y, batching.random_partition(len(y), batch_size, seed, epoch),
                              binding)
      if epoch == 1:
        c2.append(not batching.batch_certificate(y, batches, views=views)["c2_pairs_missing"])
      if union.update(batches).result()["of_unique"]:
        break
    epochs.append(epoch)
  return np.array(c2), np.array(epochs)


@pytest.mark.parametrize("sizes,batch_size,views,binding", [
    ([12, 12, 3, 3], 5, 1, 0), ([16, 16, 4, 3, 2], 6, 2, 0), ([15, 15, 3, 3], 7, 1, 1),
])
def test_monte_carlo_agrees_with_plain_simulation(sizes, batch_size, views, binding):
  c2, epochs = _plain_loop(sizes, batch_size, views, binding, range(200))
  out = advisor.advise(sizes, batch_size, views=views, binding=binding, trials=1000, seed=0,
                       confidence=CONF)
  z = 3.29  # two-sided 0.999
  # two independent estimates of one proportion / mean: their difference within z SE
  p, q = out["p_c2"], c2.mean()
  se = math.sqrt(max(p * (1 - p), 1e-4) / 1000 + max(q * (1 - q), 1e-4) / len(c2))
  assert abs(p - q) <= z * se + 1e-12
  sim = advisor.simulate(sizes, batch_size, views=views, binding=binding, trials=1000, seed=0)
  se = math.sqrt(sim["epochs"].var() / 1000 + epochs.var() / len(epochs))
  assert abs(out["epochs_until_of_unique"]["mean"] - epochs.mean()) <= z * se + 1e-12
  lo, hi = out["intervals"]["epochs_p90"]
  plo, phi = advisor.quantile_interval(epochs, 0.9, CONF)
  assert plo <= hi and lo <= phi   # the two p90 intervals overlap


@pytest.mark.parametrize("sizes,batch_size,views", [([30, 30, 5, 5], 8, 2), ([9, 9, 4], 5, 1)])
def test_exact_epochs_with_binding_agree_with_plain_simulation(sizes, batch_size, views):
  # binding 1: the union certifies once every non-binding example has been kept once
  cdf = advisor.exact_epochs_until_of_unique(sizes, batch_size, views, 1)
  _, epochs = _plain_loop(sizes, batch_size, views, 1, range(400))
  for e in (1, 2, 3):
    lo, hi = advisor.wilson_interval(int(np.sum(epochs <= e)), len(epochs), CONF)
    assert lo <= cdf[e - 1] <= hi, (e, cdf[e - 1], lo, hi)
  out = advisor.advise(sizes, batch_size, views=views, binding=1)
  assert out["methods"]["epochs_until_of_unique"] == "exact"
  assert out["epochs_until_of_unique"]["mean"] == pytest.approx(1 + np.sum(1 - cdf))
  assert abs(out["epochs_until_of_unique"]["mean"] - epochs.mean()) <= 3.29 * epochs.std() / 20


def test_exact_law_cut_short_by_max_epochs_says_a_probability():
  sizes, batch_size, views = [30, 30, 5, 5], 8, 2
  cdf = advisor.exact_epochs_until_of_unique(sizes, batch_size, views, 1, 2)
  assert cdf[-1] < 1   # two epochs do not surely keep every example once
  out = advisor.advise(sizes, batch_size, views=views, binding=1, max_epochs=2)
  until = out["epochs_until_of_unique"]
  assert out["methods"]["epochs_until_of_unique"] == "exact" and until["mean"] is None
  assert until["p_not_by_max_epochs"] == pytest.approx(1 - cdf[-1])
  text = advisor.summary(out)
  assert f"probability {1 - cdf[-1]:.3g} of not by epoch 2" in text and "trials" not in text
  full = advisor.advise(sizes, batch_size, views=views, binding=1)
  assert full["epochs_until_of_unique"]["p_not_by_max_epochs"] == 0.0


@pytest.mark.parametrize("views,binding", [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2)])
def test_vectorised_union_equals_batch_certificate(views, binding):
  sizes, batch_size = [9, 7, 3, 2, 2], 4
  y = _labels(sizes)
  n, trials, k = len(y), 6, len(sizes)
  chunk = advisor_mc._Chunk(sizes, batch_size, views, binding, trials)
  unions = [batching.BatchCertificate(y, k, views=views) for _ in range(trials)]
  for epoch in range(1, 6):
    bins = np.empty((trials, n), np.int64)
    for t in range(trials):
      batches = batching.random_partition(n, batch_size, seed=t, epoch=epoch)
      bins[t] = n // batch_size                      # dropped
      for j, batch in enumerate(batches):
        bins[t, batch] = j
      unions[t].update(_with_binding(y, batches, binding))
    chunk.advance(bins)
    for t in range(trials):
      cert = unions[t].result()
      assert chunk.connected[t].tolist() == [cert["c1_connected"][c] for c in range(k)]
      missing = [[a, b] for a in range(k) for b in range(a + 1, k) if not chunk.tied[t, a, b]]
      assert missing == cert["c2_pairs_missing"]
      assert chunk.certified()[t] == cert["of_unique"]


def test_balanced_classes_with_a_large_batch_nearly_always_satisfy_c2():
  # 4 classes of 50, B = 32 >= 2K: 6 batches. A pair misses C2 only if the two classes never
  # share one of the 6 batches: far below 1 / 1000 per epoch.
  out = advisor.advise([50] * 4, 32, views=2, trials=400, seed=0)
  assert out["p_c2"] == 1.0 and out["intervals"]["p_c2"][0] > 0.99
  assert out["p_of_unique"] == 0.0 and out["methods"]["p_of_unique"] == "exact"   # no binding


def test_singleton_class_with_one_view():
  # [1, 9], B = 3, V = 1: the singleton has no positive of its own; it is tied to class 1
  # exactly when kept (prob. 9/10), since its batch then holds two class-1 rows.
  out = advisor.advise([1, 9], 3, views=1, trials=4000, seed=1, confidence=CONF)
  lo, hi = out["intervals"]["p_c2"]
  assert lo <= 0.9 <= hi
  # Two singleton classes are never tied with V = 1, and no binding can tie them every epoch
  # once two examples are dropped.
  out = advisor.advise([1, 1, 8], 4, views=1, trials=200, seed=0, max_epochs=20)
  assert out["p_c2"] == 0.0 and out["epochs_until_of_unique"]["p90"] is None
  assert advisor.binding_needed([1, 1, 8], 4, views=1) is None
  assert advisor.binding_needed([1, 1, 8], 4, views=2) == 1


def test_binding_one_when_batch_size_divides_n():
  # n = 110, B = 10: nothing is dropped, so binding 1 certifies every epoch.
  for views in (1, 2):
    out = advisor.advise([50, 50, 5, 5], 10, views=views, binding=1)
    assert out["p_c1"] == out["p_c2"] == out["p_of_unique"] == 1.0
    assert out["epochs_until_of_unique"]["mean"] == 1.0 and out["guaranteed"]
  # n = 13, B = 4: one example dropped per epoch; C1 needs it to be one of the 3 binding
  # examples: p = 3/13. Without binding two batches never satisfy both conditions.
  assert advisor.exact_epoch_probabilities([5, 5, 3], 4, 2, 1)["p_c1"] == pytest.approx(3 / 13)
  assert advisor.exact_epoch_probabilities([5, 5, 3], 4, 2, 0)["p_of_unique"] == 0.0


def test_intervals():
  # Wilson interval of 0 / 100 and 50 / 100 at 95% (closed form values)
  assert advisor.wilson_interval(0, 100, 0.95) == pytest.approx([0.0, 0.036995], abs=1e-5)
  assert advisor.wilson_interval(50, 100, 0.95) == pytest.approx([0.40383, 0.59617], abs=1e-5)
  # order-statistic interval of the median of 1..11 at 90%: Binomial(11, 1/2) puts 3.3% below
  # 3 and above 8, so [x_(3), x_(9)]
  assert advisor.quantile_interval(np.arange(1, 12), 0.5, 0.9) == [3, 9]
  lo, hi = advisor.bootstrap_mean_interval(np.arange(100.0), 0.95, seed=0)
  assert lo < 49.5 < hi and hi - lo == pytest.approx(2 * 1.96 * 29.01 / 10, rel=0.15)
