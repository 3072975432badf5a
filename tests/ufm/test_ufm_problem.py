"""Problem construction and validation (no JAX needed)."""

import json

import numpy as np
import pytest

from ufm import problem as problem_lib
from ufm.problem import ProblemError

C1_FILE = "experiments/schedules/c1_violation.json"


def test_sizes_from_recipes_match_paper_counts():
  # docs/theory.md#ref-class-counts (n_max = 5000, K = 10).
  assert problem_lib.sizes_from_recipe(10, "step:10", 5000) == [5000] * 5 + [500] * 5
  assert problem_lib.sizes_from_recipe(10, "exp:100", 5000) == [
      5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
  assert problem_lib.sizes_from_recipe(4, "none", 7) == [7, 7, 7, 7]


def test_labels_are_ordered_by_class():
  p = problem_lib.make_problem(sizes=[3, 1, 2], dim=3)
  np.testing.assert_array_equal(p.labels, [0, 0, 0, 1, 2, 2])
  assert p.sizes == [3, 1, 2] and p.full_batch


def test_of_loss_full_batch_is_theorem_1():
  # docs/theory.md#ref-thm1: K = 4, n = (10, 10, 2, 2), tau = 1 -> 61.824906.
  p = problem_lib.make_problem(sizes=[10, 10, 2, 2], dim=8, temperature=1.0)
  assert p.of_loss() == pytest.approx(61.824906, abs=1e-6)


def test_schedule_file_and_binding_bounds():
  # docs/theory.md#ref-c1, #ref-binding: the C1-violating batches, and the same with one binding row per class.
  p = problem_lib.make_problem(dim=8, temperature=1.0, batching=f"fixed:{C1_FILE}")
  assert p.sizes == [4, 4, 4] and p.kind == "file"
  assert p.of_loss() == pytest.approx(6.617337, abs=1e-6)
  pb = problem_lib.make_problem(dim=8, temperature=1.0, batching=f"fixed:{C1_FILE}", binding=1)
  batches = pb.epoch_batches(0)
  assert [len(b) for b in batches] == [7, 7, 7]
  assert pb.of_loss() == pytest.approx(22.402654, abs=1e-6)


def test_shuffle_schedule_changes_per_epoch_fixed_does_not():
  shuffle = problem_lib.make_problem(sizes=[6, 6], dim=2, batching="shuffle:4")
  fixed = problem_lib.make_problem(sizes=[6, 6], dim=2, batching="fixed:4")
  assert len(shuffle.epoch_batches(0)) == 3  # 12 // 4, drop-last
  assert any(not np.array_equal(a, b)
             for a, b in zip(shuffle.epoch_batches(0), shuffle.epoch_batches(1)))
  for a, b in zip(fixed.epoch_batches(0), fixed.epoch_batches(5)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(sizes=[5, 5, 5], dim=2), "d >= K"),
    (dict(sizes=[5, 5], dim=2, temperature=0.0), "--temperature"),
    (dict(sizes=[5, 5], dim=2, temperature=-1.0), "--temperature"),
    (dict(sizes=[5, 5], dim=2, temperature=float("nan")), "--temperature"),
    (dict(sizes=[5, 5], dim=2, temperature=float("inf")), "--temperature"),
    (dict(sizes=[5], dim=2), "at least 2 classes"),
    (dict(sizes=[5, 0], dim=2), "positive"),
    (dict(sizes=[5, -1], dim=2), "positive"),
    (dict(sizes=[5, 5], dim=2, binding=-1), "--binding"),
    (dict(sizes=[5, 1], dim=2, binding=2), "--binding"),
    (dict(sizes=[5, 5], dim=2, batching="shuffle:1"), "batch size"),
    (dict(sizes=[5, 5], dim=2, batching="fixed:0"), "batch size"),
    (dict(sizes=[5, 5], dim=2, batching="fixed:11"), "exceeds"),
    (dict(sizes=[5, 5], dim=2, batching="minibatch"), "--batching"),
])
def test_bad_inputs_raise_problem_error(kwargs, fragment):
  with pytest.raises(ProblemError, match=fragment.replace("-", r"\-")):
    problem_lib.make_problem(**kwargs)


def test_no_relu_allows_small_dim():
  assert problem_lib.make_problem(sizes=[5, 5, 5], dim=2, final_relu=False).dim == 2


@pytest.mark.parametrize("text", ["5,x", "5,2.5", "5,0", "3"])
def test_bad_size_strings(text):
  with pytest.raises(ProblemError):
    problem_lib.parse_sizes(text)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ('{"labels": [0, 1]}', "keys"),
    ('{"labels": [0, 0, 1, 1], "batches": [[0, 9]]}', "out of range"),
    ('{"labels": [0, 0, 1, 1], "batches": [[0, -1]]}', "out of range"),
    ('{"labels": [0, 0, 1, 1], "batches": [[0]]}', "batch size"),
    ('{"labels": [0, 0, 1, 1], "batches": [[0, 1.5]]}', "integer"),
    ('{"labels": [0, 0, 2, 2], "batches": [[0, 1]]}', "no example"),
    ('{"labels": [0, 0, 0], "batches": [[0, 1]]}', "at least 2 classes"),
    ('{"labels": [0, 1], "batches": []}', "non-empty"),
])
def test_malformed_schedules(tmp_path, content, fragment):
  path = tmp_path / "s.json"
  path.write_text(content)
  with pytest.raises(ProblemError, match=fragment):
    problem_lib.load_schedule(str(path))


def test_file_with_sizes_is_rejected():
  with pytest.raises(ProblemError, match="FILE"):
    problem_lib.make_problem(sizes=[4, 4, 4], dim=8, batching=f"fixed:{C1_FILE}")
