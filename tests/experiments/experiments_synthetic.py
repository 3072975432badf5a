"""Synthetic run folders that follow the file contracts of docs/contracts.md exactly.

UFM folders: result.json (+ embeddings.npy, labels.npy); training workdirs: config.json (the
training config as JSON), metrics.jsonl and embeddings_final.npz; both run.json, the schema-2
run record, written out by hand here. The numbers are computed here with plain NumPy from
exact frames (never with the code under test), so a report built from these folders can be
checked against them.
"""

import json
import math
from pathlib import Path

import numpy as np


def _np_metrics(means):
  """dist_of / dist_etf / mean_cos of class means, written out with plain NumPy."""
  m = np.asarray(means, np.float64)
  k = len(m)
  g = m @ m.T
  dist_of = np.linalg.norm(g / np.linalg.norm(g) - np.eye(k) / np.sqrt(k))
  c = m - m.mean(0)
  gc = c @ c.T
  target = (np.eye(k) - 1.0 / k) / np.sqrt(k - 1)
  dist_etf = np.linalg.norm(gc / np.linalg.norm(gc) - target)
  n = np.linalg.norm(m, axis=1)
  cos = g / np.outer(n, n)
  mean_cos = (cos.sum() - np.trace(cos)) / (k * (k - 1))
  return float(dist_of), float(dist_etf), float(mean_cos)


def etf_means(k, d):
  """Unit simplex-ETF rows (pairwise cosine -1/(k-1)), padded to d columns."""
  c = np.eye(k) - 1.0 / k
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  return np.pad(c, ((0, 0), (0, d - k)))


def write_run_json(folder: Path, kind: str, **facts):
  """run.json (docs/contracts.md#run-json, schema 2) with the facts given (`run_record`)."""
  record = run_record(kind, **facts)
  (folder / "run.json").write_text(json.dumps(record))
  return record


def run_record(kind: str, *, class_sizes, dim, relu, loss, tau, batching, batch_size, binding,
               seeds, planned, reached, extra):
  """A schema-2 run record (docs/contracts.md#run-json) with the facts given."""
  return {
      "schema": 2, "kind": kind, "setup": f"synthetic {kind} run",
      "data": {"name": "digits" if kind == "train" else "ufm", "source": None},
      "class_sizes": list(class_sizes), "num_classes": len(class_sizes),
      "model": {"name": "mlp" if kind == "train" else ("ufm+" if relu else "ufm"),
                "embedding_dim": dim, "relu_before_embedding": relu,
                "before_embedding": "backbone" if kind == "train" else "free_features"},
      "loss": {"name": loss, "temperature": tau if loss == "scl" else None},
      "batching": {"scheme": batching, "batch_size": batch_size, "binding": binding},
      "seeds": list(seeds),
      "epochs": {"unit": "epochs" if kind == "train" else "steps", "planned": planned,
                 "reached": reached},
      "extra": extra, "provenance": {"python": "3"}}


def train_record(config: dict, class_sizes, dim: int = 16, extra=None) -> dict:
  """The run record of a training run of `training_config` (an MLP whose last layer, with
  final_relu, gives the embedding)."""
  return run_record("train", class_sizes=list(class_sizes), dim=dim,
                    relu=config["model"]["final_relu"], loss=config["loss"],
                    tau=config["temperature"], batching=config["batching"],
                    batch_size=config["batch_size"], binding=config["binding"],
                    seeds=[config["seed"]], planned=config["num_epochs"], reached=None,
                    extra=dict(extra or {}, config=config))


def ufm_record(problem: dict, steps: int = 1000, seeds=(0,)) -> dict:
  """The run record of a UFM solve of `problem` (result.json's definition: sizes, dim,
  temperature, final_relu, loss or loss_fn, batching, binding)."""
  return run_record("ufm", class_sizes=problem["sizes"], dim=problem["dim"],
                    relu=problem["final_relu"], loss=problem.get("loss_fn", problem.get("loss")),
                    tau=problem["temperature"], batching=problem["batching"], batch_size=None,
                    binding=problem["binding"], seeds=list(seeds), planned=steps,
                    reached=steps, extra={"problem": problem})


