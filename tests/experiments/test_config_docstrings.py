"""Config docstrings say why a recipe is what it is; what was measured (dates, run times,
the epochs a run took) lives in docs/results.md, where it is kept up to date."""

import ast
import re
from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "configs").glob("*.py"))
# A date, or a time a run or a sweep took ("about 7 minutes", "25 to 90 s", "1.5-4 min").
MEASURED = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b\d+(\.\d+)?( ?(-|to) ?\d+(\.\d+)?)? ?"
                      r"(minutes?|min|hours?|s)\b(?! ?x)|\babout (an|two) hours?\b")


def _docstrings(path):
  tree = ast.parse(path.read_text(encoding="utf-8"))
  return [ast.get_docstring(n) or "" for n in ast.walk(tree)
          if isinstance(n, (ast.Module, ast.FunctionDef))]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_no_measured_numbers_in_config_docstrings(path):
  found = [m.group(0) for doc in _docstrings(path) for m in MEASURED.finditer(doc)]
  assert not found, f"{path.name}: {found}; move them to docs/results.md"


def test_the_pattern_finds_what_it_is_for():
  for text in ("about 7 minutes on 2 cores (make demo, 2026-12-01)", "25 to 90 s there",
               "1.5-4 min", "about two hours", "a run takes 40-140 s"):
    assert MEASURED.search(text), text
  for text in ("500 epochs of 8 steps", "R in {1, 10, 100}", "5 x 100 + 5 x 10", "tau = 0.1"):
    assert not MEASURED.search(text), text
