"""Report section: when the union of a run's batches first certified the OF, against the
batching advisor's prediction logged in its ``run.json`` (``geometry.advisor``,
``docs/batching.md``).

``add_batching(builder)`` adds, for the training runs that have both ``of_unique_so_far`` in
``metrics.jsonl`` and ``batching_advice`` in ``run.json``, a figure (each run's dist_of curve
with the observed epoch and the predicted spread) and a table, every number with its source.
"""

from __future__ import annotations

from experiments.report.figures import Figure, plt_


def _advice(run) -> dict | None:
  """run.json's ``extra.batching_advice`` (a run without one has no row here)."""
  advice = run.record.get("extra", {}).get("batching_advice")
  return advice if isinstance(advice, dict) else None


def observed_certification(builder, run) -> dict:
  """The first logged epoch whose ``of_unique_so_far`` is true, and the logged epoch before it:
  the union first certified in (previous, first]. ``value`` None when never."""
  series = builder.num.series(run, "of_unique_so_far")
  first = previous = None
  for epoch, value in zip(series["x"], series["values"]):
    if value:
      first = epoch
      break
    previous = epoch
  return {"value": first, "previous_logged_epoch": previous, "derived": "first_epoch_true",
          "source": series["source"], "key": "of_unique_so_far"}


def _record(builder, run, key: str, value) -> dict:
  return {"value": value, "source": builder.num.rel(run.path / "run.json"),
          "key": "extra.batching_advice." + key}


def add_batching(builder) -> None:
  """Adds the certification-vs-prediction figure and table to the report's builder."""
  rows, panels = [], []
  # Each seed of a setting (a `experiments.report.seeds.SeedGroup`) has batches of its own.
  runs = [run for entry in builder.train for run in (getattr(entry, "members", None) or [entry])]
  for run in runs:
    advice = _advice(run)
    if advice is None or not run.metric_lines("of_unique_so_far"):
      continue
    until = advice["epochs_until_of_unique"]
    observed = observed_certification(builder, run)
    predicted = {k: _record(builder, run, f"epochs_until_of_unique.{k}", until.get(k))
                 for k in ("mean", "p10", "median", "p90")}
    interval = _record(builder, run, "intervals.epochs_mean",
                       advice["intervals"].get("epochs_mean"))
    rows.append([run.name, builder.num.record_value(run, "batching.batch_size"),
                 _record(builder, run, "views", advice["views"]),
                 _record(builder, run, "binding", advice["binding"]), observed,
                 {"value": observed["previous_logged_epoch"], **{
                     k: observed[k] for k in ("derived", "source", "key")}},
                 predicted["mean"], interval, predicted["p10"], predicted["p90"],
                 _record(builder, run, "p_of_unique", advice["p_of_unique"]),
                 _record(builder, run, "binding_needed", advice["binding_needed"])])
    panels.append((run, observed, until))
  if not rows:
    return
  builder.tables.append({
      "id": "batching_certification",
      "title": "Batches: when the union first certified the OF, observed and predicted",
      "caption": "Observed: the first logged epoch at which the union of the run's batches "
                 "satisfied C1 and C2 (of_unique_so_far), and the logged epoch before it (the "
                 "union first held in between). Predicted: the batching advisor's Monte Carlo "
                 "distribution of that epoch for the run's class sizes, batch size, views and "
                 "binding (run.json), with the 95% interval of its mean; p_of_unique is the "
                 "chance that one epoch alone certifies; binding needed is the smallest binding "
                 "per class that certifies every epoch's kept examples (docs/batching.md).",
      "columns": ["run", "batch size", "views", "binding", "observed epoch",
                  "previous logged epoch", "predicted mean", "95% interval of the mean",
                  "predicted p10", "predicted p90", "p_of_unique (one epoch)",
                  "binding needed"],
      "rows": rows})
  _figure(builder, panels)


def _figure(builder, panels) -> None:
  plt = plt_()
  shown = panels[:12]
  cols = min(len(shown), 4)
  nrows = (len(shown) + cols - 1) // cols
  fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
  data = []
  for ax, (run, observed, until) in zip(axes.ravel(), shown):
    s = builder.num.series(run, "dist_of")
    ax.plot(s["x"], s["values"], "-o", ms=2, color="tab:blue", label="dist_of")
    if until.get("p10") is not None and until.get("p90") is not None:
      ax.axvspan(until["p10"], until["p90"], color="tab:orange", alpha=0.2,
                 label="predicted p10-p90")
    if until.get("mean") is not None:
      ax.axvline(until["mean"], color="tab:orange", ls="--", lw=1, label="predicted mean")
    if observed["value"] is not None:
      ax.axvline(observed["value"], color="k", lw=1.2, label="union certified (logged)")
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.1)
    ax.set_title(run.name, fontsize=9)
    ax.grid(alpha=0.3)
    data.append({"run": run.name, "dist_of": s, "observed": observed, "predicted": until})
  for ax in axes.ravel()[len(shown):]:
    ax.axis("off")
  axes.ravel()[0].legend(fontsize=7)
  file = builder.save(fig, "fig_batching")
  more = "" if len(panels) <= len(shown) else f" (first {len(shown)} of {len(panels)} runs)"
  builder.figures.append(Figure(
      "batching", "Train dist_of with the epoch the batches first certified the OF",
      "Train-set dist_of against epoch, one panel per run" + more + ". Solid black: the first "
      "logged epoch with of_unique_so_far (C1 and C2 over the union of the batches so far); "
      "orange: the batching advisor's prediction for that epoch (dashed: mean; band: 10th-90th "
      "percentile of its simulated runs). The OF is the unique minimizer of the batch losses "
      "only from the solid line on.", file, data))
