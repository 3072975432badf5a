"""The evaluation subsample (config.eval_test_examples): a class-balanced set of test rows that
depends on the config only, evaluated at the logged epochs before the last; the last epoch
evaluates the whole test split."""

import json
import os

import numpy as np

from deepnet import run_setup
from deepnet import train
from deepnet_train_helper import tiny_config


def test_subsample_is_balanced_sorted_and_fixed_by_its_seed():
  labels = np.array([0] * 5 + [1] * 3 + [2] * 10)
  rows = run_setup.test_subsample(labels, 3, 6, seed=7)
  # 6 // 3 = 2 rows of each class, sorted, distinct.
  assert np.bincount(labels[rows], minlength=3).tolist() == [2, 2, 2]
  assert (np.diff(rows) > 0).all()
  np.testing.assert_array_equal(rows, run_setup.test_subsample(labels, 3, 6, seed=7))
  draws = {tuple(run_setup.test_subsample(labels, 3, 6, seed=s)) for s in range(20)}
  assert len(draws) > 1  # the seed draws the rows
  # A class with fewer rows than its share gives them all.
  rows = run_setup.test_subsample(labels, 3, 12, seed=0)
  assert np.bincount(labels[rows], minlength=3).tolist() == [4, 3, 4]
  for size in (0, len(labels), len(labels) + 1):
    np.testing.assert_array_equal(run_setup.test_subsample(labels, 3, size, seed=0),
                                  np.arange(len(labels)))


def test_rows_depend_on_the_data_seed_only(tmp_path):
  config = tiny_config({"eval_test_examples": 8})
  first = run_setup.setup_run(config, str(tmp_path / "a"))
  other_seed = tiny_config({"eval_test_examples": 8, "seed": 3})
  second = run_setup.setup_run(other_seed, str(tmp_path / "b"))
  np.testing.assert_array_equal(first.eval_test_rows, second.eval_test_rows)
  assert np.bincount(first.test_y[first.eval_test_rows]).tolist() == [2, 2, 2, 2]


def test_logged_epochs_use_the_subsample_and_the_last_the_whole_split(tmp_path):
  workdir = str(tmp_path / "run")
  # 4 classes x 5 test examples; 8 -> 2 per class before the last epoch.
  config = tiny_config({"eval_test_examples": 8, "num_epochs": 3, "log_epochs": [1, 2, 3]})
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["test_examples"] for r in records] == [8, 8, 20]
  # The time accounts: steps and evaluations add up to no more than the run's wall time, and
  # each grows from one logged epoch to the next.
  for r in records:
    assert 0 < r["train_seconds"] and 0 < r["eval_seconds"]
    assert r["train_seconds"] + r["eval_seconds"] <= r["seconds"]
  for key in ("train_seconds", "eval_seconds"):
    assert all(a[key] < b[key] for a, b in zip(records, records[1:]))
  for r in records[:2]:  # 2 examples per class: per-class accuracies are 0, 1/2 or 1
    assert set(r["ncc_per_class_test"]) <= {0.0, 0.5, 1.0}
  # The last line's test NCC accuracy is that of every test example, recomputed here by brute
  # force from the saved embeddings and the train class means.
  saved = np.load(os.path.join(workdir, "embeddings_final.npz"))
  train_emb, train_y = saved["train_embeddings"], saved["train_labels"]
  test_emb, test_y = saved["test_embeddings"], saved["test_labels"]
  assert len(test_y) == 20
  means = np.stack([train_emb[train_y == c].mean(0) for c in range(4)])
  pred = np.array([np.argmin([np.sum((e - m) ** 2) for m in means]) for e in test_emb])
  per_class = [np.mean(pred[test_y == c] == c) for c in range(4)]
  np.testing.assert_allclose(records[-1]["ncc_per_class_test"], per_class, atol=1e-12)
