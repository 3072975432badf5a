"""Seeds in the report: mean curves with min-max bands, mean [min, max] tables, verdicts that
hold only on every seed, on hand-made seed runs whose outcomes are worked out by hand here."""

import json
import math
import shutil

import numpy as np
import pytest

from experiments_synthetic import train_record, training_config, write_train, write_ufm
from experiments import report, spec
from experiments.report import seeds
import test_experiments_report as checks

OF10 = np.eye(10, 16)
ACC = [0.5, 0.9, 1.0, 1.0]

# (setting, config overrides, per seed: (dist_of curve, logged epochs, test accuracy))
SETTINGS = {
    "relu_R1": ({"data.ratio": 1.0}, [
        ([0.9, 0.3, 0.1, 0.02], (1, 3, 5, 10), 0.90),
        ([0.9, 0.3, 0.1, 0.03], (1, 3, 5, 10), 0.90),
        ([0.9, 0.3, 0.1, 0.05], (1, 3, 5, 10), 0.90)]),
    "relu_R10": ({}, [
        ([0.9, 0.4, 0.15, 0.04], (1, 3, 5, 10), 0.89),
        ([0.8, 0.5, 0.30, 0.15], (1, 3, 5, 10), 0.90),    # seed 1 ends above 0.1
        ([0.7, 0.3, 0.20, 0.08], (1, 3, 6, 10), 0.85)]),  # seed 2 logged epoch 6, not 5
    "norelu_R10": ({"model.final_relu": False}, [
        ([0.9, 0.6, 0.5, 0.45], (1, 3, 5, 10), 0.90),
        ([0.9, 0.6, 0.5, 0.40], (1, 3, 5, 10), 0.89),
        ([0.9, 0.6, 0.5, 0.50], (1, 3, 5, 10), 0.90)]),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("seeds") / "runs"
  write_ufm(root / "ufm_plus", sizes=(10, 10, 2, 2), dim=8, tau=0.5, relu=True,
            means=np.eye(4, 8), loss=53.288007, of_loss=53.288007)
  for name, (overrides, per_seed) in SETTINGS.items():
    for seed, (curve, epochs, test_acc) in enumerate(per_seed):
      write_train(root / spec.seed_run_name(name, seed),
                  training_config(**overrides, seed=seed), final_means=OF10,
                  dist_of_curve=curve, acc_curve=ACC, test_acc=test_acc, epochs=epochs,
                  seed=seed)
  out = root.parent / "report"
  html_path = report.build_report([root], out, title="seeds")
  return out, html_path, json.loads((out / "report.json").read_text())


def _claim(rep, claim, setup_part=""):
  hits = [v for v in rep["verdicts"] if v["claim"].startswith(claim) and setup_part in v["setup"]]
  assert len(hits) == 1, (claim, [v["setup"] for v in hits])
  return hits[0]


def test_mean_curve_and_band_by_hand(built):
  _, _, rep = built
  fig = next(f for f in rep["figures"] if f["id"].startswith("curves")
             and set(f["data"][0]["runs"]) == {"relu_R1", "relu_R10"})
  s = fig["data"][0]["series"]["dist_of"]["relu_R10"]
  # Union of the logged epochs; epoch 5 has seeds 0 and 1, epoch 6 seed 2 only.
  assert s["x"] == [1, 3, 5, 6, 10]
  assert s["count"] == [3, 3, 2, 1, 3]
  expected = [(0.9 + 0.8 + 0.7) / 3, (0.4 + 0.5 + 0.3) / 3, (0.15 + 0.30) / 2, 0.20,
              (0.04 + 0.15 + 0.08) / 3]
  assert s["values"] == pytest.approx(expected, rel=1e-12)
  assert s["min"] == [0.7, 0.3, 0.15, 0.20, 0.04]
  assert s["max"] == [0.9, 0.5, 0.30, 0.20, 0.15]
  assert "seeds 0, 1, 2" in fig["caption"]


def test_boolean_curve_is_true_where_every_seed_is(built, tmp_path):
  out, _, _ = built
  root = tmp_path / "runs"
  shutil.copytree(out.parent / "runs", root)
  group = next(s for s in seeds.group_settings(report.discover([root])) if s.name == "relu_R10")
  assert group.record_file == root / "relu_R10_seed0" / "run.json"   # the first seed's
  assert not group.path.exists()                  # a group has no folder of its own
  (root / "relu_R10_seed1" / "metrics.jsonl").write_text(
      (root / "relu_R10_seed1" / "metrics.jsonl").read_text().replace(
          '"of_unique_so_far": true}', '"of_unique_so_far": false}', 1))
  group = next(s for s in seeds.group_settings(report.discover([root])) if s.name == "relu_R10")
  s = seeds.SeedNumbers(out).series(group, "of_unique_so_far")
  # Seed 1 is false at its first epoch only; epochs 5 and 6 are logged by some seeds only.
  assert s["x"] == [1, 3, 5, 6, 10] and s["values"] == [False, True, True, True, True]
  assert s["count"] == [3, 3, 2, 1, 3] and s["derived"] == "all"
  assert _recompute(s, out) == s["values"]


def test_tables_give_mean_and_spread(built):
  _, html_path, rep = built
  table = next(t for t in rep["tables"] if t["id"] == "final_geometry")
  row = next(r for r in table["rows"] if r[0] == "relu_R10")
  dist_of = row[table["columns"].index("dist_of")]
  assert dist_of["value"] == pytest.approx((0.04 + 0.15 + 0.08) / 3, rel=1e-12)
  assert (dist_of["min"], dist_of["max"]) == (0.04, 0.15)
  assert dist_of["seeds"] == [0, 1, 2]
  assert "0.09 [0.04, 0.15]" in html_path.read_text()
  acc = next(t for t in rep["tables"] if t["id"] == "accuracy")
  row = next(r for r in acc["rows"] if r[0] == "relu_R10")
  cell = row[acc["columns"].index("test (balanced)")]
  assert cell["value"] == pytest.approx(0.88, rel=1e-12) and (cell["min"], cell["max"]) == \
      (0.85, 0.90)
  settings = {s["name"]: s for s in rep["settings"]}
  assert set(settings) == set(SETTINGS)
  assert settings["relu_R10"]["seeds"] == [0, 1, 2]
  assert settings["relu_R10"]["runs"] == [f"relu_R10_seed{s}" for s in range(3)]
  assert len(rep["runs"]) == 10          # every seed run is listed with its own setup


def test_verdict_holds_only_on_every_seed(built):
  _, html_path, rep = built
  assert {v["verdict"] for v in rep["verdicts"]} <= {"holds", "does not hold", "inconclusive"}
  # Seed s: relu_R1 and relu_R10 end at (0.02, 0.04), (0.03, 0.15), (0.05, 0.08): seed 1 fails.
  of = _claim(rep, "SCL with a final ReLU learns an orthogonal frame")
  assert of["verdict"] == "does not hold"
  assert of["seeds_total"] == 3 and of["seeds_holding"] == [0, 2] and of["seeds_failing"] == [1]
  assert of["seeds_inconclusive"] == [] and of["seed_count"] == "holds on 2 of 3 seeds"
  assert "seeds 0, 1, 2" in of["setup"] and "seed 1" not in of["setup"].replace("seeds", "")
  finals = sorted(n["value"] for n in of["numbers"] if n.get("derived") != "threshold")
  assert finals == [0.02, 0.03, 0.04, 0.05, 0.08, 0.15]     # every seed's own final value
  assert sorted({c["seed"] for c in of["conditions"]}) == [0, 1, 2]
  assert "holds on 2 of 3 seeds; fails on seed 1" in html_path.read_text()
  # Without ReLU: 0.45, 0.40, 0.50 > 0.1 on every seed.
  norelu = _claim(rep, "without the final ReLU the learned geometry is not an OF")
  assert norelu["verdict"] == "holds" and norelu["seed_count"] == "holds on 3 of 3 seeds"
  # Every verdict follows from its conditions (all seeds' conditions together).
  for v in rep["verdicts"]:
    results = [checks._evaluate(c) for c in v["conditions"]]
    expected = ("inconclusive" if None in results else
                "holds" if all(results) else "does not hold")
    assert v["verdict"] == expected, v["claim"]


def test_accuracy_verdict_compares_seed_means(built):
  _, _, rep = built
  # Means: ReLU (0.89 + 0.90 + 0.85) / 3 = 0.88, no ReLU (0.90 + 0.89 + 0.90) / 3; the
  # difference -0.01667 is within 0.02 although seed 2 alone differs by -0.05. Two standard
  # errors of the difference, 2 sqrt(s_a^2/3 + s_b^2/3) with the seeds' sample deviations, are
  # 0.0313: -0.01667 - 0.0313 < -0.02 < -0.01667 + 0.0313, so three seeds cannot tell.
  acc = _claim(rep, "the final ReLU does not reduce test accuracy")
  diff = 0.88 - (0.90 + 0.89 + 0.90) / 3
  assert acc["numbers"][0]["value"] == pytest.approx(diff, rel=1e-12)
  noise = 2 * math.sqrt(np.var([0.89, 0.90, 0.85], ddof=1) / 3 +
                        np.var([0.90, 0.89, 0.90], ddof=1) / 3)
  cond = acc["conditions"][0]
  assert cond["noise"]["value"] == pytest.approx(noise, rel=1e-9)
  assert cond["margin"] == pytest.approx(diff + 0.02 - noise, rel=1e-9)
  assert acc["verdict"] == "inconclusive"
  assert acc["missing"] == [f"the seeds cannot tell: {diff:.4g} +- {noise:.2g} (2 standard "
                            "errors) lies on both sides of >= -0.02"]
  assert acc["decided_on"] == "seed means" and acc["seeds_total"] == 3
  assert "seeds_holding" not in acc


def test_ufm_verdicts_are_decided_once(built):
  _, _, rep = built
  of = [v for v in rep["verdicts"] if v["claim"] == "the UFM+ minimizer is an orthogonal frame"]
  assert len(of) == 1 and of[0]["verdict"] == "holds" and "seeds_total" not in of[0]


def _by_x(sources) -> dict:
  """{x: [the value of each source curve at x]} over the union of their x."""
  by_x = {}
  for s in sources:
    for x, y in zip(s["x"], s["values"]):
      by_x.setdefault(x, []).append(y)
  return by_x


def _recompute(rec, out):
  """Seed aggregates recomputed with plain Python; other derivations as the report test does."""
  op, src = rec["derived"], rec.get("from", [])
  if op == "mean" and "values" in rec:                  # a mean curve
    by_x = _by_x(src)
    assert rec["x"] == sorted(by_x)
    assert rec["min"] == [min(by_x[x]) for x in rec["x"]]
    assert rec["max"] == [max(by_x[x]) for x in rec["x"]]
    return [sum(by_x[x]) / len(by_x[x]) for x in rec["x"]]
  vals = [s["value"] if "value" in s else s["values"] for s in src]
  if op == "mean":
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
      return None
    if isinstance(vals[0], list):
      return np.mean(np.asarray(vals, float), axis=0).tolist()
    assert (rec.get("min"), rec.get("max")) == (min(vals), max(vals))
    return sum(vals) / len(vals)
  if op == "all" and "values" in rec:                   # a boolean curve
    by_x = _by_x(src)
    assert rec["x"] == sorted(by_x)
    return [all(by_x[x]) for x in rec["x"]]
  if op == "all":
    return all(vals)
  if op == "pooled":
    return [x for v in vals for x in v]
  if op in ("first_epoch_at_least", "first_epoch_below") and "from" in rec:
    curve = src[0]
    for x, v in zip(curve["x"], curve["values"]):
      if (v >= rec["threshold"]) if op == "first_epoch_at_least" else (v < rec["threshold"]):
        return x
    return None
  return checks._recompute_derived(rec, out)


def test_every_aggregate_equals_its_seeds(built):
  out, _, rep = built
  counted = {}
  for rec in checks._records(rep):
    if "derived" in rec:
      assert checks._same(rec["value"] if "value" in rec else rec["values"],
                          _recompute(rec, out), rel=1e-9), rec
      counted[rec["derived"]] = counted.get(rec["derived"], 0) + 1
    elif "line" in rec:
      line = checks._jsonl(out / rec["source"])[rec["line"]]
      assert checks._same(rec["value"], checks._lookup(line, rec["key"])), rec
  assert counted.get("mean", 0) >= 20 and counted.get("pooled", 0) >= 1, counted


def test_combine_verdicts_counts_by_hand():
  def v(verdict, setup):
    return {"check": "of_reached", "check_index": 0, "key": "train", "kind": "claim",
            "section": "E1", "claim": "c", "setup": setup, "verdict": verdict, "rule": "r x_seed3",
            "reference": "", "conditions": [{"lhs": 1, "op": "<", "rhs": 2}], "numbers": [{}]}
  per_seed = [(3, [v("holds", "mlp, seed 3")]), (5, [v("inconclusive", "mlp, seed 5")]),
              (8, [v("does not hold", "mlp, seed 8")])]
  (combined,) = seeds.combine_verdicts(per_seed, {"x_seed3": "x"})
  assert combined["setup"] == "mlp, seeds 3, 5, 8" and combined["verdict"] == "inconclusive"
  assert (combined["seeds_holding"], combined["seeds_failing"],
          combined["seeds_inconclusive"]) == ([3], [8], [5])
  assert combined["seed_count"] == "holds on 1 of 3 seeds" and combined["rule"].endswith("r x")
  (one,) = seeds.combine_verdicts([(0, [v("holds", "mlp, seed 0")])], {})
  assert one["verdict"] == "holds" and one["setup"] == "mlp, seed 0" and one["seeds_total"] == 1


def test_settings_and_seed_slices(tmp_path):
  def run(name, seed, **overrides):
    config = training_config(**overrides, seed=seed)
    return report.Run(name, tmp_path / name, "train", config,
                      record=train_record(config, [6] * 10))
  ufm = report.Run("u", tmp_path / "u", "ufm", {"final_relu": True})
  runs = [ufm, run("a_seed10", 10), run("a_seed2", 2), run("b_seed2", 2, lr=0.5),
          run("c", 0, lr=0.3)]
  settings = seeds.group_settings(runs)
  assert [s.name for s in settings] == ["u", "a", "b_seed2", "c"]
  assert settings[1].seeds == [2, 10] and settings[1].flat["seed"] == [2, 10]
  assert "seeds 2, 10" in report.setup_text(settings[1])
  # One slice per seed value (10 after 2): that seed's run of every setting, and the UFM solve.
  slices = seeds.seed_slices(settings)
  assert [(seed, [r.name for r in rs]) for seed, rs in slices] == [
      (0, ["u", "c"]), (2, ["u", "a_seed2", "b_seed2"]), (10, ["u", "a_seed10"])]