def write_ufm(folder: Path, *, sizes, dim, tau, relu, means, loss, of_loss, steps=1000,
              extra=None):
  """A `ufm solve` result folder with collapsed embeddings at `means`."""
  folder.mkdir(parents=True)
  labels = np.repeat(np.arange(len(sizes)), sizes)
  emb = np.asarray(means, np.float64)[labels]
  np.save(folder / "embeddings.npy", emb)
  np.save(folder / "labels.npy", labels)
  dist_of, dist_etf, mean_cos = _np_metrics(means)
  optimal = of_loss if relu else None
  result = {
      "loss": loss, "of_loss": of_loss, "optimal_loss": optimal,
      "gap": None if optimal is None else loss - optimal,
      "dist_of": dist_of, "dist_etf": dist_etf, "nc1": 0.0, "nc1_over_k": 0.0,
      "mean_cos": mean_cos, "class_mean_norms": [1.0] * len(sizes), "converged": True,
      "steps": steps, "seconds": 1.5, "gram": (np.asarray(means) @ np.asarray(means).T).tolist()}
  # As `ufm solve` writes it: the problem definition at the top level, except its loss kind
  # ("loss" is the objective there), and complete under "problem".
  problem = {"sizes": list(sizes), "dim": dim, "temperature": tau, "final_relu": relu,
             "loss": "scl", "batching": "full", "binding": 0, "seed": 0, "dtype": "float64"}
  result.update({k: v for k, v in problem.items() if k != "loss"}, loss_fn="scl",
                problem=problem)
  result.update(extra or {})
  record = ufm_record(dict(problem, batching=result["batching"]), steps,
                      [s["seed"] for s in result.get("seeds", [{"seed": 0}])])
  (folder / "run.json").write_text(json.dumps(record))
  (folder / "result.json").write_text(json.dumps(result))
  (folder / "gram.png").write_bytes(b"")
  return result


def training_config(**overrides):
  """A training config dict with the fields of briefs/config_schema.md."""
  config = {
      "loss": "scl", "temperature": 0.1, "loss_scale": 1.0,
      "model": {"name": "mlp", "width": 1.0, "final_relu": True, "extra_linear": False,
                "head_dim": 0, "mlp_widths": [32, 16], "dtype": "float32"},
      "data": {"name": "digits", "data_dir": None, "download": False, "imbalance": "step",
               "ratio": 10.0, "rho": 0.5, "n_max": 100, "views": "vflip", "subsample_seed": 1},
      "batching": "shuffle", "binding": 0, "batch_size": 50, "num_epochs": 10, "lr": 0.1,
      "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "multistep",
      "lr_decay_epochs": [3, 7], "lr_decay_factor": 0.1, "log_epochs": [], "seed": 0,
      "checkpoint_every_epochs": 5, "eval_batch_size": 1000, "distributed": False}
  for key, value in overrides.items():
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
      node = node[part]
    node[parts[-1]] = value
  return config


