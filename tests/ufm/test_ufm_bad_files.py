"""Schedule files and seeds that once gave a traceback (or exhausted memory) are refused on one
line, quickly, by both `ufm check-batches` and `ufm solve`."""

import time

import pytest

from ufm_cli_helper import run_cli as _run


@pytest.mark.parametrize("content, says", [
    (b'{"labels": [0, 0, 1, 1], "batches": [[0, 1, \xff\xfe]]}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"labels": [0, 100000000], "batches": [[0, 1]]}', "label 100000000"),
    (b'{"labels": [0, 0, 1, 1], "batches": [[0, 0, 2, 3], [1, 2, 3]]}', "repeats index 0"),
    (b'{"labels": [0, 0, 1, 1], "batches": [[0, 1, 2, 3]], "x": ' + b"[" * 5000 + b"]" * 5000
     + b"}", "nested"),
])
def test_bad_schedule_files_are_one_line(tmp_path, content, says, capsys):
  path = tmp_path / "schedule.json"
  path.write_bytes(content)
  for argv in (["check-batches", str(path)],
               ["solve", "--dim", "4", "--batching", f"fixed:{path}", "--out",
                str(tmp_path / "out")]):
    start = time.perf_counter()
    code, _, err = _run(argv, capsys)
    assert time.perf_counter() - start < 5
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and says in err, err
  assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize("argv, says", [
    (["--seed", "99999999999999999999"], "--seed"),
    (["--seed", "9223372036854775807"], "--seed"),
    (["--seed", "2147483647"], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "2147473640", "--seeds", "20"], "--seeds"),
])
def test_seeds_out_of_range_are_one_line(argv, says, tmp_path, capsys):
  code, _, err = _run(["solve", "--sizes", "3,3", "--dim", "2", "--out", str(tmp_path / "o"),
                       *argv], capsys)
  assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert says in err and "2147473647" in err


def test_the_largest_seed_solves(tmp_path, capsys):
  # float32 keys are int32: the last seed and the solver's own offset key must both fit.
  code, _, err = _run(["solve", "--sizes", "3,3", "--dim", "2", "--temperature", "1", "--steps", "20",
                       "--dtype", "float32", "--seed", "2147473646", "--seeds", "2",
                       "--quiet", "--out", str(tmp_path / "o")], capsys)
  assert code == 0, err


@pytest.mark.parametrize("batches, unseen", [
    ([[0, 1, 2, 3]], 2),                 # rows 4 and 5 are in no batch
    ([[0, 1, 2, 3], [2, 3, 4, 5]], 0),   # every row is in a batch
])
def test_rows_in_no_batch_are_counted_and_named(tmp_path, capsys, batches, unseen):
  import json
  path = tmp_path / "schedule.json"
  path.write_text(json.dumps({"labels": [0, 0, 1, 1, 2, 2], "batches": batches}))
  out_dir = tmp_path / "out"
  code, out, err = _run(["solve", "--dim", "4", "--temperature", "1", "--steps", "20", "--batching",
                         f"fixed:{path}", "--out", str(out_dir)], capsys)
  assert code == 0, err
  result = json.loads((out_dir / "result.json").read_text())
  assert result["certificate"]["rows_in_no_batch"] == unseen
  assert (f"note: {unseen} of 6 rows are in no batch" in out) == bool(unseen), out
