"""SCL loss+gradient benchmarks: streaming vs dense, the machine bound, pytorch-metric-learning.

All numbers are ratios of cases timed in the same process, interleaved (benchmarks.timing).

The machine bound. Loss and gradient of SCL on N rows of dimension d cannot avoid three
N x N x d matmuls (the logits H H^T, and G H and G^T H for the gradient, G = dL/dlogits) and
N^2 exponentials. The bound is the measured time of exactly that work in plain jnp:

  dense bound:     E = exp(H H^T);  (E H, E^T H)
  blocked bound:   the same per row block B of b rows, E_B = exp(H_B H^T), rows E_B H and
                   an accumulated E_B^T H_B (the work of a streaming implementation, with
                   [b, N] instead of [N, N] temporaries, which is often faster on a CPU
                   because the temporaries stay in cache).

A ratio `time / bound` near 1 means the implementation does little beyond the unavoidable.

Also a child-process entry point, used to measure each memory case's peak RSS in a fresh
process:  python -m benchmarks.scl_bench rss --impl current --n 16384 --d 16 --block 512
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from geometry import losses

TEMPERATURE = 0.1


def implementations() -> dict:
  """name -> supcon_loss-compatible function (the project has exactly one SCL)."""
  return {"current": losses.supcon_loss}


def unit_batch(n: int, d: int, num_classes: int = 10, seed: int = 0):
  """Unit-norm random rows and balanced labels (every anchor has positives)."""
  rng = np.random.default_rng(seed)
  h = rng.standard_normal((n, d)).astype(np.float32)
  h /= np.linalg.norm(h, axis=1, keepdims=True)
  y = (np.arange(n) % num_classes).astype(np.int32)
  return jnp.asarray(h), jnp.asarray(y)


def bound_dense(h):
  """Three N x N x d matmuls and N^2 exps, the dense way."""
  e = jnp.exp(h @ h.T)
  return e @ h, e.T @ h


def bound_blocked(h, block_size: int):
  """The same work per block of rows (N must be a multiple of block_size)."""
  n, d = h.shape

  def body(acc, block):
    e = jnp.exp(block @ h.T)                  # [b, N]
    return acc + e.T @ block, e @ h           # G^T H accumulates, G H is per block

  acc, rows = jax.lax.scan(body, jnp.zeros_like(h), h.reshape(n // block_size, block_size, d))
  return acc + rows.reshape(n, d)


def scl_value_and_grad(loss_fn, block_size):
  """jit(value_and_grad) of the sum-form SCL; block_size None is the dense path."""
  return jax.jit(jax.value_and_grad(
      lambda h, y: loss_fn(h, y, temperature=TEMPERATURE, reduction="sum",
                           block_size=block_size)))


def bench_size(n: int, d: int, block_size: int, rounds: int, impls: dict,
               with_memory: bool = True) -> dict:
  """Times the bounds and every implementation (dense and streaming) at one (N, d)."""
  h, y = unit_batch(n, d)
  cases = {"bound_dense": (jax.jit(bound_dense), (h,)),
           "bound_blocked": (jax.jit(lambda h: bound_blocked(h, block_size)), (h,))}
  for name, fn in impls.items():
    cases[f"{name}_dense"] = (scl_value_and_grad(fn, None), (h, y))
    cases[f"{name}_stream"] = (scl_value_and_grad(fn, block_size), (h, y))
  times = timing.time_interleaved(cases, rounds=rounds)
  result = {"n": n, "d": d, "block_size": block_size,
            "times": {k: v.as_dict() for k, v in times.items()}}
  if with_memory:
    result["compiled_bytes"] = {
        name: timing.compiled_bytes(lambda *a, f=fn: f(*a), *args)
        for name, (fn, args) in cases.items()}
  # Agreement of the streaming and dense values (same function, so a sanity check here).
  for name, fn in impls.items():
    dense, stream = cases[f"{name}_dense"][0](h, y), cases[f"{name}_stream"][0](h, y)
    result[f"{name}_stream_vs_dense_value_rel"] = float(
        abs(stream[0] - dense[0]) / abs(dense[0]))
    result[f"{name}_stream_vs_dense_grad_rel"] = float(
        jnp.linalg.norm(stream[1] - dense[1]) / jnp.linalg.norm(dense[1]))
  return result


def rss_cases(n: int, d: int, block_size: int, impls: dict) -> dict:
  """Peak RSS of one loss+gradient call, each case in its own fresh process."""
  out = {"baseline": timing.run_child("benchmarks.scl_bench", [
      "rss", "--impl", "none", "--n", str(n), "--d", str(d), "--block", "0"])}
  for name in impls:
    for label, block in (("dense", 0), ("stream", block_size)):
      out[f"{name}_{label}"] = timing.run_child("benchmarks.scl_bench", [
          "rss", "--impl", name, "--n", str(n), "--d", str(d), "--block", str(block)])
  return out


# ----------------------------------------------------------------------------------------------
# pytorch-metric-learning


def pml_comparison(n: int, d: int, rounds: int) -> dict:
  """Ours vs pytorch-metric-learning's SupConLoss, loss + gradient, on inputs where they agree.

  docs/theory.md#reference-implementations: they agree on unit-norm inputs where every anchor has a positive and the batch
  has at least two classes; PML averages over anchors with a non-zero loss, which is then our
  `reduction="mean"` (over anchors with a positive).
  """
  try:
    import torch
    from pytorch_metric_learning.losses import SupConLoss
  except ImportError as e:
    return {"skipped": f"pytorch-metric-learning comparison skipped: {e.name or e} is not "
                       "installed (pip install torch pytorch-metric-learning elsewhere to run it)"}
  h, y = unit_batch(n, d)
  ours = jax.jit(jax.value_and_grad(
      lambda h, y: losses.supcon_loss(h, y, temperature=TEMPERATURE, reduction="mean")))
  pml_loss = SupConLoss(temperature=TEMPERATURE)
  th = torch.tensor(np.asarray(h))
  ty = torch.tensor(np.asarray(y), dtype=torch.long)

  def pml_step():
    e = th.clone().requires_grad_(True)
    loss = pml_loss(e, ty)
    loss.backward()
    return loss.detach(), e.grad

  pml_value, pml_grad = pml_step()
  our_value, our_grad = ours(h, y)
  value_rel = abs(float(our_value) - float(pml_value)) / abs(float(pml_value))
  # PML normalises internally; its gradient is the tangential part of ours (unit-norm rows).
  ours_np = np.asarray(our_grad)
  hn = np.asarray(h)
  tangential = ours_np - np.sum(ours_np * hn, axis=1, keepdims=True) * hn
  grad_rel = float(np.linalg.norm(tangential - pml_grad.numpy()) / np.linalg.norm(tangential))
  best = {"ours": float("inf"), "pml": float("inf")}
  for _ in range(rounds):   # interleaved; both were warmed up above
    start = time.perf_counter()
    jax.block_until_ready(ours(h, y))
    best["ours"] = min(best["ours"], time.perf_counter() - start)
    start = time.perf_counter()
    pml_step()
    best["pml"] = min(best["pml"], time.perf_counter() - start)
  return {"n": n, "d": d, "seconds_ours": best["ours"], "seconds_pml": best["pml"],
          "speedup_vs_pml": best["pml"] / best["ours"], "value_rel_diff": value_rel,
          "grad_rel_diff": grad_rel, "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------
# Child process: one memory case


def _rss_main(argv) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.scl_bench rss")
  parser.add_argument("--impl", required=True)
  parser.add_argument("--n", type=int, required=True)
  parser.add_argument("--d", type=int, required=True)
  parser.add_argument("--block", type=int, default=0, help="0 = dense")
  args = parser.parse_args(argv)
  h, y = unit_batch(args.n, args.d)
  jax.block_until_ready((h, y))
  result = {"impl": args.impl, "n": args.n, "d": args.d, "block_size": args.block or None}
  if args.impl != "none":
    fn = scl_value_and_grad(implementations()[args.impl], args.block or None)
    compiled = fn.lower(h, y).compile()
    result["setup_peak_rss_bytes"] = timing.peak_rss_bytes()   # inputs + compilation
    start = time.perf_counter()
    jax.block_until_ready(compiled(h, y))
    result["seconds_first_call"] = time.perf_counter() - start
  result["peak_rss_bytes"] = timing.peak_rss_bytes()
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "rss":
    sys.exit(_rss_main(sys.argv[2:]))
  sys.exit("usage: python -m benchmarks.scl_bench rss --impl NAME --n N --d D [--block B]")
