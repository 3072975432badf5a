"""The README's Python examples run as printed (each ```python block, in a fresh namespace, in
an empty folder), and the values they compute agree with closed forms computed here."""

import math
import os
import re

import numpy as np
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _blocks():
  with open(os.path.join(REPO, "README.md")) as f:
    return re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)


def _block(marker):
  (block,) = [b for b in _blocks() if marker in b]
  return block


def _run(block, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)   # the examples' run folders land here
  namespace = {"__name__": "__readme__"}
  exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def _of_loss(sizes, tau):
  """SCL (sum over anchors, mean over each anchor's positives) at an orthogonal frame: an
  anchor of class c sees its n_c - 1 positives at inner product 1 and the N - n_c others at 0,
  so its term is log(n_c - 1 + (N - n_c) exp(-1/tau))."""
  n = sum(sizes)
  return sum(c * math.log(c - 1 + (n - c) * math.exp(-1 / tau)) for c in sizes)


def test_the_readme_has_the_api_examples():
  blocks = _blocks()
  assert any("ufm.solve(" in b for b in blocks)
  assert any("deepnet.train_and_evaluate(" in b for b in blocks)


def test_geometry_example(tmp_path, monkeypatch):
  ns = _run(_block("from geometry import"), tmp_path, monkeypatch)
  assert float(ns["loss"]) == pytest.approx(_of_loss([10, 10, 2, 2], 1.0), rel=1e-5)
  assert ns["report"]["dist_of"] == pytest.approx(0.0, abs=1e-6)


def test_ufm_solve_example_reaches_theorem_1s_value(tmp_path, monkeypatch):
  ns = _run(_block("ufm.solve("), tmp_path, monkeypatch)
  result = ns["result"]
  # Balanced UFM+: the orthogonal frame, at Theorem 1's value, on both seeds.
  expected = _of_loss([3, 3, 3], 0.5)
  assert result.loss == pytest.approx(expected, rel=1e-8)
  assert result["of_loss"] == pytest.approx(expected, rel=1e-12)
  assert result.dist_of < 1e-6 and result.fraction_of == 1.0 and result.num_seeds == 2
  h, y = result.embeddings, result.labels
  assert h.shape == (9, 3) and result.seed_embeddings.shape == (2, 9, 3)
  assert (h >= -1e-12).all() and np.allclose(np.linalg.norm(h, axis=1), 1.0)
  # The OF itself: rows of one class coincide, rows of two classes are orthogonal.
  gram = h @ h.T
  assert np.allclose(gram, (y[:, None] == y[None, :]).astype(float), atol=1e-6)
  assert not list(tmp_path.iterdir()), "ufm.solve writes no files"


def test_deepnet_example_trains_and_returns_the_last_metrics_line(tmp_path, monkeypatch):
  ns = _run(_block("deepnet.train_and_evaluate("), tmp_path, monkeypatch)
  run = ns["run"]
  workdir = tmp_path / "runs" / "api_digits"
  assert run.workdir == str(workdir) and run.epochs_run == 1
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  import json  # pylint: disable=g-import-not-at-top
  assert run.metrics == json.loads(lines[-1]) and run.metrics["epoch"] == 1
  assert (workdir / "embeddings_final.npz").exists()
  assert 0.0 <= run.metrics["ncc_acc_test"] <= 1.0


def test_the_api_names_load_no_jax_at_import():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import sys, ufm, deepnet; assert 'jax' not in sys.modules, 'jax at import'; "
          "assert 'solve' in dir(ufm) and 'train_and_evaluate' in dir(deepnet); "
          "assert callable(ufm.solve) and callable(deepnet.train_and_evaluate)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
