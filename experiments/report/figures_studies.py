"""Figures of the report's studies: ReLU / binding / temperature comparisons, the training
loss against its OF floor, and the angle box-plots (see `experiments.report.figures`)."""

from __future__ import annotations

import math

import numpy as np

from experiments.report.figures import METRIC_TITLES, Figure, band, palette, plt_
from experiments.report.labels import line_label, run_label, setup_text
from experiments.report.numbers import Numbers, floor_gap, value_of
from experiments.report.runs import (angle_groups, group_runs, num_classes, ratio_sorted,
                                     study_groups)

# The comparison studies: (fields that vary, title, figure stem, panels).
STUDIES = ((("model.final_relu", "loss", "model.extra_linear"),
            "With vs without the final ReLU (and CE)", "relu", ("dist_of", "dist_etf", "mean_cos")),
           (("binding", "batching"), "Batch-binding and batch-shuffling", "binding",
            ("dist_of", "mean_cos", "train_loss")),
           (("temperature",), "Effect of the temperature τ", "temperature",
            ("dist_of", "mean_cos", "train_loss")))


def add_comparisons(b):
  plt = plt_()
  thr = b.t["convergence_of"]
  for fields, title, stem, panels in STUDIES:
    def label_of(run, fields=fields, stem=stem):
      return line_label(run, fields) if stem != "relu" else run_label(run)
    for gi, group in study_groups(b.train, fields):
      fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
      colors = palette(len(group))
      data = {"runs": [r.name for r in group], "series": {}, "first_epoch_below": {}}
      for color, run in zip(colors, group):
        label = label_of(run)
        for ax, key in zip(axes, panels):
          s = b.num.series(run, key)
          data["series"].setdefault(key, {})[run.name] = s
          if s["values"]:
            ax.plot(s["x"], s["values"], "-o", ms=3, color=color, label=label)
            band(ax, s, color)
        fe = b.num.first_epoch(run, "dist_of", thr, "first_epoch_below")
        data["first_epoch_below"][run.name] = fe
        if value_of(fe) is not None:
          axes[0].axvline(value_of(fe), color=color, ls=":", lw=1)
      axes[0].axhline(thr, color="gray", ls="--", lw=1)
      for ax, key in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_title({"train_loss": "training loss"}.get(key, METRIC_TITLES.get(key)),
                     fontsize=10)
        ax.grid(alpha=0.3)
      axes[0].set_ylim(0, 1.1)
      axes[0].legend(fontsize=7)
      file = b.save(fig, f"fig_{stem}_{gi}")
      scl = next((r for r in group if r.loss == "scl"), group[0])
      names = {"dist_of": "dist_of", "dist_etf": "dist_etf", "mean_cos": "mean cosine",
               "train_loss": "training loss"}
      caption = (f"{title}: " + ", ".join(names[p] for p in panels) + " against epoch. "
                 f"Setup: {setup_text(scl, skip=list(fields))}; lines: "
                 + "; ".join(f"{r.name} ({label_of(r)})" for r in group)
                 + f". Dotted verticals: first logged epoch with dist_of < {thr} (gray line).")
      b.figures.append(Figure(f"{stem}_{gi}", title, caption, file, [data]))


def add_loss_floor(b):
  plt = plt_()
  for gi, group in enumerate(group_runs(b.train, ["data.ratio"])):
    group = [r for r in ratio_sorted(group)
             if r.loss == "scl" and r.metric_lines("optimal_loss")]
    if not group:
      continue
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    colors = palette(len(group))
    data = {"runs": [r.name for r in group], "train_loss": {}, "optimal_loss": {}, "gap": {}}
    for color, run in zip(colors, group):
      gaps = floor_gap(b.num, run)
      loss, floor = gaps["loss"], gaps["floor"]
      data["train_loss"][run.name], data["optimal_loss"][run.name] = loss, floor
      label = line_label(run, ["data.ratio"])
      axes[0].plot(loss["x"], loss["values"], "-", color=color, label=f"loss, {label}")
      band(axes[0], loss, color)
      axes[0].plot(floor["x"], floor["values"], "--", color=color, label=f"OF floor, {label}")
      data["gap"][run.name] = gaps["gap"]
      axes[1].plot(gaps["common"], gaps["gap_values"], "-o", ms=3, color=color, label=label)
    axes[1].axhline(0, color="k", lw=1)
    axes[0].set_title("training loss (solid) and OF floor (dashed)", fontsize=10)
    axes[1].set_title("gap = loss - OF floor", fontsize=10)
    for ax in axes:
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    file = b.save(fig, f"fig_loss_floor_{gi}")
    caption = ("Mean training SCL loss of each epoch beside the OF floor of the run's batch "
               "composition (Thm 2, same units incl. loss_scale; docs/theory.md#loss-floor, "
               "#ref-code-floor). Setup: "
               + setup_text(group[0], skip=["data.ratio"]) + "; lines: "
               + ", ".join(line_label(r, ["data.ratio"]) for r in group) + ".")
    b.figures.append(Figure(f"loss_floor_{gi}", "Training loss against the OF floor",
                            caption, file, [data]))


def add_angles(b):
  plt = plt_()
  for gi, group in angle_groups(b.train):
    recs = [b.num.computed(r, "angle_values") for r in group]
    k = num_classes(group[0]) or 2
    etf_line = 1 - math.acos(-1 / (k - 1)) / math.pi
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(group) + 1.6))
    try:
      ax.boxplot([r["value"] for r in recs], orientation="horizontal", widths=0.6)
    except TypeError:  # matplotlib < 3.10
      ax.boxplot([r["value"] for r in recs], vert=False, widths=0.6)
    ax.set_yticks(range(1, len(group) + 1),
                  [line_label(r, ["data.ratio"]) for r in group])
    ax.axvline(0.5, color="tab:red", ls="--", label="OF (ours) 0.5")
    ax.axvline(etf_line, color="tab:blue", ls="--", label=f"ETF {etf_line:.4f}")
    values = np.concatenate([np.asarray(r["value"]) for r in recs])
    lo, hi = min(0.45, values.min() - 0.005), max(0.55, values.max() + 0.005)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("1 - θ/π over ordered class pairs")
    ax.legend(fontsize=7)
    file = b.save(fig, f"fig_angles_{gi}")
    extended = ("" if (lo, hi) == (0.45, 0.55) else
                f" (x-range extended to [{lo:.3f}, {hi:.3f}] to show all values)")
    caption = ("Final pairwise angle values 1 - θ/π between train class means "
               "(docs/theory.md#angles, without the sign factor), one box per R; OF at 0.5, "
               f"simplex ETF (K={k}) at "
               f"{etf_line:.4f}{extended}. Setup: " + setup_text(group[0], skip=["data.ratio"])
               + ".")
    medians = [Numbers.derived("median", [r], float(np.median(r["value"]))) for r in recs]
    b.figures.append(Figure(f"angles_{gi}", "Angle box-plots", caption, file,
                            [{"runs": [r.name for r in group], "angle_values": recs,
                              "medians": medians, "reference": {"of": 0.5, "etf": etf_line}}]))
