"""Verdicts are keyed by check and setting (their ``id``), never by wording; consistency checks
(which hold by construction) are shown and counted apart from the claims."""

import json

import numpy as np

from experiments_synthetic import training_config, write_train
from experiments import report, spec
from experiments.report.seeds import combine_verdicts


def _verdict(claim, verdict="holds", key="train", setup="digits; seed 0", **extra):
  return {"id": f"of_reached/{key}/{setup}", "check": "of_reached", "check_index": 0,
          "key": key, "kind": "claim", "section": "E1", "claim": claim, "setup": setup,
          "verdict": verdict, "missing": [], "rule": "r", "reference": "", "conditions": [],
          "numbers": [], **extra}


def test_seed_verdicts_pair_by_id_whatever_the_wording():
  per_seed = [(0, [_verdict("learns an OF at R = 1")]),
              (1, [_verdict("learns an orthogonal frame at R = 1", setup="digits; seed 1")])]
  [v] = combine_verdicts(per_seed, {})
  assert v["verdict"] == "holds" and v["seed_count"] == "holds on 2 of 2 seeds"
  assert v["id"] == "of_reached/train/digits; seeds 0, 1"


def test_same_wording_other_setting_stays_apart_and_a_missing_seed_is_inconclusive():
  per_seed = [(0, [_verdict("c"), _verdict("c", key="ufm")]),
              (1, [_verdict("c", setup="digits; seed 1"),
                   _verdict("c", key="no-evidence", setup="", placeholder=True,
                            verdict="inconclusive", check_index=0,
                            missing=["run b is missing"])])]
  found = {v["key"]: v for v in combine_verdicts(per_seed, {})}
  assert set(found) == {"train", "ufm"}            # the no-evidence verdict is folded in
  assert found["train"]["verdict"] == "holds"
  assert found["ufm"]["verdict"] == "inconclusive"
  assert found["ufm"]["missing"] == ["seed 1: run b is missing"]
  assert found["ufm"]["seeds_inconclusive"] == [1]


def test_consistency_checks_are_shown_and_counted_apart(tmp_path, capsys):
  write_train(tmp_path / "runs" / "a", training_config(), final_means=np.eye(4, 8),
              dist_of_curve=[0.9, 0.4, 0.07, 0.03], acc_curve=[0.5, 0.9, 1.0, 1.0],
              loss_curve=[5.0, 4.0, 3.1, 3.05], floor=3.0)
  out = tmp_path / "out"
  report.build_report([tmp_path / "runs"], out, checks=[
      spec.check("of_reached", runs=["a"]), spec.check("loss_floor", runs=["a"])])
  shown = json.loads((out / "report.json").read_text())
  kinds = {v["key"]: v["kind"] for v in shown["verdicts"]}
  assert kinds == {"train": "claim", "bound": "consistency", "approach": "claim"}
  # Final gap (3.05 - 3.0) / 3.0 = 0.0167 < 0.05, never below the floor, dist_of 0.03.
  assert shown["counts"] == {"claim": {"holds": 2}, "consistency": {"holds": 1}}
  page = (out / "index.html").read_text()
  claims, consistency = page.index("id='claim'"), page.index("id='consistency'")
  assert claims < page.index("learns an orthogonal frame") < consistency
  assert consistency < page.index("never goes below the OF floor")
  assert "Consistency checks (hold by construction when the code is right): 1 hold" in page
  # Beside the verdict: the number, the threshold (0.3 x dist_of(ETF_4) = 0.1553 at K = 4)
  # and the margin.
  [of] = [v for v in shown["verdicts"] if v["key"] == "train"]
  [cond] = of["conditions"]
  assert cond["lhs_value"] == 0.03 and abs(cond["rhs_value"] - 0.15529) < 1e-4
  assert abs(cond["margin"] - (cond["rhs_value"] - 0.03)) < 1e-12
  assert "0.03 &lt; 0.1553; margin 0.1253" in page


def test_claims_name_their_settings_and_r100_reshuffled_is_its_own_row():
  from test_report_checks import train
  from pathlib import Path
  norms = [[1.0] * 10] * 2
  runs = [train("r1", dist_of=[0.5, 0.01], class_mean_norms=norms, **{"data.ratio": 1.0}),
          train("r10", dist_of=[0.5, 0.02], class_mean_norms=norms),
          train("r100b", dist_of=[0.5, 0.03], class_mean_norms=norms, binding=1,
                **{"data.ratio": 100.0})]
  b = report.Builder(runs, Path("/tmp"), checks=[spec.check("of_reached")])
  assert [v["claim"] for v in b.run_checks().verdicts] == [
      "SCL with a final ReLU learns an orthogonal frame at R = 1 and 10 reshuffled",
      "SCL with a final ReLU learns an orthogonal frame at R = 100 with binding"]
  from experiments.configs import recipe_targets
  exp = recipe_targets.get_experiment()
  rows = [c.runs for c in exp["checks"] if c.name == "of_reached"]
  assert ("fashion_mnist_relu_R100_bind0",) in rows and ("digits_relu_R100_bind0",) in rows
  assert not any("fashion_mnist_relu_R100_bind0" in r and len(r) > 1 for r in rows)
