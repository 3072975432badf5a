"""The report builder on small synthetic runs (made here, following the file contracts).

Checks: the HTML exists and references only images that exist (and embeds exactly those
bytes); every number in report.json equals its source (metrics.jsonl / result.json /
run.json), or is recomputed here with plain NumPy when it is computed or derived; and every
verdict follows from its numbers, with the expected outcome for runs whose outcome is known.
"""

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments_synthetic import make_synthetic_runs, write_ufm
from experiments import report, spec


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = make_synthetic_runs(tmp_path_factory.mktemp("synthetic"))
  out = root.parent / "report"
  references = [
      {"run": "ufm_plus", "key": "loss", "value": 53.288007, "tol": 1e-6,
       "claim": "Thm 1 value", "source": "docs/theory.md#ref-thm1"},
      {"run": "ufm", "key": "loss", "value": 50.0, "tol": 1e-3, "claim": "a wrong reference"},
      {"run": "ufm", "key": "gram.1.2", "op": "<", "value": 0.0, "claim": "negative cosine"},
      {"run": "relu_R10", "key": "dist_of", "op": ">", "value": 0.1, "claim": "far from OF"}]
  checks = [spec.check("references", values=references)] + spec.default_checks({"ufm", "train"})
  html_path = report.build_report([root], out, title="synthetic", checks=checks)
  return root, out, html_path, json.loads((out / "report.json").read_text())


# ---------------------------------------------------------------------------------------------
# Independent readers / recomputations.


def _lookup(obj, key):
  for part in key.split("."):
    obj = obj[int(part)] if isinstance(obj, list) else obj[part]
  return obj


def _jsonl(path):
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _load_emb(path: Path):
  if path.suffix == ".npz":
    with np.load(path) as npz:
      return npz["train_embeddings"], npz["train_labels"]
  return np.load(path), np.load(path.parent / "labels.npy")


def _means_loop(emb, labels):
  k = int(labels.max()) + 1
  means = np.zeros((k, emb.shape[1]))
  counts = np.zeros(k)
  for h, y in zip(emb, labels):
    means[y] += h
    counts[y] += 1
  return means / counts[:, None], counts


def _computed(what, emb, labels):
  means, counts = _means_loop(emb, labels)
  k = len(means)
  if what == "gram":
    return [[float(means[a] @ means[b]) for b in range(k)] for a in range(k)]
  if what == "counts":
    return counts.tolist()
  if what == "angle_values":
    out = []
    for a in range(k):
      for b in range(k):
        if a != b:
          cos = means[a] @ means[b] / (np.linalg.norm(means[a]) * np.linalg.norm(means[b]))
          out.append(1 - math.acos(max(-1.0, min(1.0, cos))) / math.pi)
    return out
  if what == "dist_etf_weighted":
    centered = means - (counts @ means) / counts.sum()
    g = centered @ centered.T
    target = (np.eye(k) - 1.0 / k) / math.sqrt(k - 1)
    return float(np.linalg.norm(g / np.linalg.norm(g) - target))
  raise AssertionError(what)


def _same(a, b, rel=0.0):
  if isinstance(a, list) or isinstance(b, list):
    return np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=max(rel, 1e-12),
                       atol=1e-12)
  if a is None or b is None:
    # report.json stores NaN as null.
    return a is b or (a is None and isinstance(b, float) and math.isnan(b))
  if isinstance(a, bool) or isinstance(b, bool):
    return a == b
  if isinstance(a, str) or isinstance(b, str):
    return a == b
  if math.isnan(a) and math.isnan(b):
    return True
  return a == b if rel == 0 else math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _first_epoch(path, key, threshold, op):
  by_epoch = {}
  for line in _jsonl(path):
    if key in line:
      by_epoch[line["epoch"]] = line[key]
  for epoch in sorted(by_epoch):
    v = by_epoch[epoch]
    if (v >= threshold) if op == "first_epoch_at_least" else (v < threshold):
      return epoch
  return None


