"""A tiny end-to-end run of a recipe config, shared by the recipe tests."""

import json
import math

from deepnet import train


def train_tiny(config, workdir) -> list[dict]:
  """Trains `config` (already shrunk by the caller) into `workdir` and returns its metrics
  lines, after checking what holds for every SCL run with the final ReLU: finite loss and
  dist_of, and the loss never below the OF floor of its batches (Theorem 2: non-negative
  embeddings behind the ReLU)."""
  train.train_and_evaluate(config, str(workdir))
  with open(workdir / "metrics.jsonl") as f:
    lines = [json.loads(line) for line in f]
  for record in lines:
    assert math.isfinite(record["train_loss"]) and math.isfinite(record["dist_of"])
    assert record["train_loss"] >= record["optimal_loss"] - 1e-5
  return lines
