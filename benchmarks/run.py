"""`make bench`: ratios measured in one run (SCL streaming vs dense, SCL vs the machine bound,
SCL vs pytorch-metric-learning, trainer vs the bare network).

  .venv/bin/python -m benchmarks.run            # about 3-5 minutes on 2 CPU cores
  .venv/bin/python -m benchmarks.run --quick    # tiny sizes, well under a minute (tests)

Prints a table and a `ratios:` block (one `name = value` per line), and writes everything to
runs/bench/results.json (--out). Machines are shared and absolute times drift, so the output
is ratios of cases timed in the same process, interleaved, best of a few rounds
(benchmarks.timing). "wall" ratios are what a user waits for; "cpu" ratios (process CPU time)
are printed in brackets because they barely move when other jobs compete for the cores.

"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax

from benchmarks import scl_bench
from benchmarks import timing

GOAL_DENSE = 1.2     # dense SCL loss+grad within 1.2x of the dense bound
GOAL_STREAM = 2.0    # streaming SCL loss+grad within 2x of the machine bound
GOAL_MEMORY_GB = 4.0  # streaming at N = 50,000, d = 16 under 4 GB

FULL = dict(sizes=[(4096, 128), (2048, 16), (8192, 16), (16384, 16)], block=512, rounds=3,
            rss_size=(16384, 16), plan_size=(50_000, 16), pml_size=(4096, 128),
            trainer=dict(width=0.25, batch=64, side=32, steps=2, rounds=3))
QUICK = dict(sizes=[(512, 32), (1024, 16)], block=128, rounds=1, rss_size=(1024, 16),
             plan_size=(4096, 16), pml_size=(512, 32),
             trainer=dict(width=1.0 / 16, batch=4, side=8, steps=1, rounds=1))


def _fmt(value, digits=2):
  return "   n/a" if value is None else f"{value:6.{digits}f}"


def scl_section(settings, impls, results, ratios, lines):
  lines.append("SCL loss+gradient (float32, tau 0.1, sum form), best-of-rounds; "
               "wall ratio [cpu ratio]")
  lines.append("  bound = the unavoidable work timed in plain jnp: 3 N x N x d matmuls + N^2 "
               "exps (dense: [N, N] temporaries; blocked: [b, N])")
  header = (f"  {'impl':9s} {'N':>6s} {'d':>4s} {'b':>5s} | {'dense/bound':>15s} | "
            f"{'stream/bound':>15s} {'stream/blocked':>15s} | {'stream/dense':>15s} | "
            f"{'XLA MiB dense':>13s} {'stream':>7s} {'ratio':>6s}")
  lines.append(header)
  results["scl"] = []
  for n, d in settings["sizes"]:
    row = scl_bench.bench_size(n, d, settings["block"], settings["rounds"], impls)
    results["scl"].append(row)
    t, mem = row["times"], row["compiled_bytes"]
    bound = min(t["bound_dense"]["wall"], t["bound_blocked"]["wall"])
    bound_cpu = min(t["bound_dense"]["cpu"], t["bound_blocked"]["cpu"])
    for name in impls:
      dense, stream = t[f"{name}_dense"], t[f"{name}_stream"]
      r = {
          "dense_vs_bound": dense["wall"] / t["bound_dense"]["wall"],
          "dense_vs_bound_cpu": dense["cpu"] / t["bound_dense"]["cpu"],
          "stream_vs_bound": stream["wall"] / bound,
          "stream_vs_bound_cpu": stream["cpu"] / bound_cpu,
          "stream_vs_blocked_bound": stream["wall"] / t["bound_blocked"]["wall"],
          "stream_vs_blocked_bound_cpu": stream["cpu"] / t["bound_blocked"]["cpu"],
          "stream_vs_dense_time": stream["wall"] / dense["wall"],
          "stream_vs_dense_time_cpu": stream["cpu"] / dense["cpu"],
          "stream_vs_dense_memory_xla": mem[f"{name}_stream"] / mem[f"{name}_dense"],
      }
      for key, value in r.items():
        ratios[f"scl.{name}.n{n}_d{d}.{key}"] = value
      lines.append(
          f"  {name:9s} {n:6d} {d:4d} {settings['block']:5d} | "
          f"{r['dense_vs_bound']:6.2f} [{r['dense_vs_bound_cpu']:5.2f}] | "
          f"{r['stream_vs_bound']:6.2f} [{r['stream_vs_bound_cpu']:5.2f}] "
          f"{r['stream_vs_blocked_bound']:6.2f} [{r['stream_vs_blocked_bound_cpu']:5.2f}] | "
          f"{r['stream_vs_dense_time']:6.2f} [{r['stream_vs_dense_time_cpu']:5.2f}] | "
          f"{timing.mib(mem[f'{name}_dense']):13.0f} {timing.mib(mem[f'{name}_stream']):7.0f} "
          f"{r['stream_vs_dense_memory_xla']:6.3f}")
    bd, bb = t["bound_dense"], t["bound_blocked"]
    lines.append(f"  {'(bounds)':9s} {n:6d} {d:4d} {settings['block']:5d} | dense bound "
                 f"{bd['wall'] * 1e3:.1f} ms, blocked bound {bb['wall'] * 1e3:.1f} ms "
                 f"(blocked/dense {bb['wall'] / bd['wall']:.2f})")
    ratios[f"scl.bound.n{n}_d{d}.blocked_vs_dense"] = bb["wall"] / bd["wall"]
  lines.append("  stream/bound uses the faster of the two bounds (the machine bound); "
               "dense/bound the dense one.")


def rss_section(settings, impls, results, ratios, lines):
  n, d = settings["rss_size"]
  rss = scl_bench.rss_cases(n, d, settings["block"], impls)
  results["rss"] = rss
  base = rss["baseline"]["peak_rss_bytes"]
  lines.append(f"Peak RSS of one SCL loss+gradient call in a fresh process (N={n}, d={d}, "
               f"b={settings['block']}; process with inputs only: {timing.mib(base):.0f} MiB)")
  for name in impls:
    dense = rss[f"{name}_dense"]["peak_rss_bytes"]
    stream = rss[f"{name}_stream"]["peak_rss_bytes"]
    ratio = stream / dense
    ratios[f"rss.{name}.n{n}_d{d}.stream_vs_dense"] = ratio
    ratios[f"rss.{name}.n{n}_d{d}.stream_vs_dense_above_baseline"] = (
        max(stream - base, 1) / max(dense - base, 1))
    lines.append(f"  {name:9s} dense {timing.mib(dense):8.0f} MiB  stream "
                 f"{timing.mib(stream):8.0f} MiB  stream/dense {ratio:.3f} (above the baseline "
                 f"{ratios[f'rss.{name}.n{n}_d{d}.stream_vs_dense_above_baseline']:.3f})")


def plan_section(settings, impls, results, ratios, lines):
  """XLA's planned peak at the issue's size (compile only; benchmarks/ufm_large.py runs it)."""
  n, d = settings["plan_size"]
  shapes = (jax.ShapeDtypeStruct((n, d), "float32"), jax.ShapeDtypeStruct((n,), "int32"))
  results["plan"] = {}
  lines.append(f"XLA-planned peak of streaming loss+gradient at N={n}, d={d} (goal < "
               f"{GOAL_MEMORY_GB:.0f} GB; measured RSS: python -m benchmarks.ufm_large)")
  for name, fn in impls.items():
    planned = timing.compiled_bytes(scl_bench.scl_value_and_grad(fn, settings["block"]),
                                    *shapes)
    results["plan"][name] = planned
    ratios[f"plan.{name}.n{n}_d{d}.vs_goal"] = planned / (GOAL_MEMORY_GB * 1e9)
    lines.append(f"  {name:9s} b={settings['block']}: {planned / 1e9:.2f} GB "
                 f"({planned / (GOAL_MEMORY_GB * 1e9):.3f} of the goal)")


def pml_section(settings, results, ratios, lines):
  n, d = settings["pml_size"]
  pml = scl_bench.pml_comparison(n, d, settings["rounds"])
  results["pml"] = pml
  if "skipped" in pml:
    lines.append(f"SCL vs pytorch-metric-learning: {pml['skipped']}")
    return
  ratios[f"pml.n{n}_d{d}.speedup"] = pml["speedup_vs_pml"]
  lines.append(f"SCL vs pytorch-metric-learning SupConLoss (N={n}, d={d}, mean over anchors, "
               f"every anchor has a positive): ours is {pml['speedup_vs_pml']:.2f}x faster "
               f"(values agree to {pml['value_rel_diff']:.1e}, gradients to "
               f"{pml['grad_rel_diff']:.1e})")


def trainer_section(settings, results, ratios, lines):
  from benchmarks import trainer_bench
  cfg = settings["trainer"]
  tr = trainer_bench.run(cfg["width"], cfg["batch"], cfg["side"], cfg["steps"], cfg["rounds"])
  results["trainer"] = tr
  lines.append(f"Trainer: ResNet-18 width {cfg['width']:g}, batch {cfg['batch']} x 2 views, "
               f"{cfg['side']}x{cfg['side']} synthetic images; images/s vs the bare fwd+bwd")
  if "trainer_error" in tr:
    lines.append(f"  deepnet.train.train_step unavailable ({tr['trainer_error']}); "
                 "only the assembled step is measured")
  lines.append(f"  fwd+bwd alone   {tr['fwd_bwd_images_per_second']:9.1f} img/s")
  for name, label in (("trainer", "Trainer step"), ("assembled", "assembled step")):
    if f"{name}_vs_fwd_bwd" in tr:
      ratios[f"trainer.{name}_vs_fwd_bwd"] = tr[f"{name}_vs_fwd_bwd"]
      lines.append(f"  {label:15s} {tr[f'{name}_images_per_second']:9.1f} img/s  "
                   f"= {tr[f'{name}_vs_fwd_bwd']:.2f} [{tr[f'{name}_vs_fwd_bwd_cpu']:.2f}] "
                   "of fwd+bwd")


def goals_section(settings, impls, ratios, lines):
  lines.append("Goals (issue 6)")
  dense_key = "n4096_d128" if (4096, 128) in settings["sizes"] else None
  for name in impls:
    if dense_key:
      value = ratios[f"scl.{name}.{dense_key}.dense_vs_bound"]
      lines.append(f"  {name:9s} dense within {GOAL_DENSE}x of the bound (N=4096, d=128): "
                   f"{value:.2f}  {'ok' if value <= GOAL_DENSE else 'MISSED'}")
    worst = max(v for k, v in ratios.items()
                if k.startswith(f"scl.{name}.") and k.endswith(".stream_vs_bound"))
    lines.append(f"  {name:9s} streaming within {GOAL_STREAM}x of the machine bound (worst "
                 f"size): {worst:.2f}  {'ok' if worst <= GOAL_STREAM else 'MISSED'}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
  parser.add_argument("--out", default=os.path.join("runs", "bench", "results.json"))
  parser.add_argument("--skip-rss", action="store_true", help="no child processes for RSS")
  parser.add_argument("--skip-trainer", action="store_true")
  args = parser.parse_args(argv)
  settings = QUICK if args.quick else FULL
  if args.quick:
    # Compilation dominates tiny runs; the ratios only have to be meaningful numbers.
    jax.config.update("jax_disable_most_optimizations", True)
  started = time.perf_counter()
  impls = scl_bench.implementations()
  results = {"quick": args.quick, "platform": platform.platform(), "cpus": os.cpu_count(),
             "jax": jax.__version__, "device": jax.devices()[0].device_kind,
             "implementations": list(impls)}
  ratios: dict[str, float] = {}
  lines: list[str] = []

  def section(fn, *a):
    t0 = time.perf_counter()
    fn(*a)
    print("\n".join(lines), flush=True)
    lines.clear()
    results.setdefault("section_seconds", {})[fn.__name__] = time.perf_counter() - t0

  print(f"make bench ({'quick' if args.quick else 'full'}): jax {jax.__version__} on "
        f"{results['device']}, {os.cpu_count()} CPUs; implementations: {', '.join(impls)}",
        flush=True)
  section(scl_section, settings, impls, results, ratios, lines)
  if not args.skip_rss:
    section(rss_section, settings, impls, results, ratios, lines)
  section(plan_section, settings, impls, results, ratios, lines)
  section(pml_section, settings, results, ratios, lines)
  if not args.skip_trainer:
    section(trainer_section, settings, results, ratios, lines)
  section(goals_section, settings, impls, ratios, lines)

  results["ratios"] = ratios
  results["seconds"] = time.perf_counter() - started
  print("ratios:")
  for key in sorted(ratios):
    print(f"  {key} = {ratios[key]:.4g}")
  bad = [k for k, v in ratios.items() if not (math.isfinite(v) and v > 0)]
  if bad:
    print(f"warning: non-finite or non-positive ratios: {bad}", file=sys.stderr)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2, default=float)
  print(f"wrote {args.out} in {results['seconds']:.0f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