def _recompute_derived(rec, out):
  op, src = rec["derived"], rec.get("from", [])
  vals = [s["value"] if "value" in s else s["values"] for s in src]
  if op in ("first_epoch_at_least", "first_epoch_below"):
    return _first_epoch(out / rec["source"], rec["key"], rec["threshold"], op)
  if op == "max":
    present = [v for v in vals if v is not None]
    return max(present) if present else None
  if op == "median":
    return float(np.median(vals[0]))
  if op == "difference":
    if isinstance(vals[0], list):  # two aligned curves
      a = dict(zip(src[0]["x"], vals[0]))
      b = dict(zip(src[1]["x"], vals[1]))
      assert rec["x"] == sorted(set(a) & set(b))
      return [a[x] - b[x] for x in rec["x"]]
    return None if None in vals else vals[0] - vals[1]
  if op == "min_difference":
    a, b = dict(zip(src[0]["x"], vals[0])), dict(zip(src[1]["x"], vals[1]))
    return min(a[x] - b[x] for x in set(a) & set(b))
  if op == "ratio":
    if rec.get("absolute"):
      return abs(vals[0]) / abs(vals[1])
    return vals[0] / vals[1]
  if op == "scale":
    base = vals[0][-1] if isinstance(vals[0], list) else vals[0]
    return rec["factor"] * (abs(base) if rec.get("absolute") else base)
  if op == "cosines":
    g = np.asarray(vals[0], float)
    k = len(g)
    return [[g[a, b] / math.sqrt(g[a, a] * g[b, b]) for b in range(k)] for a in range(k)]
  if op == "abs_difference":
    return abs(vals[0] - rec["reference"])
  if op == "gram_distance":
    a, b = np.asarray(vals[0]), np.asarray(vals[1])
    return float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))
  if op == "standard_errors":   # z sqrt(sum of s^2 / n) over the seed means compared
    spread = [np.var([x["value"] for x in r["from"]], ddof=1) / len(r["from"])
              for r in src if r.get("derived") == "mean" and len(r["from"]) >= 2]
    return rec["z"] * math.sqrt(sum(spread))
  if op == "threshold":
    if "fraction" not in rec:
      return rec["value"]           # an absolute threshold set by the experiment
    k = rec["K"]                    # dist_of(ETF_K) in closed form: the normalised ETF Gram
    etf = math.sqrt(k * (math.sqrt(k - 1) / k - 1 / math.sqrt(k)) ** 2 + 1 / k)
    return rec["fraction"] * etf    # (I - 11^T/K)/sqrt(K-1) against I/sqrt(K)
  raise AssertionError(f"unknown derived op {op}")


def _records(node):
  """Every provenance record (a dict with a source or a derivation) in report.json."""
  if isinstance(node, dict):
    if "source" in node or "derived" in node:
      yield node
    for value in node.values():
      yield from _records(value)
  elif isinstance(node, list):
    for value in node:
      yield from _records(value)


# ---------------------------------------------------------------------------------------------


def test_html_references_only_existing_images(built):
  _, out, html_path, rep = built
  assert html_path == out / "index.html" and html_path.exists()
  text = html_path.read_text()
  imgs = re.findall(r"<img\b[^>]*>", text)
  assert len(imgs) == len(rep["figures"]) >= 8
  for tag in imgs:
    src = re.search(r"src='([^']*)'", tag).group(1)
    file = re.search(r"data-file='([^']*)'", tag).group(1)
    assert src.startswith("data:image/png;base64,"), "images must be embedded (offline)"
    assert (out / file).is_file()
    assert base64.b64decode(src.split(",", 1)[1]) == (out / file).read_bytes()
  for href in re.findall(r"href='([^']*)'", text):
    assert (out / href).is_file(), href
  # No external resources: the page must open offline.
  assert "http://" not in text and "https://" not in text
  files = {f["file"] for f in rep["figures"]}
  assert files == {p.name for p in out.glob("fig_*.png")}


