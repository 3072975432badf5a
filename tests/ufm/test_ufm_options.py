"""Solver options validate themselves; the phase plan and the class cut of the warm-up.

Expected values are written out by hand from the rules in docs/solver.md "Phases".
"""

import numpy as np
import pytest

from ufm import options as options_lib
from ufm import problem as problem_lib
from ufm import solver as solver_lib
from ufm.problem import ProblemError


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "--steps must be >= 1"),
    (dict(seeds=0), "--seeds must be >= 1"),
    (dict(block_size=0), "--block-size must be >= 1"),
    (dict(tol=float("nan")), "--tol must be a finite number > 0"),
    (dict(learning_rate=-1.0), "--lr must be a finite number > 0"),
])
def test_bad_options_are_refused_when_built(kwargs, message):
  with pytest.raises(ProblemError, match=message):
    options_lib.SolverOptions(**kwargs)


def test_the_seed_range_is_checked_against_the_largest_seed():
  options = options_lib.SolverOptions(seeds=3)
  options.check_seeds(problem_lib.SEED_MAX - 2)           # seeds MAX-2, MAX-1, MAX: fine
  with pytest.raises(ProblemError, match="must lie in"):
    options.check_seeds(problem_lib.SEED_MAX - 1)


def test_the_warm_up_is_a_cut_solve_only_with_a_class_above_warmup_rows():
  options = options_lib.SolverOptions(steps=8000)
  big = problem_lib.make_problem(sizes=[100, 40, 1], dim=3)
  plan = options_lib.continuation_phases(big, options)
  assert [(p.rows, p.steps, p.final) for p in plan] == [(32, 4000, False), (0, 4000, True)]
  small = problem_lib.make_problem(sizes=[32, 3], dim=2)
  plan = options_lib.continuation_phases(small, options)
  assert [(p.rows, p.steps, p.final) for p in plan] == [(0, 1500, False), (0, 6500, True)]
  # Mini-batches warm up on their own schedule, never on a cut.
  batched = problem_lib.make_problem(sizes=[100, 40], dim=2, batching="fixed:20")
  assert [p.rows for p in options_lib.continuation_phases(batched, options)] == [0, 0]
  # No warm-up at all without continuation or without ReLU.
  for problem, opts in ((big, options_lib.SolverOptions(continuation=False)),
                        (problem_lib.make_problem(sizes=[100, 40], dim=2, final_relu=False), options)):
    assert [p.final for p in options_lib.continuation_phases(problem, opts)] == [True]


def test_the_cut_keeps_the_first_rows_of_each_class_and_the_lift_copies_them_in_turn():
  labels = np.array([1, 0, 0, 1, 0, 1, 1, 0, 0])
  kept = solver_lib._cut(labels, 2)
  # The first two rows of class 0 (rows 1, 2), then of class 1 (rows 0, 3).
  np.testing.assert_array_equal(kept, [1, 2, 0, 3])
  source = solver_lib._copies(labels, kept)
  # Class 0's rows 1, 2, 4, 7, 8 take kept positions 0, 1, 0, 1, 0; class 1's rows 0, 3, 5, 6
  # take positions 2, 3, 2, 3.
  np.testing.assert_array_equal(source, [2, 0, 1, 3, 0, 2, 3, 1, 0])
  np.testing.assert_array_equal(labels[kept][source], labels)


def test_by_default_no_phase_adds_a_term_to_the_objective():
  # docs/solver.md "What the solver optimises": the default warm-up and kicks add no reward.
  options = options_lib.SolverOptions()
  assert options.sparsity == 0.0 and options.kick_sparsity == 0.0
  for sizes in ([100, 40, 1], [32, 3]):
    problem = problem_lib.make_problem(sizes=sizes, dim=3)
    assert [p.sparsity for p in options_lib.continuation_phases(problem, options)] == [0.0, 0.0]
    statement = options_lib.objective_statement(problem, options)
    assert statement["added_terms"] == []
    assert statement["warmup_sparsity"] == 0.0 and statement["kick_sparsity"] == 0.0


def test_a_reward_is_stated_when_it_is_on():
  problem = problem_lib.make_problem(sizes=[32, 3], dim=2)
  on = options_lib.SolverOptions(sparsity=0.3, kick_sparsity=0.2)
  statement = options_lib.objective_statement(problem, on)
  assert len(statement["added_terms"]) == 2
  assert "0.3" in statement["added_terms"][0] and "0.2" in statement["added_terms"][1]
  # Without continuation there is no warm-up, so only the kicks' reward remains.
  off = options_lib.SolverOptions(sparsity=0.3, kick_sparsity=0.2, continuation=False)
  statement = options_lib.objective_statement(problem, off)
  assert statement["warmup_anchor_weights"] is None and statement["warmup_sparsity"] == 0.0
  assert len(statement["added_terms"]) == 1
  # The UFM without ReLU has neither.
  plain = problem_lib.make_problem(sizes=[32, 3], dim=2, final_relu=False)
  assert options_lib.objective_statement(plain, on)["added_terms"] == []
