"""A solve (or a dense SCL call) that cannot fit in memory is refused before anything is built,
in one line that says what fits. The free memory is fixed here so the numbers are exact."""

import time

import jax.numpy as jnp
import numpy as np
import pytest

from geometry import losses
from geometry import memory as geometry_memory
from ufm import memory
from ufm.problem import ProblemError
from ufm_cli_helper import run_cli as _run

GIB = 1 << 30


def test_a_billion_rows_are_refused_at_once(monkeypatch, capsys, tmp_path):
  monkeypatch.setattr(geometry_memory, "device_available_bytes", lambda: 16 * GIB)
  start = time.perf_counter()
  code, _, err = _run(["solve", "--sizes", "500000000,500000000", "--dim", "10",
                       "--out", str(tmp_path / "o")], capsys)
  assert time.perf_counter() - start < 5     # the 10^9 labels were never built
  assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
  # By hand: 14 arrays x 10^9 rows x 10 x 8 bytes = 1043.1 GiB; 16.0 GiB free.
  assert "1043.1 GiB of embeddings and optimiser state" in err
  assert "16.0 GiB is free" in err and "use fewer examples or a smaller --dim" in err
  assert not (tmp_path / "o").exists()


def test_the_advice_names_what_fits():
  # 10^6 rows, d = 16, float64, 4 seeds, blocks of 64, 8 GiB free. By hand, per seed:
  # state 14 * 1e6 * 16 * 8 = 1.792e9, similarities 6 * 1e6 * 64 * 8 = 3.072e9, and the host
  # 8 * 1e6 * 16 * (seeds + 2) + 32e6. One seed: 5.28e9 fits; two: 10.3e9 do not; float32 at
  # four seeds: 10.5e9 does not; blocks of 16 at four seeds: 10.2e9 do not.
  with pytest.raises(ProblemError) as info:
    memory.check_solve(1_000_000, 16, seeds=4, dtype="float64", block_size=64,
                       memory=8 * GIB)
  message = str(info.value)
  assert "at most 1 seed(s) fit (--seeds 1)" in message
  assert "float32" not in message.split("free;")[1] and "--block-size" not in message
  got = memory.estimate(1_000_000, 16, seeds=4, itemsize=8, block_size=64, memory=8 * GIB)
  assert (got.state, got.pairs, got.host) == (7_168_000_000, 12_288_000_000, 800_000_000)
  assert memory.check_solve(1_000_000, 16, seeds=1, dtype="float64", block_size=64,
                            memory=8 * GIB).total == 1_792_000_000 + 3_072_000_000 + 416_000_000


def test_float32_and_block_size_advice():
  # Dense at 30,000 rows (d = 64, one seed): similarities 6 * 9e8 * 8 = 43.2e9 bytes dominate.
  with pytest.raises(ProblemError) as info:
    memory.check_solve(30_000, 64, seeds=1, dtype="float64", block_size=30_000,
                       memory=24 * GIB)
  assert "--block-size 4096 fits" in str(info.value)
  assert "--dtype float32 fits" in str(info.value)    # 21.6e9 + small parts < 25.8e9


def test_the_solver_block_rule_is_used_when_no_block_is_given():
  calls = []

  def auto(rows, itemsize, seeds, memory_bytes):
    calls.append((rows, itemsize, seeds, memory_bytes))
    return 128
  got = memory.estimate(200_000, 8, seeds=2, itemsize=4, memory=4 * GIB, auto_block=auto)
  assert calls == [(200_000, 4, 2, 4 * GIB)]
  assert got.block_size == 128 and got.pairs == 6 * 200_000 * 128 * 4 * 2


def test_the_dense_loss_is_refused_with_a_block_size_that_fits(monkeypatch):
  monkeypatch.setattr(geometry_memory, "device_available_bytes", lambda: GIB)
  rng = np.random.default_rng(0)
  h = jnp.asarray(rng.normal(size=(8000, 2)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, 8000))
  # Dense: 6 x 8000^2 x 4 bytes = 1.54e9 > 1 GiB.
  with pytest.raises(ValueError, match=r"N = 8000 needs about 1\.4 GiB.*block_size=(\d+)") as info:
    losses.supcon_loss(h, y, temperature=0.5, reduction="sum")
  block = int(str(info.value).rsplit("block_size=", 1)[1])
  assert 16 <= block and 6 * 8000 * block * 4 <= GIB
  value = losses.supcon_loss(h, y, temperature=0.5, reduction="sum", block_size=block)
  assert np.isfinite(float(value))