def test_captions_name_the_setup(built):
  _, _, _, rep = built
  kinds = {re.sub(r"_\d+$", "", f["id"]) for f in rep["figures"]}
  assert {"gram_heatmaps", "curves", "relu", "binding", "loss_floor", "angles",
          "geometry_vs_R"} <= kinds
  for fig in rep["figures"]:
    caption = fig["caption"]
    if fig["id"] == "gram_heatmaps":
      assert "class sizes [10, 10, 2, 2]" in caption and "τ=0.5" in caption
      assert "digits" in caption and "no final ReLU" in caption
    else:
      for part in ("digits", "mlp", "batch size", "epochs"):
        assert part in caption, (fig["id"], part)
      assert ("τ=0.1" in caption) == ("SCL" in caption), fig["id"]


def test_every_number_equals_its_source(built):
  _, out, _, rep = built
  checked = {"line": 0, "json": 0, "series": 0, "computed": 0, "derived": 0}
  for rec in _records(rep):
    if "derived" in rec:
      expected = _recompute_derived(rec, out)
      assert _same(rec["value"], expected, rel=1e-12), rec
      checked["derived"] += 1
      continue
    src = out / rec["source"]
    assert src.exists(), rec["source"]
    if "computed" in rec:
      emb, labels = _load_emb(src)
      assert _same(rec["value"], _computed(rec["computed"], emb, labels), rel=1e-9), rec
      checked["computed"] += 1
    elif "values" in rec:
      lines = _jsonl(src)
      assert rec["values"] == [lines[i][rec["key"]] for i in rec["lines"]]
      assert rec["x"] == [lines[i]["epoch"] for i in rec["lines"]]
      checked["series"] += 1
    elif "line" in rec:
      line = _jsonl(src)[rec["line"]]
      assert _same(rec["value"], _lookup(line, rec["key"])), rec
      assert rec.get("epoch") == line["epoch"], rec
      checked["line"] += 1
    else:
      assert _same(rec["value"], _lookup(json.loads(src.read_text()), rec["key"])), rec
      checked["json"] += 1
  assert min(checked.values()) >= 3, checked
  # Setups are the configs, copied.
  for run in rep["runs"]:
    if run["kind"] == "train":
      config = json.loads((out / run["dir"] / "config.json").read_text())
      flat = {}

      def walk(node, prefix=""):
        for k, v in node.items():
          if isinstance(v, dict):
            walk(v, f"{prefix}{k}.")
          else:
            flat[f"{prefix}{k}"] = v
      walk(config)
      assert run["setup"] == flat


def test_known_numbers(built):
  """Numbers whose values are known independently of any code: the synthetic finals, the
  zero-error epochs, and the weighted-centering distance of an exact OF."""
  _, _, _, rep = built
  curves = {f["id"]: f for f in rep["figures"]}
  zero = None
  for fig in rep["figures"]:
    if fig["id"].startswith("curves") and set(fig["data"][0]["runs"]) == {"relu_R1", "relu_R10"}:
      zero = fig["data"][0]
  assert zero is not None
  # relu_R1 reaches ncc_acc_train >= 0.99 at epoch 5 (1.0), relu_R10 at epoch 5 (0.995).
  assert zero["zero_error_epoch"]["relu_R1"]["value"] == 5
  assert zero["zero_error_epoch"]["relu_R10"]["value"] == 5
  assert zero["zero_error_line"]["value"] == 5
  assert curves  # figures exist
  # Weighted centering of the exact OF with sizes (10, 10, 2, 2): by hand, the weighted mean
  # is (10 e1 + 10 e2 + 2 e3 + 2 e4)/24.
  m = np.eye(4)
  mean = (10 * m[0] + 10 * m[1] + 2 * m[2] + 2 * m[3]) / 24
  c = m - mean
  g = c @ c.T
  expected = np.linalg.norm(g / np.linalg.norm(g) - (np.eye(4) - 0.25) / np.sqrt(3))
  ufm_table = next(t for t in rep["tables"] if t["id"] == "ufm")
  row = next(r for r in ufm_table["rows"] if r[0] == "ufm_plus")
  assert row[-1]["value"] == pytest.approx(expected, rel=1e-9)


