"""The batching advisor on CIFAR-10-sized class sizes: the table of docs/batching.md, and its
speed against a plain loop over the trainer's own certificate.

  python -m benchmarks.advisor_table --table            # about 5 minutes on 2 busy CPU cores
  python -m benchmarks.advisor_table --speed            # about two minutes

``--table``: for step and exp imbalance, R in {1, 10, 100}, n_max 5000, K = 10, V = 2 and
B in {32, 50, 128, 512, 1024}, without binding: p_c1, p_c2 (one epoch), the mean and 90th
percentile of the epochs until the union satisfies C1 and C2, the binding needed, and with
that binding p_of_unique (exact) and the epochs until the union holds. Prints a markdown
table.

``--speed``: seconds per simulated run (a run = epochs until the union certifies) of
``geometry.advisor.simulate`` against a plain loop (``geometry.batching.random_partition`` +
``BatchCertificate.update`` each epoch, as the trainer does), timed in one process; then the
wall time of whole advices at R = 100.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from geometry import advisor, batching, imbalance

RATIOS = (1, 10, 100)
BATCH_SIZES = (32, 50, 128, 512, 1024)


def table(trials: int, seed: int) -> str:
  rows = ["| imbalance | R | B | dropped | p_c1 | p_c2 [95%] | epochs mean [95%] | "
          "epochs p90 [95%] | binding needed | with it: p_of_unique | with it: epochs mean, p90 |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
  for kind in ("step", "exp"):
    for ratio in RATIOS:
      if kind == "exp" and ratio == 1:
        continue   # the same sizes as step R = 1 (balanced)
      sizes = imbalance.class_sizes(10, kind, ratio, 5000)
      for b in BATCH_SIZES:
        a = advisor.advise(sizes, b, views=2, binding=0, trials=trials, seed=seed)
        until, iv = a["epochs_until_of_unique"], a["intervals"]
        needed = a["binding_needed"]
        bound = advisor.advise(sizes, b, views=2, binding=needed, trials=trials, seed=seed)
        bound_until = bound["epochs_until_of_unique"]
        p2lo, p2hi = iv["p_c2"]
        mlo, mhi = iv["epochs_mean"]
        qlo, qhi = iv["epochs_p90"]
        rows.append(
            f"| {kind if ratio > 1 else 'none'} | {ratio} | {b} | {a['dropped_per_epoch']} | "
            f"{a['p_c1']:.3g} | {a['p_c2']:.3f} [{p2lo:.3f}, {p2hi:.3f}] | {until['mean']:.1f} "
            f"[{mlo:.1f}, {mhi:.1f}] | {until['p90']} [{qlo}, {qhi}] | {needed} | "
            f"{bound['p_of_unique']:.3g} | {bound_until['mean']:.2f}, {bound_until['p90']} |")
        print(rows[-1], flush=True)
  return "\n".join(rows)


def _plain(sizes, batch_size, views, seeds, max_epochs=10_000):
  labels = np.repeat(np.arange(len(sizes)), sizes)
  epochs = []
  for seed in seeds:
    union = batching.BatchCertificate(labels, views=views)
    for epoch in range(1, max_epochs + 1):
      union.update(batching.random_partition(len(labels), batch_size, seed, epoch))
      if union.result()["of_unique"]:
        break
    epochs.append(epoch)
  return np.array(epochs)


def speed(plain_runs: int, trials: int) -> None:
  for kind, ratio, b in (("step", 10, 128), ("exp", 100, 512), ("none", 1, 1024)):
    sizes = imbalance.class_sizes(10, kind, ratio, 5000)
    t0 = time.perf_counter()
    plain = _plain(sizes, b, 2, range(plain_runs))
    t_plain = (time.perf_counter() - t0) / plain_runs
    t0 = time.perf_counter()
    sim = advisor.simulate(sizes, b, views=2, trials=trials, seed=0)
    t_adv = (time.perf_counter() - t0) / trials
    print(f"{kind} R={ratio} B={b} n={sum(sizes)}: plain loop {t_plain:.3f} s/run "
          f"(mean epochs {plain.mean():.1f}, {plain_runs} runs), advisor {t_adv:.4f} s/run "
          f"(mean epochs {sim['epochs'].mean():.1f}, {trials} runs): ratio "
          f"{t_plain / t_adv:.0f}x", flush=True)
  for kind in ("step", "exp"):
    sizes = imbalance.class_sizes(10, kind, 100, 5000)
    for b in (32, 128, 1024):
      t0 = time.perf_counter()
      advisor.advise(sizes, b, views=2, trials=trials, seed=0)
      print(f"advise {kind} R=100 B={b}, {trials} trials: {time.perf_counter() - t0:.1f} s",
            flush=True)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.advisor_table")
  parser.add_argument("--table", action="store_true")
  parser.add_argument("--speed", action="store_true")
  parser.add_argument("--trials", type=int, default=200)
  parser.add_argument("--plain-runs", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if not (args.table or args.speed):
    parser.error("give --table and/or --speed")
  if args.speed:
    speed(args.plain_runs, args.trials)
  if args.table:
    print(table(args.trials, args.seed))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
