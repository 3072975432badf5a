"""Each check of experiments/report/checks on hand-made runs: its verdict follows its numbers
on both sides of its threshold (hand-computed values just inside and just outside), and a
missing number (NaN / null) makes it "inconclusive".

Runs are built in memory (`report.Run` with a config and metrics lines, or a result.json
dict); the few checks that read saved embeddings get files written here. Every threshold is
set explicitly through the check's ``thresholds`` option, so the expected outcomes depend on
the numbers below only.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments_synthetic import train_record, training_config, ufm_record, write_ufm
from experiments import report, spec
from experiments.report.checks import REGISTRY

NAN = math.nan


def train(name, root=Path("/nonexistent"), relu=None, before=None, **curves):
  """A training run with metrics lines at epochs 1, 2, ...: curves["dist_of"] = [...]; config
  overrides are the keyword arguments with a dot or one of the config's top-level fields;
  `relu` and `before` set the run record's model.relu_before_embedding and before_embedding
  (by default those of the config's MLP)."""
  model = {"relu_before_embedding": relu, "before_embedding": before}
  config_keys = {k: curves.pop(k) for k in list(curves) if "." in k or k in (
      "loss", "binding", "batching", "batch_size", "lr", "temperature", "seed", "num_epochs")}
  n = max(len(v) for v in curves.values())
  config_keys.setdefault("num_epochs", n)   # the last line is the last epoch: finished
  lines = [{"epoch": e + 1, **{k: v[e] for k, v in curves.items() if e < len(v)}}
           for e in range(n)]
  config = training_config(**config_keys)
  k = len(curves["class_mean_norms"][-1]) if "class_mean_norms" in curves else 10
  record = train_record(config, [6] * k)
  record["model"].update({k: v for k, v in model.items() if v is not None})
  return report.Run(name, root / name, "train", config, lines, record=record)


def ufm(name, root=Path("/nonexistent"), **fields):
  data = {"sizes": [5, 5, 5], "dim": 4, "temperature": 1.0, "final_relu": True, "loss_fn": "scl",
          "batching": "full", "binding": 0, "seed": 0, "dtype": "float64", **fields}
  return report.Run(name, root / name, "ufm", data, record=ufm_record(data))


def verdicts(name, runs, thresholds=None, **options):
  """[(claim, verdict)] of check `name` on `runs`."""
  b = report.Builder(runs, Path("/tmp"), checks=[spec.check(
      name, thresholds=thresholds or {}, **options)])
  b.run_checks()
  return [(v["claim"], v["verdict"]) for v in b.verdicts]


def outcomes(name, runs, thresholds=None, **options):
  return [v for _, v in verdicts(name, runs, thresholds, **options)]


HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("final, expected", [(0.0999, HOLDS), (0.1001, FAILS)])
def test_of_reached_train(final, expected):
  runs = [train("r", dist_of=[0.5, final])]
  assert outcomes("of_reached", runs, {"train_of": 0.1}) == [expected]


def test_of_reached_train_missing_and_not_about_no_relu():
  # R = 1 and R = 10 are one group; R = 10 logged no finite dist_of (a run's final line is
  # its last with a finite dist_of, else its last with a training loss).
  runs = [train("r1", dist_of=[0.5, 0.05], **{"data.ratio": 1.0}),
          train("r10", dist_of=[NAN, NAN], train_loss=[3.0, 2.9])]
  assert outcomes("of_reached", runs, {"train_of": 0.1}) == [UNSURE]
  assert outcomes("of_reached", [train("n", dist_of=[0.5, 0.01],
                                       **{"model.final_relu": False})]) == []


@pytest.mark.parametrize("dist, expected", [(9.9e-4, HOLDS), (1.01e-3, FAILS), (None, UNSURE)])
def test_of_reached_ufm(dist, expected):
  assert outcomes("of_reached", [ufm("u", dist_of=dist)], {"ufm_of": 1e-3}) == [expected]
  # A solve whose batching fails the certificate is the ufm_certificate check's.
  failing = ufm("u", dist_of=dist, certificate={"of_unique": False})
  assert outcomes("of_reached", [failing]) == []


@pytest.mark.parametrize("etf, expected", [(0.0999, HOLDS), (0.1001, FAILS), (NAN, UNSURE)])
def test_etf_centered_train(etf, expected):
  # dist_etf is read at the final line (the last with a finite dist_of), NaN or not.
  runs = [train("r", dist_of=[0.5, 0.05], dist_etf=[0.5, etf])]
  assert outcomes("etf_centered", runs, {"train_etf": 0.1}) == [expected]


@pytest.mark.parametrize("etf, expected", [(9.9e-4, HOLDS), (1.01e-3, FAILS), (None, UNSURE)])
def test_etf_centered_ufm(etf, expected):
  assert outcomes("etf_centered", [ufm("u", dist_etf=etf)], {"ufm_etf": 1e-3}) == [expected]


def _weighted_of_distance():
  """dist_etf of the exact OF of sizes (10, 10, 2, 2) centered by the size-weighted mean."""
  m = np.eye(4)
  c = m - (10 * m[0] + 10 * m[1] + 2 * m[2] + 2 * m[3]) / 24
  g = c @ c.T
  return float(np.linalg.norm(g / np.linalg.norm(g) - (np.eye(4) - 0.25) / np.sqrt(3)))


@pytest.mark.parametrize("shift, expected", [(-1e-6, HOLDS), (1e-6, FAILS)])
def test_etf_centered_weighted(tmp_path, shift, expected):
  sizes = (10, 10, 2, 2)
  labels = np.repeat(np.arange(4), sizes)
  (tmp_path / "u").mkdir()
  np.save(tmp_path / "u" / "embeddings.npy", np.eye(4)[labels])
  np.save(tmp_path / "u" / "labels.npy", labels)
  run = ufm("u", tmp_path, sizes=list(sizes), dist_etf=0.0)
  found = dict(verdicts("etf_centered", [run],
                        {"ufm_etf": 1e-3, "ufm_not": _weighted_of_distance() + shift}))
  assert found["under imbalance, centering the OF by the class-size-weighted mean does not "
               "give an ETF"] == expected


@pytest.mark.parametrize("dist, expected", [([0.6, 0.3, 0.2999], HOLDS),
                                            ([0.6, 0.3, 0.3001], FAILS),
                                            ([0.6, NAN, 0.2], UNSURE)])
def test_zero_error(dist, expected):
  # ncc_acc_train first reaches 0.99 at epoch 2; dist_of there is dist[1].
  runs = [train("r", dist_of=dist, ncc_acc_train=[0.5, 0.995, 1.0])]
  assert outcomes("zero_error", runs, {"zero_error_acc": 0.99}) == [expected]


@pytest.mark.parametrize("final, expected", [(0.1001, HOLDS), (0.0999, FAILS), (NAN, UNSURE)])
def test_relu_symmetry_train_imbalanced(final, expected):
  # R = 10 and R = 100 without ReLU, one group; R = 10 is far from an OF.
  runs = [train("n10", dist_of=[0.9, 0.5], ncc_acc_train=[0.5, 1.0],
                **{"model.final_relu": False}),
          train("n100", dist_of=[final, final], train_loss=[3.0, 2.9], ncc_acc_train=[0.5, 0.99],
                **{"model.final_relu": False, "data.ratio": 100.0})]
  assert outcomes("relu_symmetry", runs, {"train_not_of": 0.1}) == [expected]


@pytest.mark.parametrize("projection_relu", [True, False])
def test_the_run_record_decides_whether_the_embedding_has_a_final_relu(projection_relu):
  # The config's model.final_relu is True in every run (the backbone keeps its ReLU); what
  # is normalised is a projection's output, and only the run record's
  # model.relu_before_embedding (what the trainer's model reports) says which claim the run
  # is about: the report does not read it off the config.
  runs = [train("p", dist_of=[0.9, 0.5], ncc_acc_train=[0.5, 1.0], relu=projection_relu,
                before="projection", **{"model.final_relu": True})]
  about_relu = outcomes("of_reached", runs, {"train_of": 0.1})
  about_no_relu = outcomes("relu_symmetry", runs, {"train_not_of": 0.1})
  assert (about_relu, about_no_relu) == (([FAILS], []) if projection_relu else ([], [HOLDS]))
  linear = [train("l", dist_of=[0.9, 0.5], ncc_acc_train=[0.5, 1.0], relu=False,
                  before="extra_linear", **{"model.final_relu": True})]
  assert outcomes("of_reached", linear) == [] and outcomes("relu_symmetry", linear) == [HOLDS]
  assert report.run_label(linear[0]) == "SCL, no ReLU + linear"


@pytest.mark.parametrize("etf, expected", [(0.0999, HOLDS), (0.1001, FAILS)])
def test_relu_symmetry_train_balanced(etf, expected):
  runs = [train("n", dist_of=[0.9, 0.5], dist_etf=[0.9, etf],
                **{"model.final_relu": False, "data.imbalance": "none"})]
  assert outcomes("relu_symmetry", runs, {"train_etf": 0.1}) == [expected]


@pytest.mark.parametrize("etf, expected", [(9.9e-4, HOLDS), (1.01e-3, FAILS), (None, UNSURE)])
def test_relu_symmetry_ufm_balanced(etf, expected):
  runs = [ufm("u", final_relu=False, dist_etf=etf, dist_of=0.5)]
  assert outcomes("relu_symmetry", runs, {"ufm_etf": 1e-3}) == [expected]


@pytest.mark.parametrize("dist_etf, loss, expected", [(0.0501, 49.0, [HOLDS, HOLDS]),
                                                      (0.0499, 50.1, [FAILS, FAILS]),
                                                      (None, None, [UNSURE, UNSURE])])
def test_relu_symmetry_ufm_imbalanced(dist_etf, loss, expected):
  runs = [ufm("u", final_relu=False, sizes=[10, 10, 2, 2], dist_of=0.1001, dist_etf=dist_etf,
              loss=loss, of_loss=50.0)]
  assert outcomes("relu_symmetry", runs, {"ufm_not": 0.1}) == expected


@pytest.mark.parametrize("gap, expected", [(9.99e-4, HOLDS), (1.001e-3, FAILS)])
def test_ufm_minimum(gap, expected):
  # |gap| / |optimal_loss| against 1e-5: 9.99e-6 and 1.001e-5.
  runs = [ufm("u", gap=gap, optimal_loss=100.0, loss=100.0 + gap)]
  assert outcomes("ufm_minimum", runs, {"ufm_gap_rel": 1e-5}) == [expected]


def test_ufm_minimum_every_seed_and_missing():
  seeds = [{"gap": 0.0, "optimal_loss": 100.0}, {"gap": NAN, "optimal_loss": 100.0}]
  runs = [ufm("u", gap=0.0, optimal_loss=100.0, seeds=seeds)]
  assert verdicts("ufm_minimum", runs) == [
      ("UFM+ attains the Theorem 1/2 minimum (every one of 2 seeds)", UNSURE)]


@pytest.mark.parametrize("second, expected", [(0.1001, HOLDS), (0.0999, FAILS), (None, UNSURE)])
def test_ufm_certificate(second, expected):
  seeds = [{"dist_of": 0.05}, {"dist_of": second}]
  runs = [ufm("u", dist_of=0.05, seeds=seeds, certificate={"of_unique": False})]
  assert outcomes("ufm_certificate", runs, {"ufm_not": 0.1}) == [expected]
  assert outcomes("ufm_certificate", [ufm("v", dist_of=0.5)]) == []   # full batches: unique


@pytest.mark.parametrize("partner, expected", [([0.5, 0.3, 0.1999], HOLDS),
                                               ([0.5, 0.1999, 0.1], FAILS)])
def test_binding_speed_first_epoch(partner, expected):
  # With binding dist_of < 0.2 first at epoch 2; the partner at epoch 3 or 2.
  runs = [train("b1", dist_of=[0.5, 0.1999, 0.1], binding=1),
          train("b0", dist_of=partner, binding=0)]
  assert outcomes("binding_speed", runs, {"convergence_of": 0.2}) == [expected]


def test_binding_speed_neither_reaches():
  never = {"convergence_of": 0.2}
  runs = [train("b1", dist_of=[0.5, 0.25], binding=1), train("b0", dist_of=[0.5, 0.26])]
  assert outcomes("binding_speed", runs, never) == [HOLDS]       # final 0.25 < 0.26
  runs = [train("b1", dist_of=[0.5, 0.27], binding=1), train("b0", dist_of=[0.5, 0.26])]
  assert outcomes("binding_speed", runs, never) == [FAILS]
  # The partner logged no dist_of at all: its final number is missing.
  runs = [train("b1", dist_of=[0.5, 0.25], binding=1), train("b0", train_loss=[3.0, 2.9])]
  assert outcomes("binding_speed", runs, never) == [UNSURE]


@pytest.mark.parametrize("partner, expected", [
    ([0.5, 0.3, 0.3, 0.1999], HOLDS),          # binding at epoch 2, partner at 4: 2 <= 0.5 x 4
    ([0.5, 0.3, 0.1999, 0.1], FAILS),          # partner at 3: 2 > 1.5
    ([0.5, 0.3, 0.3, 0.3], HOLDS)])            # partner never: binding got there
def test_binding_speed_at_most(partner, expected):
  runs = [train("b1", dist_of=[0.5, 0.1999, 0.1, 0.1], binding=1),
          train("b0", dist_of=partner, binding=0)]
  assert outcomes("binding_speed", runs, {"convergence_of": 0.2}, at_most=0.5) == [expected]


def test_binding_speed_at_most_binding_never_gets_there():
  # Neither run reaches 0.2: with at_most binding must get there, so it fails even though
  # its final value is the lower one (the plain check's tie-break says holds).
  runs = [train("b1", dist_of=[0.5, 0.25], binding=1), train("b0", dist_of=[0.5, 0.26])]
  assert outcomes("binding_speed", runs, {"convergence_of": 0.2}, at_most=0.5) == [FAILS]
  assert outcomes("binding_speed", runs, {"convergence_of": 0.2}) == [HOLDS]
  runs = [train("b1", train_loss=[3.0, 2.9], binding=1), train("b0", dist_of=[0.5, 0.1])]
  assert outcomes("binding_speed", runs, {"convergence_of": 0.2}, at_most=0.5) == [UNSURE]


@pytest.mark.parametrize("flag, expected", [(True, HOLDS), (False, FAILS), (None, UNSURE)])
def test_binding_certificate(flag, expected):
  runs = [train("b1", dist_of=[0.5, 0.1], of_unique_so_far=[False, flag], binding=1),
          train("b0", dist_of=[0.5, 0.3], of_unique_so_far=[False, False])]
  assert outcomes("binding_certificate", runs) == [expected]


@pytest.mark.parametrize("low, expected", [(2.99971, HOLDS), (2.99969, FAILS)])
def test_loss_floor_never_below(low, expected):
  # Floor 3.0: the bound is -1e-4 x 3.0 = -3e-4; the gaps are -2.9e-4 and -3.1e-4.
  runs = [train("r", dist_of=[0.5, 0.2, 0.1], train_loss=[3.5, low, 3.1],
                optimal_loss=[3.0, 3.0, 3.0])]
  found = dict(verdicts("loss_floor", runs, {"floor_slack": 1e-4, "floor_rel": 0.05}))
  assert found["with a final ReLU the training loss never goes below the OF floor "
               "(Thm 2 lower bound)"] == expected


@pytest.mark.parametrize("final, floor, expected", [(3.1499, 3.0, HOLDS), (3.1501, 3.0, FAILS),
                                                    (3.1, 0.0, UNSURE)])
def test_loss_floor_approaches(final, floor, expected):
  # (loss - floor) / floor at the last epoch against 0.05: 0.04997 and 0.05003; a zero floor
  # leaves the ratio undefined.
  runs = [train("r", dist_of=[0.5, 0.1], train_loss=[3.5, final], optimal_loss=[3.0, floor])]
  found = dict(verdicts("loss_floor", runs, {"floor_slack": 1e-4, "floor_rel": 0.05}))
  assert found["the training loss approaches the OF floor"] == expected


@pytest.mark.parametrize("value, expected", [(0.5099, HOLDS), (0.5101, FAILS), (NAN, UNSURE)])
def test_angles(tmp_path, value, expected):
  # Two classes at angle theta with 1 - theta/pi = value (both ordered pairs).
  theta = math.pi * (1 - value)
  means = np.array([[1.0, 0.0], [math.cos(theta), math.sin(theta)]])
  labels = np.repeat(np.arange(2), 3)
  (tmp_path / "r").mkdir()
  np.savez(tmp_path / "r" / "embeddings_final.npz", train_embeddings=means[labels],
           train_labels=labels)
  runs = [train("r", tmp_path, dist_of=[0.5, 0.1])]
  assert outcomes("angles", runs, {"angle_tol": 0.01}) == [expected]


@pytest.mark.parametrize("other, expected", [(0.8999, HOLDS), (0.9001, FAILS), (NAN, UNSURE)])
def test_accuracy_relu(other, expected):
  # With ReLU 0.88, without `other`: differences -0.0199 and -0.0201 against -0.02.
  runs = [train("relu", dist_of=[0.5, 0.1], ncc_acc_test=[0.5, 0.88]),
          train("norelu", dist_of=[0.5, 0.4], ncc_acc_test=[0.5, other],
                **{"model.final_relu": False})]
  assert verdicts("accuracy", runs, {"acc_tol": 0.02}) == [
      ("the final ReLU does not reduce test accuracy", expected)]


@pytest.mark.parametrize("other, expected", [(0.8801, HOLDS), (0.8799, FAILS), (0.9199, HOLDS),
                                             (0.9201, FAILS), (NAN, UNSURE)])
def test_accuracy_binding(other, expected):
  # With binding 0.9, without `other`: |difference| 0.0199 or 0.0201 against 0.02.
  runs = [train("b1", dist_of=[0.5, 0.1], ncc_acc_test=[0.5, 0.9], binding=1),
          train("b0", dist_of=[0.5, 0.1], ncc_acc_test=[0.5, other])]
  assert verdicts("accuracy", runs, {"acc_tol": 0.02}) == [
      ("batch-binding has little effect on test accuracy", expected)]


@pytest.mark.parametrize("loss, expected", [(1.0009, HOLDS), (1.0011, FAILS), (None, UNSURE)])
def test_references_approx(loss, expected):
  refs = [{"run": "u", "key": "loss", "value": 1.0, "tol": 1e-3, "claim": "the value"}]
  assert verdicts("references", [ufm("u", loss=loss)], values=refs) == [("the value", expected)]


def test_references_compare_and_setting_names():
  refs = [{"run": "u", "key": "gram.0.1", "op": "<", "value": 0.0, "claim": "negative"},
          {"run": "r", "key": "dist_of", "op": ">", "value": 0.1, "claim": "far"},
          {"run": "absent", "key": "loss", "value": 1.0, "claim": "no run"}]
  runs = [ufm("u", gram=[[1.0, -0.01], [-0.01, 1.0]]), train("r_seed3", dist_of=[0.5, 0.1001])]
  assert verdicts("references", runs, values=refs) == [("negative", HOLDS), ("far", HOLDS),
                                                       ("no run", UNSURE)]
  b = report.Builder(runs, Path("/tmp"), checks=[spec.check("references", values=refs)])
  assert b.run_checks().verdicts[2]["missing"] == ["run absent is missing"]


@pytest.mark.parametrize("steps, expected", [((300, 200, 100), HOLDS), ((300, 301, 100), FAILS),
                                             ((300, None, 100), UNSURE)])
def test_tau_steps(steps, expected):
  runs = [ufm(f"u{tau}", temperature=tau, steps=s) for tau, s in zip((0.1, 0.5, 1.0), steps)]
  runs.append(ufm("other_problem", temperature=0.5, dim=8, steps=1))   # a group of one: no verdict
  assert outcomes("tau_steps", runs) == [expected]


@pytest.mark.parametrize("gram, expected", [([[1.0, 0.0], [0.0, 1.0]], HOLDS),
                                            ([[1.0, -1.0], [-1.0, 1.0]], FAILS),
                                            ([[1.0, NAN], [NAN, 1.0]], UNSURE)])
def test_gram_prediction(gram, expected):
  runs = [ufm("plus", sizes=[5, 5], gram=[[1.0, 0.0], [0.0, 1.0]]),
          ufm("minus", sizes=[5, 5], final_relu=False, gram=[[1.0, -1.0], [-1.0, 1.0]]),
          train("r", dist_of=[0.5, 0.1], gram=[gram, gram])]
  assert outcomes("gram_prediction", runs) == [expected]


# ---------------------------------------------------------------------------------------------


def test_every_check_is_tested_and_every_default_is_registered():
  tested = {name.split("test_")[1] for name in globals() if name.startswith("test_")}
  for name in REGISTRY:
    assert any(t.startswith(name) for t in tested), name
  assert {name for _, name in spec.DEFAULT_CHECKS} <= set(REGISTRY)
  assert [c.name for c in spec.default_checks({"ufm"})] == [
      "ufm_minimum", "ufm_certificate", "of_reached", "etf_centered", "relu_symmetry",
      "gram_prediction"]


def test_a_check_reads_only_its_runs():
  norms = [[0.9] * 4] * 2   # K = 4: the OF threshold is 0.3 x dist_of(ETF_4) = 0.155
  runs = [train("good", dist_of=[0.5, 0.05], class_mean_norms=norms, **{"data.ratio": 1.0}),
          train("bad", dist_of=[0.5, 0.5], class_mean_norms=norms)]
  b = report.Builder(runs, Path("/tmp"), checks=[spec.check("of_reached", runs=["good"])])
  b.run_checks()
  assert [v["verdict"] for v in b.verdicts] == [HOLDS]


def test_unknown_check_or_option_is_one_error(tmp_path, capsys):
  with pytest.raises(report.ReportError, match="unknown check 'nope'"):
    report.Builder([], tmp_path, checks=[spec.check("nope")])
  with pytest.raises(report.ReportError, match="of_reached"):
    report.Builder([], tmp_path, checks=[spec.check("of_reached", colour="red")])
  exp = {"name": "x", "runs": [spec.ufm_run("u", "--sizes", "3,3", "--dim", 2)],
         "checks": [spec.check("of_reached", runs=["v"])]}
  with pytest.raises(spec.ExperimentError, match="unknown run"):
    spec.validate(exp)
  exp = {**exp, "checks": [], "report": {"references": []}}
  with pytest.raises(spec.ExperimentError, match="check\\('references'"):
    spec.validate(exp)


def test_the_report_makes_the_experiments_checks_and_else_the_defaults(tmp_path):
  root = tmp_path / "runs"
  for name, relu in (("ufm_plus", True), ("ufm", False)):
    write_ufm(root / name, sizes=(3, 3), dim=2, tau=1.0, relu=relu, means=np.eye(2),
              loss=1.0, of_loss=1.0)
  exp_file = tmp_path / "tiny.py"
  exp_file.write_text(
      "from experiments.spec import check, ufm_run\n"
      "def get_experiment(preset='cpu'):\n"
      "  return {'name': 'tiny', 'runs': [ufm_run('ufm_plus', '--sizes', '3,3', '--dim', 2),\n"
      "                                   ufm_run('ufm', '--sizes', '3,3', '--dim', 2)],\n"
      "          'checks': [check('of_reached', runs=['ufm_plus'])]}\n")

  def claims(*extra):
    out = tmp_path / f"out{len(extra)}"
    assert report.main([*extra, "--out", str(out), str(root)]) == 0
    return {v["claim"] for v in json.loads((out / "report.json").read_text())["verdicts"]}
  assert claims("--experiment", str(exp_file)) == {"the UFM+ minimizer is an orthogonal frame"}
  defaults = claims()
  assert {"the UFM+ minimizer is an orthogonal frame", "UFM+ attains the Theorem 1/2 minimum",
          "balanced UFM (no ReLU) gives a simplex ETF"} <= defaults


def test_a_heatmap_hint_names_a_setting_whatever_its_seed_folders():
  from experiments.report import figures
  runs = [train("b_seed0", dist_of=[0.5]), train("a_seed0", dist_of=[0.5]),
          train("c", dist_of=[0.5])]
  b = report.Builder(runs, Path("/tmp"), hints={"heatmaps": ["a", "b", "c"]}, checks=[])
  assert [r.name for r in figures.heatmap_runs(b)] == ["a_seed0", "b_seed0", "c"]
