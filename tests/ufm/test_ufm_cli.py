"""The `ufm` command: outputs, the batch certificate, and bad-input handling (docs/contracts.md)."""

import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from geometry import frames
from ufm import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
C1_FILE = os.path.join(ROOT, "experiments/schedules/c1_violation.json")
C2_FILE = os.path.join(ROOT, "experiments/schedules/c2_violation.json")
UFM = [sys.executable, "-m", "ufm.cli"]


def _run_main(argv, capsys):
  try:
    code = cli.main(argv)
  except SystemExit as e:  # argparse's own errors
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize("argv", [
    ["solve", "--sizes", "5,5,5", "--dim", "2"],                       # d < K under --final-relu
    ["solve", "--sizes", "5,5", "--dim", "2", "--temperature", "0"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--temperature", "-0.5"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--temperature", "nan"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--temperature", "inf"],
    ["solve", "--sizes", "5", "--dim", "2"],                           # one class
    ["solve", "--classes", "1", "--n-max", "5", "--dim", "2"],
    ["solve", "--sizes", "5,2.5", "--dim", "2"],
    ["solve", "--sizes", "5,0", "--dim", "2"],
    ["solve", "--sizes", "5,-3", "--dim", "2"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--binding", "-1"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--batching", "shuffle:1"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--batching", "fixed:1"],
    ["solve", "--sizes", "5,5", "--dim", "2", "--batching", "fixed:/nonexistent.json"],
    ["solve", "--sizes", "5,5", "--dim", "abc"],                       # argparse type error
    ["solve", "--dim", "2"],                                           # no sizes
    ["solve", "--sizes", "5,5", "--dim", "2", "--imbalance", "step:x", "--classes", "2"],
    ["check-batches", "/nonexistent.json"],
    ["check-batches", C1_FILE, "--binding", "-1"],
])
def test_bad_input_is_one_line_nonzero_no_traceback(argv, capsys):
  code, out, err = _run_main(argv, capsys)
  assert code not in (0, None)
  assert "Traceback" not in err
  assert len(err.strip().splitlines()) == 1 and err.startswith("ufm")


@pytest.mark.parametrize("content", [
    '{"labels": [0, 0, 1, 1], "batches": [[0, 7]]}',    # index out of range
    '{"labels": [0, 0, 1, 1], "batches": [[0]]}',       # batch of size 1
    '{"labels": [0, 0, 1, 1]',                          # malformed JSON
    '{"labels": [0, 0, 1, 1], "batches": "all"}',       # malformed schedule
])
def test_bad_schedule_files(tmp_path, content, capsys):
  path = tmp_path / "bad.json"
  path.write_text(content)
  for argv in (["check-batches", str(path)],
               ["solve", "--dim", "4", "--batching", f"fixed:{path}"]):
    code, _, err = _run_main(argv, capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_exit_codes(tmp_path):
  bad = subprocess.run(UFM + ["solve", "--sizes", "5,5", "--dim", "2", "--temperature", "0"],
                       capture_output=True, text=True, cwd=ROOT)
  assert bad.returncode != 0
  assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
  good = subprocess.run(UFM + ["solve", "--sizes", "4,4,2", "--dim", "3", "--temperature", "1",
                               "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
  assert good.returncode == 0, good.stderr
  assert "\r" not in good.stderr  # no progress line when stderr is not a terminal
  assert "dist_of" in good.stdout
  result = json.loads((tmp_path / "result.json").read_text())
  expected = frames.scl_optimal_loss([4, 4, 2], 1.0)
  assert result["loss"] == pytest.approx(expected, rel=1e-9)
  assert result["of_loss"] == pytest.approx(expected, rel=1e-12)
  assert result["optimal_loss"] == result["of_loss"]
  assert abs(result["gap"]) < 1e-8 and result["dist_of"] < 1e-6 and result["converged"]
  for key in ("dist_etf", "nc1", "nc1_over_k", "mean_cos", "class_mean_norms", "steps",
              "seconds", "sizes", "dim", "temperature", "final_relu", "batching", "binding", "seed", "dtype",
              "seeds", "fraction_of", "gram"):
    assert key in result, key
  assert result["sizes"] == [4, 4, 2] and result["final_relu"] is True
  assert result["problem"]["loss"] == "scl"
  emb = np.load(tmp_path / "embeddings.npy")
  labels = np.load(tmp_path / "labels.npy")
  assert emb.shape == (10, 3)
  np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
  assert (tmp_path / "gram.png").stat().st_size > 1000


def test_progress_line_only_on_a_terminal():
  class Tty(io.StringIO):
    def isatty(self):
      return True

  info = {"step": 100, "phase": 0, "phase_name": "final", "final": True, "loss": 5.0, "dist_of": 0.1, "pg": 1e-3}
  tty, pipe = Tty(), io.StringIO()
  cli._Progress(None, 4.0, stream=tty)(info)
  cli._Progress(None, 4.0, stream=pipe)(info)
  assert tty.getvalue().startswith("\rstep") and "gap 1.000e+00" in tty.getvalue()
  assert pipe.getvalue() == ""


def _certificate(argv, capsys):
  code, out, _ = _run_main(argv, capsys)
  assert code == 0
  return json.loads(out)


def test_check_batches_certificates(capsys):
  # docs/theory.md#theorem-2 by hand: in the C1 file no class is connected (each class's two pairs sit in
  # different batches); in the C2 file classes 1 and 2 never meet. Binding fixes both.
  c1 = _certificate(["check-batches", C1_FILE], capsys)
  assert c1 == {"c1_connected": {"0": False, "1": False, "2": False},
                "c2_pairs_missing": [], "of_unique": False}
  c2 = _certificate(["check-batches", C2_FILE], capsys)
  assert c2 == {"c1_connected": {"0": True, "1": True, "2": True},
                "c2_pairs_missing": [[1, 2]], "of_unique": False}
  for path in (C1_FILE, C2_FILE):
    assert _certificate(["check-batches", path, "--binding", "1"], capsys)["of_unique"]


@pytest.mark.parametrize("path", [C1_FILE, C2_FILE])
def test_check_batches_agrees_with_the_solver(path, tmp_path, capsys):
  for binding in (0, 1):
    out = tmp_path / f"b{binding}"
    cert = _certificate(["check-batches", path, "--binding", str(binding)], capsys)
    code, _, _ = _run_main(["solve", "--batching", f"fixed:{path}", "--binding", str(binding),
                            "--dim", "8", "--temperature", "1", "--seeds", "4", "--quiet",
                            "--out", str(out)], capsys)
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    # Every seed reaches the Theorem 2 bound ...
    for seed in result["seeds"]:
      assert seed["gap"] == pytest.approx(0.0, abs=1e-6)
    # ... and the OF is what the solver finds exactly when the certificate says it is unique.
    if cert["of_unique"]:
      assert result["fraction_of"] == 1.0
    else:
      assert result["spread"]["dist_of_max"] > 0.1
    assert result["certificate"]["of_unique"] == cert["of_unique"]


def test_paper_temperature_k10_step10_reaches_the_of(tmp_path, capsys):
  # K = d = 10, step imbalance R = 10 with 40 per majority class, tau = 0.1 (the default),
  # random starts, default step budget.
  start = time.perf_counter()
  code, out, _ = _run_main(["solve", "--classes", "10", "--imbalance", "step:10", "--n-max",
                            "40", "--dim", "10", "--seeds", "3", "--out", str(tmp_path)], capsys)
  elapsed = time.perf_counter() - start
  assert code == 0
  result = json.loads((tmp_path / "result.json").read_text())
  assert result["temperature"] == 0.1 and result["sizes"] == [40] * 5 + [4] * 5
  assert result["fraction_of"] == 1.0
  for seed in result["seeds"]:
    assert seed["dist_of"] < 1e-3
    assert seed["loss"] == pytest.approx(result["of_loss"], rel=1e-6)
  print(f"K=10 R=10 tau=0.1: {elapsed:.1f} s for 3 seeds, steps "
        f"{[s['steps'] for s in result['seeds']]}")


def test_old_flag_names_still_solve_the_same_problem_with_a_deprecation_line(tmp_path, capsys):
  new_out, old_out = tmp_path / "new", tmp_path / "old"
  common = ["solve", "--sizes", "4,4,2", "--dim", "3", "--steps", "200", "--quiet"]
  code, _, err = _run_main([*common, "--temperature", "0.5", "--no-final-relu",
                            "--out", str(new_out)], capsys)
  assert code == 0 and "deprecated" not in err
  code, _, err = _run_main([*common, "--tau", "0.5", "--no-relu", "--out", str(old_out)], capsys)
  assert code == 0
  lines = [l for l in err.splitlines() if "deprecated" in l]
  assert lines == ["ufm solve: --tau is deprecated, use --temperature (the old name is accepted "
                   "until the next release)",
                   "ufm solve: --no-relu is deprecated, use --no-final-relu (the old name is "
                   "accepted until the next release)"], err
  new = json.loads((new_out / "result.json").read_text())
  old = json.loads((old_out / "result.json").read_text())
  assert new["problem"] == old["problem"]
  assert new["temperature"] == 0.5 and new["final_relu"] is False
  assert "tau" not in new and "relu" not in new
  # --relu sets UFM+ again; the help lists only the new names.
  args = cli._build_parser().parse_args([*common[:5], "--no-final-relu", "--relu"])  # pylint: disable=protected-access
  assert args.final_relu is True
  code, help_text, _ = _run_main(["solve", "--help"], capsys)
  assert code == 0
  assert "--temperature" in help_text and "--final-relu" in help_text
  assert "--tau" not in help_text and "--relu " not in help_text


def test_python_api_old_keywords_warn_and_mean_the_same():
  import ufm  # pylint: disable=g-import-not-at-top
  kwargs = dict(sizes=[3, 3], dim=2, steps=50, seeds=1)
  new = ufm.solve(temperature=0.5, final_relu=False, **kwargs)
  with pytest.warns(DeprecationWarning, match="temperature="):
    with pytest.warns(DeprecationWarning, match="final_relu="):
      old = ufm.solve(tau=0.5, relu=False, **kwargs)
  assert old.fields["problem"] == new.fields["problem"]
  assert old.loss == new.loss and new.temperature == 0.5 and new.final_relu is False


def test_load_config_is_the_problem_and_options_of_the_command():
  import ufm
  from ufm import options as options_lib
  from ufm import problem as problem_lib
  problem, options = ufm.load_config(["--classes", "3", "--imbalance", "step:4", "--n-max", "8",
                                      "--dim", "3", "--temperature", "0.5", "--no-final-relu", "--seeds", "2",
                                      "--steps", "70", "--out", "ignored", "--quiet"])
  # step:4 over 3 classes with rho 0.5: one majority class of 8, two minority classes of 2.
  by_hand = problem_lib.make_problem(sizes=[8, 2, 2], dim=3, temperature=0.5,
                                     final_relu=False)
  assert problem.describe() == by_hand.describe()
  assert options == options_lib.SolverOptions(steps=70, seeds=2)


def test_load_config_reads_a_relative_schedule_from_base_dir_and_keeps_its_name(tmp_path):
  import ufm
  from ufm.problem import ProblemError
  args = ["--batching", "fixed:experiments/schedules/c1_violation.json", "--dim", "4"]
  problem, _ = ufm.load_config(args, base_dir=ROOT)
  with open(C1_FILE) as f:
    assert problem.labels.tolist() == json.load(f)["labels"]
  assert problem.describe()["batching"] == "fixed:experiments/schedules/c1_violation.json"
  with pytest.raises(ProblemError, match="cannot read schedule file"):
    ufm.load_config(args, base_dir=tmp_path)


@pytest.mark.parametrize("args,fragment", [
    (["--sizes", "3,3"], "--dim"),                        # argparse: a required flag missing
    (["--sizes", "3,3", "--dim", "two"], "invalid int value"),
    (["--sizes", "3,3", "--dim", "2", "--no-such"], "unrecognized arguments"),
    (["--sizes", "3,3", "--dim", "2", "--temperature", "0"], "--temperature"),
])
def test_load_config_raises_one_line_problem_errors(args, fragment):
  import ufm
  from ufm.problem import ProblemError
  with pytest.raises(ProblemError) as info:
    ufm.load_config(args)
  assert fragment in str(info.value) and "\n" not in str(info.value)
