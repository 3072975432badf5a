"""The final phase's stopping and saddle-check rule (`ufm.policy`), on hand-made numbers.

No JAX: the rule is host-side arithmetic on per-seed losses and projected-gradient norms.
"""

import numpy as np
import pytest

from ufm import policy as policy_lib

BOUND = 100.0


def _policy(**kwargs):
  args = dict(tol=1e-6, base_lr=1e-2, kicks=True, certifiable=True, kick_chunks=2)
  args.update(kwargs)
  return policy_lib.StallPolicy(2, **args)


def test_certified_means_within_the_tolerance_of_the_bound():
  got = policy_lib.certified([100.0, 100.0 + 5e-8, 100.0 + 2e-7, np.nan], BOUND, 1e-7)
  np.testing.assert_array_equal(got, [True, True, False, False])
  assert not policy_lib.certified([1.0], None, 1e-7).any()
  # rtol * (|L*| + anchors / tau) = 1e-6 * (200 + 100 / 0.1)
  assert policy_lib.certificate_tolerance(-200.0, 100, 0.1, 1e-6) == pytest.approx(1.2e-3)


def test_a_certified_stall_stops_and_an_uncertified_one_kicks():
  p = _policy()
  # Seed 0 sits at the bound, seed 1 at a stationary point 1.0 above it.
  loss, pg = np.array([BOUND, BOUND + 1.0]), np.array([1e-8, 1e-8])
  p.update(loss, pg, BOUND, 1e-7)            # first measurement: no relative change yet
  d = p.update(loss, pg, BOUND, 1e-7)        # the same numbers again: both stall
  np.testing.assert_array_equal(p.converged, [True, False])
  np.testing.assert_array_equal(p.active, [False, True])
  np.testing.assert_array_equal(d.kick, [False, True])
  assert d.targeted[1]                 # the first kick moves only the worst classes
  np.testing.assert_array_equal(p.best["certified"], [True, False])
  # The kick's remaining chunks inject noise, then the seed stalls at the same point again:
  # with a certificate it is never accepted, however many kicks fail.
  for _ in range(20):
    noisy, level, _ = p.noise_plan()
    d = p.update(loss, pg, BOUND, 1e-7)
    assert p.active[1] and not p.converged[1]
  assert p.checks[1] >= 5


def test_the_returned_point_is_the_lowest_measured_one():
  p = _policy(certifiable=False, kicks=False)
  p.update(np.array([10.0, 10.0]), np.array([1.0, 1.0]))
  d = p.update(np.array([9.0, 11.0]), np.array([0.5, 2.0]))
  np.testing.assert_array_equal(d.take, [True, False])
  np.testing.assert_allclose(p.best["loss"], [9.0, 10.0])
  np.testing.assert_allclose(p.best["pg"], [0.5, 1.0])


def test_a_stop_above_an_earlier_lower_point_is_not_reported_converged():
  p = _policy(certifiable=False, kicks=False)
  p.update(np.array([5.0, 5.0]), np.array([1.0, 1.0]))
  p.update(np.array([6.0, 5.0]), np.array([1e-9, 1e-9]))
  p.update(np.array([6.0, 5.0]), np.array([1e-9, 1e-9]))   # both stall and stop
  np.testing.assert_array_equal(p.active, [False, False])
  # Seed 0 stopped at 6 but returns the point measured at 5, where the rule did not hold.
  np.testing.assert_array_equal(p.converged, [False, True])
  np.testing.assert_allclose(p.best["loss"], [5.0, 5.0])


def test_without_a_certificate_a_stall_is_accepted_after_failed_kicks():
  p = _policy(certifiable=False, max_failures=2, max_checks=8)
  loss, pg = np.array([7.0, 7.0]), np.array([1e-9, 1e-9])
  p.update(loss, pg)
  kicks = 0
  for _ in range(40):
    p.noise_plan()
    d = p.update(loss, pg)
    kicks += int(d.kick[0])
    if not p.active[0]:
      break
  assert not p.active[0] and p.converged[0]
  assert kicks == 2                    # the first stall and one more: then 2 failures
  assert not d.targeted.any()


def test_a_chunk_that_increases_the_objective_halves_the_step_size():
  p = _policy(certifiable=False, kicks=False)
  p.update(np.array([10.0, 10.0]), np.array([1.0, 1.0]))
  p.update(np.array([10.5, 9.0]), np.array([1.0, 1.0]))
  np.testing.assert_allclose(p.lr, [5e-3, 1e-2])


def test_ce_stops_on_settled_geometry_although_g_stays_above_tol():
  p = _policy(certifiable=False, kicks=False)
  loss, pg = np.array([3.0, 3.0]), np.array([1e-3, 1e-3])
  p.update(loss, pg, settled=np.array([False, False]))
  p.update(loss, pg, settled=np.array([True, False]))
  np.testing.assert_array_equal(p.converged, [True, False])
  np.testing.assert_array_equal(p.active, [False, True])


def test_a_chunk_that_closes_much_of_the_gap_is_progress_not_a_stall():
  # L = 1e5 + gap: a relative change of 1e-6 (tol) is 0.1, which is 50% of a gap of 0.2 but
  # 1% of a gap of 10. The first seed is still descending towards the bound; the second sits
  # at a spurious point whose chunk barely moved it.
  p = _policy(tol=1e-6)
  bound = 1e5
  p.update(np.array([bound + 0.2, bound + 10.0]), np.array([1e-3, 1e-3]), bound, 1e-6)
  d = p.update(np.array([bound + 0.1, bound + 9.9]), np.array([1e-3, 1e-3]), bound, 1e-6)
  np.testing.assert_array_equal(d.kick, [False, True])
  np.testing.assert_array_equal(p.active, [True, True])
  assert p.lr[0] == pytest.approx(1e-2)     # no step-size halving for a descending seed
