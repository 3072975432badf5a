"""Figures of the report: Gram heatmaps, geometry curves over training, final geometry across R.

Each ``add_*(b)`` adds its figures to the builder ``b`` (`experiments.report.builder.Builder`:
its runs, ``num`` for the numbers, ``t`` for the thresholds, ``save`` for the PNG); every
number drawn is a provenance record in the figure's ``data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments import spec
from experiments.report.labels import fmt, line_label, run_label, setup_text
from experiments.report.numbers import Numbers, cosines_from_gram, value_of
from experiments.report.runs import Run, finite, group_runs, ratio_sorted

Y_RANGES = {"dist_of": (0.0, 1.1), "dist_etf": (0.0, 1.1), "nc1": (2e-4, 2e2),
            "mean_cos": (0.0, 1.0)}
METRIC_TITLES = {"dist_of": "distance to OF", "dist_etf": "distance to ETF (centered)",
                 "nc1": "NC1", "mean_cos": "mean pairwise cosine"}


def plt_():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


@dataclass
class Figure:
  id: str
  title: str
  caption: str
  file: str
  data: list


def save(fig, out_dir: Path, stem: str) -> str:
  name = f"{stem}.png"
  fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
  plt_().close(fig)
  return name


def palette(n):
  cmap = plt_().get_cmap("viridis")
  return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def band(ax, series: dict, color, floor: float | None = None):
  """The min-max band of a curve averaged over seeds (nothing for a single run)."""
  if "min" in series and series["x"] and max(series.get("count", [1])) > 1:
    lo, hi = np.asarray(series["min"], np.float64), np.asarray(series["max"], np.float64)
    if floor is not None:
      lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
    ax.fill_between(series["x"], lo, hi, color=color, alpha=0.2, lw=0)


# ----------------------------------------------------------------------------------------------
# Heatmaps.


def heatmap_runs(b) -> list[Run]:
  names = b.hints.get("heatmaps")
  if names:
    # A hint names a setting; its runs are NAME_seedS (one seed: not grouped, still so named).
    def hinted(run):
      return run.name if run.name in names else spec.setting_name(run.name)
    chosen = [r for r in b.runs if hinted(r) in names]
    return sorted(chosen, key=lambda r: names.index(hinted(r)))
  order = {"UFM+": 0, "UFM": 1, "CE-UFM+": 2, "CE-UFM": 2}
  ufm = sorted(b.ufm, key=lambda r: order.get(run_label(r), 3))
  train = b.train
  if len(ufm) + len(train) > 16:
    # Keep the largest R of each group of runs that differ only in R.
    train = [max(g, key=lambda r: r.flat.get("data.ratio", 1)) for g in
             group_runs(b.train, ["data.ratio"])]

  def train_rank(run):
    return (run.loss == "ce", not run.relu, bool(run.binding))
  return (ufm + sorted(train, key=train_rank))[:16]


def add_heatmaps(b):
  runs = [r for r in heatmap_runs(b) if b.num.gram_record(r) is not None]
  if not runs:
    return
  plt = plt_()
  cols = len(runs) if len(runs) <= 5 else 4
  rows = math.ceil(len(runs) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
  data, lines = [], []
  for ax in axes.flat[len(runs):]:
    ax.axis("off")
  for i, (ax, run) in enumerate(zip(axes.flat, runs)):
    gram = b.num.gram_record(run)
    # Cosines put every panel on one scale (CE features are not normalised).
    cos = Numbers.derived("cosines", [gram], cosines_from_gram(gram["value"]).tolist())
    g = np.asarray(cos["value"], np.float64)
    dist = b.num.result(run, "dist_of")
    im = ax.imshow(g, cmap="RdBu_r", vmin=-1, vmax=1)
    k = g.shape[0]
    if k <= 12:
      for row in range(k):
        for col in range(k):
          ax.text(col, row, f"{g[row, col]:.2f}".replace("0.", ".").replace("-.", "-."),
                  ha="center", va="center", fontsize=5 if k > 6 else 7,
                  color="white" if abs(g[row, col]) > 0.6 else "black")
    title = f"({chr(97 + i)}) {run_label(run)}"
    if run.flat.get("data.imbalance") not in (None, "none"):   # a solve's problem has none
      title += f", R={fmt(run.flat.get('data.ratio'))}"
    shown = value_of(dist)
    ax.set_title(title + (f"\ndist_of={shown:.3f}" if dist and finite(shown) else ""),
                 fontsize=9)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.tick_params(labelsize=6)
    data.append({"run": run.name, "panel": chr(97 + i), "gram": gram, "cosines": cos,
                 "dist_of": dist})
    lines.append(f"({chr(97 + i)}) {run.name}: {setup_text(run)}"
                 + ("" if run.final_line is None else
                    f"; final class means at epoch {run.metrics[run.final_line]['epoch']}"))
  fig.colorbar(im, ax=axes, shrink=0.8)
  file = b.save(fig, "fig_gram_heatmaps")
  caption = ("Cosines between the (uncentered) class means, i.e. the Gram matrix G_M = M M^T "
             "normalised to unit diagonal; OF = identity, simplex ETF = -1/(K-1) off the "
             "diagonal. Panel titles give dist_of of G_M. Panels: "
             + "; ".join(lines) + ".")
  b.figures.append(Figure("gram_heatmaps", "Class-mean geometry: theory vs practice",
                          caption, file, data))


# ----------------------------------------------------------------------------------------------
# Curves.


def add_metric_curves(b):
  metrics = ("dist_of", "dist_etf", "nc1", "mean_cos")
  plt = plt_()
  for gi, group in enumerate(group_runs(b.train, ["data.ratio"])):
    group = ratio_sorted(group)
    if not any(r.metric_lines("dist_of") for r in group):
      continue
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    colors = palette(len(group))
    per_zero, zero = b.num.zero_error(group, b.t["zero_error_acc"])
    data = {"runs": [r.name for r in group], "series": {}, "zero_error_epoch": per_zero,
            "zero_error_line": zero}
    for ax, key in zip(axes, metrics):
      lo, hi = Y_RANGES[key]
      for color, run in zip(colors, group):
        s = b.num.series(run, key)
        data["series"].setdefault(key, {})[run.name] = s
        if not s["values"]:
          continue
        y = np.asarray(s["values"], np.float64)
        # The paper's y-ranges, extended only when the data leave them.
        if key == "nc1":
          y = np.maximum(y, 1e-12)
          lo = lo if y.min() >= lo else y.min() / 1.5
          hi = hi if y.max() <= hi else y.max() * 1.5
        else:
          lo = lo if y.min() >= lo else y.min() - 0.05
          hi = hi if y.max() <= hi else y.max() + 0.05
        ax.plot(s["x"], y, "-o", ms=3, color=color, label=line_label(run, ["data.ratio"])
                if run.flat.get("data.imbalance") != "none" else "balanced")
        band(ax, s, color, floor=1e-12 if key == "nc1" else None)
      if value_of(zero) is not None:
        ax.axvline(value_of(zero), color="k", ls="--", lw=1, label="Zero Error")
      if key == "nc1":
        ax.set_yscale("log")
      ax.set_ylim(lo, hi)
      ax.set_xlabel("epoch")
      ax.set_title(METRIC_TITLES[key], fontsize=10)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    file = b.save(fig, f"fig_curves_{gi}")
    zero_text = ("no run reached zero training error" if value_of(zero) is None else
                 f"dashed line: zero-error epoch {value_of(zero)} (the latest over the lines "
                 "of the "
                 f"first logged epoch with balanced train NCC accuracy >= {b.t['zero_error_acc']})")
    caption = (f"Train-set geometry against epoch, one line per R. Setup: "
               f"{setup_text(group[0], skip=['data.ratio'])}; lines: "
               + ", ".join(line_label(r, ["data.ratio"]) for r in group)
               + f". {zero_text}. Runs: " + ", ".join(r.name for r in group) + ".")
    b.figures.append(Figure(f"curves_{gi}", f"Geometry over training: {run_label(group[0])}"
                            f", {group[0].flat.get('data.name')}", caption, file, [data]))


def add_geometry_vs_ratio(b):
  plt = plt_()
  vary = ["data.ratio", "model.final_relu", "loss", "model.extra_linear"]
  for gi, group in enumerate(group_runs(b.train, vary)):
    ratios = {r.flat.get("data.ratio") for r in group}
    if len(ratios) < 2 or not any(r.final_line is not None for r in group):
      continue
    variants = group_runs(group, ["data.ratio"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    data = []
    for variant in variants:
      variant = ratio_sorted(variant)
      entry = {"label": run_label(variant[0]), "runs": [r.name for r in variant]}
      for ax, key in zip(axes, ("dist_of", "dist_etf")):
        recs = [b.num.final(r, key) for r in variant]
        xs = [b.num.setting(r, "data.ratio") for r in variant]
        entry[key] = recs
        entry["ratio"] = xs
        pts = [(value_of(x), value_of(y)) for x, y in zip(xs, recs) if y is not None]
        if pts:
          line, = ax.plot(*zip(*pts), "-o", label=run_label(variant[0]))
          # A mean over seeds: its min-max range as an error bar.
          spread = [(value_of(x), value_of(y), y["min"], y["max"]) for x, y in zip(xs, recs)
                    if y is not None and "min" in y]
          if spread:
            x, m, lo, hi = (np.asarray(c, np.float64) for c in zip(*spread))
            ax.errorbar(x, m, yerr=[m - lo, hi - m], fmt="none", capsize=3,
                        color=line.get_color())
      data.append(entry)
    for ax, key in zip(axes, ("dist_of", "dist_etf")):
      ax.set_xscale("log")
      ax.set_xlabel("imbalance ratio R")
      ax.set_title(f"final {METRIC_TITLES[key]}", fontsize=10)
      ax.set_ylim(0, 1.1)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    file = b.save(fig, f"fig_geometry_vs_R_{gi}")
    scl = next((r for r in group if r.loss == "scl"), group[0])
    caption = ("Final train-set dist_of and dist_etf against the imbalance ratio R, one line "
               "per variant (" + "; ".join(
                   f"{run_label(v[0])}: R = " + ", ".join(
                       fmt(r.flat.get("data.ratio")) for r in v) for v in variants)
               + "). Shared setup: " + setup_text(scl, skip=vary)
               + (" (τ applies to the SCL variants)" if scl is not group[0] or any(
                   r.loss == "ce" for r in group) else "") + ".")
    b.figures.append(Figure(f"geometry_vs_R_{gi}", "Final geometry across R", caption,
                            file, data))