def test_the_seed_advice_for_a_hundred_million_seeds_is_arithmetic(monkeypatch, capsys,
                                                                    tmp_path):
  # CE, 2 x 1000 rows, d = 10, float64, full batch, 16 GiB. By hand, per seed: state
  # 14 * 2000 * 10 * 8, logits 4 * 2000 * 2 * 8, host copy 8 * 2000 * 10; fixed: two host
  # copies 2 * 8 * 2000 * 10 and labels 32 * 2000. The most seeds: floor((memory - fixed) / a).
  per_seed = 14 * 2000 * 10 * 8 + 4 * 2000 * 2 * 8 + 8 * 2000 * 10
  fixed = 2 * 8 * 2000 * 10 + 32 * 2000
  most = (16 * GIB - fixed) // per_seed
  assert most == 6795
  monkeypatch.setattr(geometry_memory, "device_available_bytes", lambda: 16 * GIB)
  start = time.perf_counter()
  code, _, err = _run(["solve", "--sizes", "1000,1000", "--dim", "10", "--loss", "ce",
                       "--seeds", "100000000", "--out", str(tmp_path / "o")], capsys)
  assert time.perf_counter() - start < 5, err
  assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
  assert f"at most {most} seed(s) fit (--seeds {most})" in err
  assert not (tmp_path / "o").exists()


def test_the_seed_advice_under_the_solver_block_rule_matches_a_search_over_every_count():
  # SCL with the block chosen per seed count (a rule that is not affine in the seeds): the
  # advice is the largest count that fits, as an exhaustive search finds it.
  def auto(rows, itemsize, seeds, memory_bytes):
    return max(16, min(rows, (memory_bytes // 4) // (6 * rows * itemsize * seeds)))
  args = dict(itemsize=8, memory=8 * GIB, auto_block=auto)
  fits = [s for s in range(1, 3000)
          if memory.estimate(200_000, 16, seeds=s, **args).total <= 8 * GIB]
  assert fits and fits[-1] < 2999
  with pytest.raises(ProblemError) as info:
    memory.check_solve(200_000, 16, seeds=100_000_000, dtype="float64", memory=8 * GIB,
                       auto_block=auto)
  assert f"at most {fits[-1]} seed(s) fit (--seeds {fits[-1]})" in str(info.value)


def test_a_billion_classes_are_refused_before_any_per_class_list(monkeypatch, capsys,
                                                                 tmp_path):
  from geometry import imbalance  # pylint: disable=g-import-not-at-top
  from ufm import problem  # pylint: disable=g-import-not-at-top

  def no_list(*args, **kwargs):
    raise AssertionError("a per-class list was built")
  monkeypatch.setattr(problem, "sizes_from_recipe", no_list)
  monkeypatch.setattr(imbalance, "class_sizes", no_list)
  monkeypatch.setattr(geometry_memory, "device_available_bytes", lambda: 16 * GIB)
  for extra, fragment in ((["--no-final-relu"], "10_000_000_000 rows"),
                          ([], "--dim 10 < K = 1000000000"),
                          (["--no-final-relu", "--imbalance", "step:10"], "5_500_000_000 rows")):
    start = time.perf_counter()
    code, _, err = _run(["solve", "--classes", "1000000000", "--n-max", "10", "--dim", "10",
                         *extra, "--out", str(tmp_path / "o")], capsys)
    assert time.perf_counter() - start < 5, err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err   # step:10: 5e8 classes of 10 and 5e8 of 1, by hand
  assert not (tmp_path / "o").exists()


def test_the_fewest_rows_of_a_recipe_by_hand():
  assert memory.fewest_rows(4, "none", 1.0, 7, 0.5) == 28
  assert memory.fewest_rows(5, "step", 10.0, 100, 0.5) == 2 * 100 + 3 * 10
  # exp, K = 3, n_max 100, R = 4: sizes 100, 50, 25 (sum 175) >= 3 * 25.
  assert memory.fewest_rows(3, "exp", 4.0, 100, 0.5) == 75
