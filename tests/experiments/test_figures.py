"""`make figures` (experiments/figures.py) on tiny synthetic run folders: every figure is drawn
from the runs it names, and missing runs are named in one line each, exit 2, nothing written."""

import json

import numpy as np

from experiments import figures
from experiments_synthetic import make_synthetic_runs, training_config, write_train, write_ufm


def _train(root, name, seed, curve):
  write_train(root / f"{name}_seed{seed}", training_config(seed=seed), final_means=np.eye(4, 8),
              dist_of_curve=curve, acc_curve=[0.5, 0.8, 0.9, 1.0], seed=seed)


def _png(path):
  return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_training_figure_is_drawn_from_its_seed_runs(tmp_path, capsys):
  root = tmp_path / "runs"
  names = {n for spec in figures.FIGURES if spec.kind == "train" and
           spec.default_root != "runs/demo" for n in spec.needs}
  for name in sorted(names):
    for seed in (0, 1):
      _train(root, name, seed, [1.0, 0.5 - 0.1 * seed, 0.15, 0.05])
  jumps = root / "jumps"
  jumps.mkdir()
  for name in ("wd_5e-4", "wd_5e-4_rescaled_x2_at_150", "wd_1e-4"):
    (jumps / f"{name}.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss_gap": 1.0 / e, "param_norms": {"backbone/dense3": 10.0}})
        + "\n" for e in (1, 2, 3)))
  stems = [s.stem for s in figures.FIGURES if s.default_root != "runs/demo"]
  docs = tmp_path / "docs"
  assert figures.main([str(root), "--docs", str(docs), "--only", *stems]) == 0
  for stem in stems:
    assert _png(docs / "results" / f"{stem}.png")
  assert "wrote" in capsys.readouterr().out


def test_the_seed_mean_is_the_mean_over_the_seed_folders(tmp_path):
  root = tmp_path / "runs"
  _train(root, "x", 0, [1.0, 0.4, 0.2, 0.1])
  _train(root, "x", 1, [1.0, 0.2, 0.1, 0.0])
  spec = figures.FIGURES[0]
  series = figures.seed_mean(figures._seed_folders([root], "x"), "dist_of")
  assert series["x"] == [1, 3, 5, 10]
  np.testing.assert_allclose(series["values"], [1.0, 0.3, 0.15, 0.05])
  np.testing.assert_allclose(series["min"], [1.0, 0.2, 0.1, 0.0])
  assert spec.stem == "digits_dist_of"


def test_missing_runs_are_named_and_nothing_is_written(tmp_path, capsys):
  root = tmp_path / "runs"
  _train(root, "fashion_mnist_relu_R100_bind1", 0, [1.0, 0.5, 0.15, 0.05])
  docs = tmp_path / "docs"
  (docs / "results").mkdir(parents=True)
  old = docs / "results" / "fashion_mnist_binding.png"
  old.write_bytes(b"old")
  code = figures.main([str(root), "--docs", str(docs), "--only", "fashion_mnist_binding",
                       "fashion_mnist_jumps"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 2
  assert "fashion_mnist_binding.png needs fashion_mnist_relu_R100_bind0[_seedK]" in err[0]
  assert "bind1" not in err[0] and "make sweep EXP=recipe_targets" in err[0]
  assert "wd_5e-4.jsonl" in err[1]
  assert old.read_bytes() == b"old"
  assert figures.main(["--only", "nope"]) == 2
  assert "unknown figure nope" in capsys.readouterr().err


def test_the_demo_figures_come_from_the_demo_report(tmp_path):
  root = tmp_path / "runs"
  make_synthetic_runs(tmp_path)
  demo = tmp_path / "demo"
  demo.mkdir()
  for source, name in (("ufm_plus", "ufm_plus"), ("ufm", "ufm"), ("relu_R10", "digits_relu"),
                       ("norelu_R10", "digits_norelu"), ("relu_R1", "digits_ce")):
    (root / source).rename(demo / f"{name}_seed0" if name.startswith("digits") else demo / name)
  docs = tmp_path / "docs"
  code = figures.main([str(demo), "--docs", str(docs), "--only", "fig_gram_heatmaps"])
  assert code == 0
  for file in ("fig_gram_heatmaps", "fig_curves_0", "fig_angles_0", "fig_loss_floor_0"):
    assert _png(docs / "demo" / f"{file}.png")


def test_an_optional_line_without_runs_is_left_out_and_said_so(tmp_path, capsys):
  root = tmp_path / "runs"
  spec = next(s for s in figures.FIGURES if s.stem == "e1_fashion_mnist_resnet")
  assert spec.optional == ("fashion_mnist_resnet_relu_R1",)
  required = [n for n in spec.needs if n not in spec.optional]
  for name in required[1:]:
    _train(root, name, 0, [1.0, 0.5, 0.15, 0.05])
  docs = tmp_path / "docs"
  # A required line missing still stops the figure ...
  assert figures.main([str(root), "--docs", str(docs), "--only", spec.stem]) == 2
  assert f"needs {required[0]}[_seedK]" in capsys.readouterr().err
  assert not (docs / "results" / f"{spec.stem}.png").exists()
  # ... the optional one does not: the figure is drawn and the output names what it lacks.
  _train(root, required[0], 0, [1.0, 0.4, 0.1, 0.02])
  assert figures.main([str(root), "--docs", str(docs), "--only", spec.stem]) == 0
  out = capsys.readouterr().out
  assert "drawn without fashion_mnist_resnet_relu_R1" in out
  assert _png(docs / "results" / f"{spec.stem}.png")