def write_train(folder: Path, config: dict, *, final_means, dist_of_curve, acc_curve,
                test_acc=0.9, floor=3.0, loss_curve=None, epochs=(1, 3, 5, 10), per_class=6,
                seed=0, nan_minority=False, extra=None):
  """A training workdir: config.json, run.json, metrics.jsonl and embeddings_final.npz."""
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps(config))
  k = len(final_means)
  record = train_record(config, [per_class] * k, final_means.shape[1], extra)
  (folder / "run.json").write_text(json.dumps(record))
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(k), per_class)
  emb = np.asarray(final_means)[labels] + 0.01 * rng.standard_normal((len(labels),
                                                                       final_means.shape[1]))
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  np.savez(folder / "embeddings_final.npz", train_embeddings=emb, train_labels=labels,
           output="embedding")
  loss_curve = loss_curve or [floor + 2.0 / (i + 1) for i in range(len(epochs))]
  lines = []
  for i, epoch in enumerate(epochs):
    d = dist_of_curve[i]
    line = {
        "epoch": epoch, "step": epoch * 10, "train_loss": loss_curve[i], "optimal_loss": floor,
        "dist_of": d, "dist_etf": 0.5 * d + 0.01, "nc1": 10.0 ** (1 - i), "nc1_over_k": 0.1,
        "mean_cos": d / 2, "class_mean_norms": [0.9] * k, "test_dist_of": d + 0.1,
        "test_dist_etf": 0.3, "test_nc1": 1.0, "test_nc1_over_k": 0.1, "test_mean_cos": 0.2,
        "test_class_mean_norms": [0.8] * k, "ncc_acc_train": acc_curve[i],
        "ncc_acc_test": test_acc, "ncc_maj_train": acc_curve[i], "ncc_min_train": acc_curve[i],
        "ncc_maj_test": test_acc + 0.02, "ncc_min_test": test_acc - 0.02,
        "of_unique_epoch": bool(config["binding"]), "of_unique_so_far": True}
    if nan_minority:  # e.g. a class with no test example: the trainer logs NaN
      line["ncc_min_test"] = math.nan
    lines.append(json.dumps(line))
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def make_synthetic_runs(tmp_path):
  """Two UFM solves and seven training runs with known outcomes.

  - ufm_plus: exact OF for sizes (10, 10, 2, 2): every UFM+ verdict holds.
  - ufm: a K=4 ETF at the same sizes: "neither OF nor ETF" does NOT hold (it is an ETF).
  - relu_R1, relu_R10: ReLU runs converging to the OF (final dist_of 0.02, 0.04).
  - norelu_R10: no ReLU, final dist_of 0.45 (not an OF).
  - relu_bind / relu_nobind: binding reaches dist_of < 0.2 at epoch 3, without at epoch 10.
  - bad_relu: ReLU run at R=100 with final dist_of 0.5: "learns an OF" does not hold.
  """
  root = tmp_path / "runs"
  k, d = 4, 8
  sizes = (10, 10, 2, 2)
  of = np.eye(k, d)
  write_ufm(root / "ufm_plus", sizes=sizes, dim=d, tau=0.5, relu=True, means=of,
            loss=53.288007, of_loss=53.288007)
  write_ufm(root / "ufm", sizes=sizes, dim=d, tau=0.5, relu=False, means=etf_means(k, d),
            loss=49.401315, of_loss=53.288007)
  # A fixed batching that violates C1 (certificate false), two seeds at the bound, not OFs.
  bound = 6.617337
  seeds = [{"seed": s, "loss": bound, "optimal_loss": bound, "gap": g, "dist_of": dist}
           for s, g, dist in ((0, 0.0, 0.43), (1, 1e-12, 0.31))]
  split = np.eye(3, 8)
  split[0] = np.array([1, 0, 0, 1, 0, 0, 0, 0]) / np.sqrt(2)   # class 0 mean: a blend
  write_ufm(root / "ufm_c1", sizes=(4, 4, 4), dim=8, tau=1.0, relu=True, means=split,
            loss=bound, of_loss=bound, extra={
                "batching": "fixed:c1.json", "seeds": seeds,
                "certificate": {"c1_connected": {"0": False, "1": False, "2": False},
                                "c2_pairs_missing": [], "of_unique": False}})
  kk, dd = 10, 16
  of10 = np.eye(kk, dd)
  good = [0.9, 0.3, 0.1, 0.02]
  acc = [0.5, 0.9, 1.0, 1.0]
  write_train(root / "relu_R1", training_config(**{"data.ratio": 1.0}),
              final_means=of10, dist_of_curve=good, acc_curve=acc, test_acc=0.91)
  write_train(root / "relu_R10", training_config(), final_means=of10,
              dist_of_curve=[0.9, 0.4, 0.15, 0.04], acc_curve=[0.4, 0.8, 0.995, 1.0],
              test_acc=0.88)
  write_train(root / "norelu_R10", training_config(**{"model.final_relu": False}),
              final_means=etf_means(kk, dd), dist_of_curve=[0.9, 0.6, 0.5, 0.45],
              acc_curve=acc, test_acc=0.89, loss_curve=[5.0, 3.5, 2.9, 2.5])
  write_train(root / "relu_bind", training_config(**{"binding": 1, "batch_size": 20,
                                                     "data.ratio": 50.0}),
              final_means=of10, dist_of_curve=[0.8, 0.15, 0.05, 0.01], acc_curve=acc)
  write_train(root / "relu_nobind", training_config(**{"batch_size": 20, "data.ratio": 50.0}),
              final_means=of10, dist_of_curve=[0.9, 0.6, 0.3, 0.12], acc_curve=acc)
  write_train(root / "bad_relu", training_config(**{"data.ratio": 100.0, "lr": 0.05}),
              final_means=of10 + 0.3, dist_of_curve=[1.0, 0.8, 0.6, 0.5],
              acc_curve=[0.3, 0.5, 0.7, 0.8], nan_minority=True)
  write_train(root / "ce_R10", training_config(**{"loss": "ce"}), final_means=etf_means(kk, dd),
              dist_of_curve=[0.9, 0.5, 0.4, 0.35], acc_curve=acc, test_acc=0.9)
  return root
