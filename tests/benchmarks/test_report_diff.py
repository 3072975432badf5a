"""benchmarks.report_diff: only real changes are listed; timings and paths are not."""

import json

from benchmarks import report_diff


def test_differences_skip_timings_and_list_values_names_and_lengths():
  before = {"verdicts": [{"claim": "c", "verdict": "holds"}], "seconds": 1.0,
            "runs": [{"dir": "a", "setup": {"tau": 0.1}, "x": float("nan")}], "t": [1, 2]}
  after = {"verdicts": [{"claim": "c", "verdict": "holds"}], "seconds": 9.0,
           "runs": [{"dir": "b", "setup": {"temperature": 0.1}, "x": float("nan")}], "t": [1]}
  assert report_diff.differences(before, after) == [
      ".runs[0].setup.tau: only before", ".runs[0].setup.temperature: only after",
      ".t: 2 items before, 1 after"]
  assert report_diff.differences({"v": 1.0}, {"v": 1.5}) == [".v: 1.0 -> 1.5"]


def test_main_says_whether_the_verdicts_are_the_same(tmp_path, capsys):
  a, b = tmp_path / "a.json", tmp_path / "b.json"
  a.write_text(json.dumps({"verdicts": [{"claim": "c", "verdict": "holds"}]}))
  b.write_text(json.dumps({"verdicts": [{"claim": "c", "verdict": "does not hold"}]}))
  assert report_diff.main([str(a), str(a)]) == 0
  assert capsys.readouterr().out.startswith("verdicts: 1 before, 1 after, the same")
  assert report_diff.main([str(a), str(b)]) == 0
  assert "DIFFERENT" in capsys.readouterr().out
  assert report_diff.main([str(a)]) == 2
  assert report_diff.main([str(a), str(tmp_path / "missing.json")]) == 2
