"""`ufm advise`: JSON fields against hand-computed values, the summary, bad input."""

import json

import pytest

from ufm import cli


def _run(argv, capsys):
  try:
    code = cli.main(["advise"] + argv)
  except SystemExit as e:  # argparse's own errors
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_advise_binding_with_one_dropped_example(capsys):
  # n = 13, B = 4: 3 batches, one example dropped per epoch, binding 1 per class.
  # One epoch: C1 iff the dropped example is one of the 3 binding ones (3/13); C2 is certain.
  # Union: it fails at epoch E only if one non-binding example was dropped in every epoch so
  # far, P(T > E) = (10/13) 13^-(E-1), so E[T] = 1 + (10/13)(13/12) = 11/6 and
  # P(T <= 2) = 1 - 10/169 > 0.9, so the 90th percentile is 2.
  code, out, err = _run(["--sizes", "5,5,3", "--batch-size", "4", "--binding", "1"], capsys)
  assert code == 0, err
  advice = json.loads(out)
  assert advice["p_c1"] == pytest.approx(3 / 13) and advice["methods"]["p_c1"] == "exact"
  assert advice["p_c2"] == 1.0 and advice["p_of_unique"] == pytest.approx(3 / 13)
  assert advice["epochs_until_of_unique"]["mean"] == pytest.approx(11 / 6, rel=1e-9)
  assert advice["methods"]["epochs_until_of_unique"] == "exact"
  assert advice["epochs_until_of_unique"]["p90"] == 2
  assert advice["binding_needed"] == 1 and advice["guaranteed"] is True
  assert advice["num_batches"] == 3 and advice["dropped_per_epoch"] == 1
  assert "p_c1" in err and "epochs until the union" in err


def test_advise_from_a_recipe_without_binding(capsys):
  code, out, err = _run(["--classes", "4", "--imbalance", "step:10", "--n-max", "20",
                         "--batch-size", "8", "--views", "1", "--trials", "50"], capsys)
  assert code == 0, err
  advice = json.loads(out)
  assert advice["sizes"] == [20, 20, 2, 2]
  # classes of 20 never fit in a batch of 8; two batches never satisfy both conditions
  assert advice["p_c1"] == 0.0 and advice["p_of_unique"] == 0.0
  assert advice["p_c1_by_class"][:2] == [0.0, 0.0]
  for key in ("p_c2", "p_c1_by_class", "epochs_mean", "epochs_p90"):
    assert key in advice["intervals"]
  until = advice["epochs_until_of_unique"]
  assert until["min"] <= until["p90"] <= until["max"] and until["censored"] == 0


@pytest.mark.parametrize("argv", [
    ["--sizes", "5,5", "--batch-size", "11"],
    ["--sizes", "5,5", "--batch-size", "1"],
    ["--sizes", "5,0", "--batch-size", "2"],
    ["--sizes", "5", "--batch-size", "2"],
    ["--sizes", "5,5", "--batch-size", "2", "--binding", "-1"],
    ["--sizes", "5,2", "--batch-size", "2", "--binding", "3"],
    ["--sizes", "5,5", "--batch-size", "2", "--trials", "0"],
    ["--sizes", "5,5", "--batch-size", "2", "--views", "3"],
    ["--sizes", "5,5", "--classes", "2", "--batch-size", "2"],
    ["--classes", "4", "--batch-size", "2"],
    ["--classes", "4", "--imbalance", "step:0.5", "--n-max", "10", "--batch-size", "2"],
    ["--batch-size", "2"],
    ["--sizes", "5,5"],
])
def test_advise_bad_input(argv, capsys):
  code, out, err = _run(argv, capsys)
  assert code == 2 and out == ""
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