def test_weighted_centering_matches_paper(tmp_path):
  """docs/theory.md#ref-metrics: weighted centering of an exact OF, K=10 step rho=0.5, dist_etf 0.416120 at
  R=10 and 0.506587 at R=100."""
  for ratio, expected in ((10, 0.416120), (100, 0.506587)):
    sizes = [100] * 5 + [100 // ratio] * 5
    write_ufm(tmp_path / f"of_R{ratio}", sizes=sizes, dim=10, tau=1.0, relu=True,
              means=np.eye(10), loss=1.0, of_loss=1.0)
  report.build_report([tmp_path], tmp_path / "out")
  rep = json.loads((tmp_path / "out" / "report.json").read_text())
  rows = {r[0]: r for r in next(t for t in rep["tables"] if t["id"] == "ufm")["rows"]}
  assert rows["of_R10"][-1]["value"] == pytest.approx(0.416120, abs=1e-6)
  assert rows["of_R100"][-1]["value"] == pytest.approx(0.506587, abs=1e-6)


def _evaluate(cond):
  def val(x):
    return x["value"] if isinstance(x, dict) else x
  lhs, rhs = val(cond["lhs"]), val(cond["rhs"])
  if cond["op"] == "==":
    return lhs == rhs
  noise = val(cond.get("noise")) or 0.0
  if noise and lhs is not None and rhs is not None:  # must hold for all of lhs +- noise
    ends = [_evaluate({**cond, "lhs": lhs + e, "noise": None}) for e in (-noise, noise)]
    return ends[0] if ends[0] == ends[1] else None
  if cond.get("missing") == "infinity":
    lhs = math.inf if lhs is None else lhs
    rhs = math.inf if rhs is None else rhs
    if lhs == rhs == math.inf:
      return None
  if lhs is None or rhs is None:
    return None
  return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}[cond["op"]]


