"""A full-batch UFM+ solve at CIFAR-10's size on a small machine: memory and time per step.

  .venv/bin/python -m benchmarks.ufm_large                       # N = 50,000, d = 16, K = 10
  .venv/bin/python -m benchmarks.ufm_large --steps 5 --block-size 512 --impl current

H is 50,000 x 16 float32 (K = 10 balanced classes, rows ordered by label), started at a random
non-negative unit-norm point. Each step is the projected gradient step of UFM+ on the whole
batch, h <- normalise(relu(h - lr * grad)), with the sum-form SCL computed by the streaming
path `supcon_loss(..., reduction="sum", block_size=b)`: its memory is O(N b + N d), while the
dense path would hold several 50,000 x 50,000 float32 arrays (10 GB each).

Prints a summary and one JSON line with the peak RSS of this process (resource.getrusage), the
memory XLA planned for one step (temporaries + arguments + outputs), and the seconds per step
(the first step, which compiles, is reported separately).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

from benchmarks import gpu_bench
from benchmarks import scl_bench
from benchmarks import timing


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=50_000, help="rows (default 50000)")
  parser.add_argument("--dim", type=int, default=16)
  parser.add_argument("--block-size", type=int, default=512)
  parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
  parser.add_argument("--lr", type=float, default=0.01)
  parser.add_argument("--impl", default="current",
                      help="current (geometry.losses.supcon_loss)")
  args = parser.parse_args(argv)
  impls = scl_bench.implementations()
  if args.impl not in impls:
    print(f"error: --impl must be one of {sorted(impls)}, got {args.impl!r}", file=sys.stderr)
    return 2
  if args.n < 2 * gpu_bench.NUM_CLASSES or args.dim < gpu_bench.NUM_CLASSES:
    print("error: need --n >= 20 and --dim >= 10 (UFM+ with K = 10 needs d >= K)",
          file=sys.stderr)
    return 2
  if args.steps < 1 or args.block_size < 1:
    print("error: --steps and --block-size must be >= 1", file=sys.stderr)
    return 2

  h, labels = gpu_bench.ufm_plus_start(args.n, args.dim)
  step = jax.jit(gpu_bench.make_ufm_step(impls[args.impl], args.block_size, 0.1, args.lr),
                 donate_argnums=(0,))
  planned = timing.compiled_bytes(
      gpu_bench.make_ufm_step(impls[args.impl], args.block_size, 0.1, args.lr), h, labels)
  start = time.perf_counter()
  h, first_value = step(h, labels)
  jax.block_until_ready(h)
  first_seconds = time.perf_counter() - start
  values, times = [float(first_value)], []
  for _ in range(args.steps):
    start = time.perf_counter()
    h, value = step(h, labels)
    jax.block_until_ready(h)
    times.append(time.perf_counter() - start)
    values.append(float(value))
  rows = np.asarray(h)
  result = {
      "impl": args.impl, "n": args.n, "dim": args.dim, "classes": gpu_bench.NUM_CLASSES,
      "block_size": args.block_size, "dtype": "float32", "steps": args.steps,
      "seconds_per_step": float(np.median(times)), "seconds_per_step_min": float(min(times)),
      "first_step_seconds_incl_compile": first_seconds,
      "peak_rss_bytes": timing.peak_rss_bytes(), "xla_planned_bytes": planned,
      "losses": values, "loss_decreased": values[-1] < values[0],
      "rows_unit_nonnegative": bool(np.all(rows >= 0)
                                    and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)),
      "cpus": os.cpu_count(),
  }
  print(f"UFM+ full batch, N={args.n}, d={args.dim}, K=10, b={args.block_size}, "
        f"[{args.impl}]: {result['seconds_per_step']:.2f} s/step (median of {args.steps}; "
        f"first step with compilation {first_seconds:.1f} s), peak RSS "
        f"{result['peak_rss_bytes'] / 1e9:.2f} GB, XLA plan {planned / 1e9:.2f} GB, "
        f"loss {values[0]:.1f} -> {values[-1]:.1f}")
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