def test_verdicts_follow_the_numbers(built):
  _, _, _, rep = built
  assert len(rep["verdicts"]) >= 15
  for v in rep["verdicts"]:
    results = [_evaluate(c) for c in v["conditions"]]
    if not results or None in results or v["missing"]:  # no evidence, no verdict
      expected = "inconclusive"
    else:
      expected = "holds" if all(results) else "does not hold"
    assert v["verdict"] == expected, v["claim"]
    assert v["rule"] and (v["numbers"] or not v["conditions"]), v["claim"]

  def find(claim, **where):
    hits = [v for v in rep["verdicts"] if v["claim"].startswith(claim)
            and all(s in v["setup"] for s in where.get("setup", []))
            and all(s not in v["setup"] for s in where.get("not_setup", []))]
    assert hits, claim
    return hits

  # Designed outcomes (see conftest.make_synthetic_runs).
  assert find("the UFM+ minimizer is an orthogonal frame")[0]["verdict"] == "holds"
  assert find("UFM+ attains the Theorem 1/2 minimum")[0]["verdict"] == "holds"
  # The "UFM" fixture is an exact ETF, so "neither an OF nor an ETF" must fail.
  assert find("imbalanced UFM (no ReLU) breaks")[0]["verdict"] == "does not hold"
  assert find("imbalanced UFM (no ReLU) reaches a loss below")[0]["verdict"] == "holds"
  assert find("under imbalance, centering the OF by the class-size-weighted")[0]["verdict"] == \
      "holds"
  of_claims = find("SCL with a final ReLU learns an orthogonal frame")
  by_values = {tuple(sorted(n["value"] for n in v["numbers"] if n.get("derived") != "threshold")):
               v["verdict"] for v in of_claims}
  assert by_values[(0.02, 0.04)] == "holds"          # relu_R1 + relu_R10
  assert by_values[(0.5,)] == "does not hold"         # bad_relu
  assert by_values[(0.12,)] == "does not hold"        # relu_nobind (0.12 > 0.3 x 0.320 at K = 10)
  assert by_values[(0.01,)] == "holds"                # relu_bind
  assert find("without the final ReLU the learned geometry is not an OF")[0]["verdict"] == "holds"
  speed = find("batch-binding speeds up convergence")[0]
  assert [n["value"] for n in speed["numbers"]] == [3, 10] and speed["verdict"] == "holds"
  cert = find("with binding the batches seen certify the OF")[0]
  assert cert["verdict"] == "holds" and [n["value"] for n in cert["numbers"]] == [True, True]
  relu_acc = find("the final ReLU does not reduce test accuracy")[0]
  # relu_R10 test 0.88 vs norelu_R10 0.89: -0.01 within the 0.02 tolerance.
  assert relu_acc["numbers"][0]["value"] == pytest.approx(-0.01)
  assert relu_acc["verdict"] == "holds"
  floor = find("with a final ReLU the training loss never goes below")
  assert all(v["verdict"] == "holds" for v in floor)
  # C1 violated (certificate false): the bound is reached by every seed, and the largest
  # dist_of over the seeds (0.43) exceeds 0.1.
  reached = find("UFM+ attains the Theorem 1/2 minimum (every one of 2 seeds)")[0]
  assert reached["verdict"] == "holds"
  non_of = find("with C1/C2 violated, minimizers that are not an OF exist")[0]
  assert non_of["verdict"] == "holds" and non_of["numbers"][-1]["value"] == 0.43
  assert not [v for v in rep["verdicts"] if v["claim"] == "the UFM+ minimizer is an orthogonal "
              "frame" and "class sizes [4, 4, 4]" in v["setup"]]
  # Reference values given as a check.
  assert find("Thm 1 value")[0]["verdict"] == "holds"
  assert find("a wrong reference")[0]["verdict"] == "does not hold"
  assert find("negative cosine")[0]["verdict"] == "holds"        # ETF: -1/3
  assert find("negative cosine")[0]["numbers"][0]["value"] == pytest.approx(-1 / 3)
  assert find("far from OF")[0]["verdict"] == "does not hold"    # final 0.04


def test_bad_input_is_one_line(tmp_path, capsys):
  assert report.main(["--out", str(tmp_path / "o"), str(tmp_path / "missing")]) != 0
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "missing" in err[0]
  (tmp_path / "empty").mkdir()
  assert report.main(["--out", str(tmp_path / "o"), str(tmp_path / "empty")]) != 0
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "neither" in err[0]


def test_run_that_has_just_started(tmp_path):
  """A training workdir with a config but no logged epoch yet (a sweep in progress) is listed
  without curves or numbers; the report still builds."""
  from experiments_synthetic import train_record, training_config
  started = tmp_path / "started"
  started.mkdir()
  (started / "config.json").write_text(json.dumps(training_config()))
  # The trainer writes run.json with config.json, before the first epoch.
  (started / "run.json").write_text(json.dumps(train_record(training_config(), [6] * 10)))
  (started / "metrics.jsonl").write_text("")
  write_ufm(tmp_path / "of", sizes=(3, 3), dim=2, tau=1.0, relu=True, means=np.eye(2),
            loss=1.0, of_loss=1.0)
  html_path = report.build_report([started, tmp_path / "of"], tmp_path / "out")
  rep = json.loads((tmp_path / "out" / "report.json").read_text())
  assert html_path.is_file() and {r["name"] for r in rep["runs"]} == {"started", "of"}
  assert [f["id"] for f in rep["figures"]] == ["gram_heatmaps"]
