"""Seeds of an experiment: seed runs grouped into settings, mean curves, verdicts over seeds.

An experiment runs each training run for several seeds (``experiments.spec.expand_seeds``
expands a run ``NAME`` into the folders ``NAME_seed0``, ``NAME_seed1``, ...). The report treats
the runs whose configs differ only in ``seed`` as one *setting*:

- curves are the mean over seeds on the union of the logged epochs, with a min-max band: at
  epoch e, over the n_e seeds that logged a finite value,
  ``mean_e = (1/n_e) sum_s v_{s,e}``, ``min_e = min_s v_{s,e}``, ``max_e = max_s v_{s,e}``;
- a final value (tables) is the mean of the seeds' own final values, with their min and max;
- a verdict that reads a training run is decided on each seed separately (seed s: the runs of
  seed s of every setting, beside every UFM solve) and holds only if it holds on every seed;
  otherwise it does not hold (or is inconclusive when a number is missing on a seed), with the
  seeds that hold and fail in fields of their own (``seeds_total``, ``seeds_holding``,
  ``seeds_failing``, ``seeds_inconclusive``, ``seed_count`` = "2 of 3 seeds");
- the accuracy comparisons are decided on the seed means;
- a verdict that reads only UFM solves is decided once (a solve's seeds are inside it).

Every aggregated number is a provenance record ``{"value", "derived": "mean" | "all" |
"pooled", "from": [per-seed records], "min", "max", "seeds"}`` (curves: ``values``, ``x``,
``min``, ``max`` and ``count`` per epoch), so it can be recomputed from the seed runs' files.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from experiments.report.labels import seeds_text
from experiments.report.numbers import Numbers
from experiments.report.runs import IGNORED_FIELDS, Run, usable
from experiments.spec import setting_name

SEED_FIELD = "seed"
# The files only a training run has: a verdict whose numbers come from one of them reads a
# training run, so it depends on the seed. (config.json is not one: the report never reads
# it, a run's fields come from run.json, which both kinds have.)
TRAIN_FILES = ("metrics.jsonl", "embeddings_final.npz")
_SEED_TEXT = re.compile(r"\bseeds? \d+(?:, \d+)*")


# ----------------------------------------------------------------------------------------------
# Aggregation of numbers.


def _seed_order(seed):
  """Sort key of seeds: integers in numeric order (10 after 2), anything else after them."""
  return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def aggregate(values: list):
  """(kind, value) of one quantity over seeds: "mean" of numbers (element-wise for equally
  shaped lists of numbers), "all" of booleans; (None, None) when they cannot be combined."""
  if not values:
    return None, None
  if all(isinstance(v, bool) for v in values):
    return "all", all(values)
  if all(_is_number(v) for v in values):
    return "mean", math.fsum(values) / len(values)
  if all(isinstance(v, list) for v in values):
    try:
      arr = np.asarray(values, np.float64)
    except (ValueError, TypeError):
      return None, None
    if arr.dtype == object or arr.shape[0] != len(values):
      return None, None
    return "mean", arr.mean(axis=0).tolist()
  return None, None


def _spread(values: list) -> dict:
  """min / max of finite numbers (nothing for booleans and lists)."""
  if values and all(_is_number(v) for v in values):
    return {"min": min(values), "max": max(values)}
  return {}


def mean_curve(curves: Sequence[tuple[Sequence, Sequence]]) -> dict:
  """Mean, min, max and count over curves (x, y) on the union of their x values.

  At each x, only the curves that have a point there count (a seed still running, or one that
  logged other epochs, is left out of that x).
  """
  by_x: dict = {}
  for xs, ys in curves:
    for x, y in zip(xs, ys):
      by_x.setdefault(x, []).append(y)
  xs = sorted(by_x)
  return {"x": xs, "values": [math.fsum(by_x[x]) / len(by_x[x]) for x in xs],
          "min": [min(by_x[x]) for x in xs], "max": [max(by_x[x]) for x in xs],
          "count": [len(by_x[x]) for x in xs]}


# ----------------------------------------------------------------------------------------------
# Settings.


def setting_key(run: Run) -> str:
  """What a training run computes apart from its seed (and the fields that never matter)."""
  flat = {k: v for k, v in run.flat.items()
          if k != SEED_FIELD and not k.startswith(IGNORED_FIELDS)}
  return json.dumps(flat, sort_keys=True, default=str)


def _by_epoch(run: Run) -> dict:
  """{epoch: {key: value}}: per key, the last logged usable value of each epoch (a resumed run
  that re-logged an epoch counts once), as `Run.metric_lines` reads it."""
  out: dict = {}
  for line in run.metrics:
    if "epoch" not in line:
      continue
    merged = out.setdefault(line["epoch"], {})
    merged.update({k: v for k, v in line.items() if usable(v)})
  return out


@dataclass
class SeedGroup(Run):
  """The seed runs of one setting, read like one run: `metrics` holds the seed means per epoch
  and `record` the first seed's, its config (``extra.config``) with `seed` the list of seeds
  and ``seeds`` all of them."""
  members: list = field(default_factory=list)

  @property
  def seeds(self) -> list:
    return [m.flat.get(SEED_FIELD) for m in self.members]

  @property
  def data_file(self) -> Path:
    return self.members[0].data_file

  @property
  def record_file(self) -> Path:
    return self.members[0].record_file

  @property
  def embeddings_file(self) -> Path | None:
    files = [m.embeddings_file for m in self.members]
    return files[0] if all(files) else None

  def embeddings(self):
    return self.members[0].embeddings()


def make_group(members: Sequence[Run]) -> SeedGroup:
  """A SeedGroup of runs that differ only in their seed (sorted by seed)."""
  members = sorted(members, key=lambda r: _seed_order(r.flat.get(SEED_FIELD)))
  names = {setting_name(m.name) for m in members}
  name = names.pop() if len(names) == 1 else members[0].name
  per_run = [_by_epoch(m) for m in members]
  metrics = []
  for epoch in sorted({e for table in per_run for e in table}):
    line = {"epoch": epoch}
    keys = {k for table in per_run for k in table.get(epoch, {})} - {"epoch"}
    for key in sorted(keys):
      values = [table[epoch][key] for table in per_run if key in table.get(epoch, {})]
      kind, value = aggregate(values)
      if kind is not None:
        line[key] = value
    metrics.append(line)
  # A group has no folder of its own (its path names none): a report section that reads a
  # run's own files finds none for it, and reads the seeds through `SeedNumbers`. Its record
  # is the first seed's (`record_file`), with the seeds of all.
  record = copy.deepcopy(members[0].record)
  record["seeds"] = [s for m in members for s in m.record["seeds"]]
  record["extra"]["config"][SEED_FIELD] = [m.flat.get(SEED_FIELD) for m in members]
  return SeedGroup(name=name, path=members[0].path.parent / f"{name} (seeds)", kind="train",
                   data={}, metrics=metrics, record=record, members=list(members))


def group_settings(runs: Sequence[Run]) -> list:
  """Runs in order, the training runs of one setting merged into a SeedGroup (at the place of
  its first member); a setting of one run stays that Run."""
  by_key: dict = {}
  for run in runs:
    if run.kind == "train":
      by_key.setdefault(setting_key(run), []).append(run)
  out, seen = [], set()
  for run in runs:
    if run.kind != "train":
      out.append(run)
      continue
    key = setting_key(run)
    if key in seen:
      continue
    seen.add(key)
    members = by_key[key]
    out.append(members[0] if len(members) == 1 else make_group(members))
  return out


def has_seeds(settings: Sequence[Run]) -> bool:
  return any(isinstance(s, SeedGroup) for s in settings)


def seed_slices(settings: Sequence[Run]) -> list:
  """[(seed, runs)]: for each seed, the run of that seed of every setting that has it, and
  every UFM solve (settings are paired by seed value, as the sweep runs them)."""
  members = [(s.members if isinstance(s, SeedGroup) else [s]) for s in settings
             if s.kind == "train"]
  seeds = sorted({m.flat.get(SEED_FIELD) for ms in members for m in ms}, key=_seed_order)
  ufm = [s for s in settings if s.kind != "train"]
  slices = []
  for seed in seeds:
    train = [m for ms in members for m in ms if m.flat.get(SEED_FIELD) == seed]
    slices.append((seed, ufm + train))
  return slices


# ----------------------------------------------------------------------------------------------
# Numbers of seed groups.


class SeedNumbers(Numbers):
  """`Numbers` that also reads SeedGroups: their numbers are derived from the seed runs'."""

  def _members_at(self, group: SeedGroup, epoch, key: str) -> list:
    """[(seed, record)] of the seeds that logged a usable `key` at `epoch`."""
    out = []
    for m in group.members:
      line = next((i for i in m.metric_lines(key) if m.metrics[i]["epoch"] == epoch), None)
      if line is not None:
        out.append((m.flat.get(SEED_FIELD), super().line_value(m, line, key)))
    return out

  @staticmethod
  def _combine(pairs: list, **extra) -> dict | None:
    """The seed aggregate of [(seed, record)]; NaN when a seed's number is missing (None or
    NaN), as a missing number of a single run makes its verdicts undecidable."""
    recs, seeds = [r for _, r in pairs], [s for s, _ in pairs]
    values = [r["value"] for r in recs]
    reasons = [r["missing"] for r in recs if isinstance(r.get("missing"), str)]
    if reasons or any(v is None or (_is_number(v) and not math.isfinite(v)) for v in values):
      return Numbers.derived("mean", recs, math.nan, seeds=seeds, **extra,
                             **({"missing": "; ".join(reasons)} if reasons else {}))
    kind, value = aggregate(values)
    if kind is None:
      return None
    return Numbers.derived(kind, recs, value, **_spread(values), seeds=seeds, **extra)

  def line_value(self, run, line, key):
    if not isinstance(run, SeedGroup):
      return super().line_value(run, line, key)
    epoch = run.metrics[line]["epoch"]
    return self._combine(self._members_at(run, epoch, key), epoch=epoch)

  def final(self, run, key):
    """A group's final value: the mean of each seed's final value."""
    if not isinstance(run, SeedGroup):
      return super().final(run, key)
    pairs = [(m.flat.get(SEED_FIELD), super(SeedNumbers, self).final(m, key))
             for m in run.members]
    pairs = [(s, r) for s, r in pairs if r is not None]
    return self._combine(pairs) if pairs else None

  def evidence(self, run, key):
    """A group's final value for a verdict: the mean of each seed's `Numbers.evidence`
    (missing, naming the seed runs, when one seed lacks it)."""
    if not isinstance(run, SeedGroup):
      return super().evidence(run, key)
    return self._combine([(m.flat.get(SEED_FIELD), super(SeedNumbers, self).evidence(m, key))
                          for m in run.members])

  def series(self, run, key):
    if not isinstance(run, SeedGroup):
      return super().series(run, key)
    member = [super(SeedNumbers, self).series(m, key) for m in run.members]
    line_of = {line["epoch"]: i for i, line in enumerate(run.metrics)}
    flags = [s for s in member if s["values"] and all(isinstance(v, bool) for v in s["values"])]
    if flags and len(flags) == len([s for s in member if s["values"]]):
      # A boolean per epoch (e.g. of_unique_so_far): true when true on every seed logging it.
      by_x: dict = {}
      for s in flags:
        for x, v in zip(s["x"], s["values"]):
          by_x.setdefault(x, []).append(v)
      xs = sorted(by_x)
      return {"values": [all(by_x[x]) for x in xs], "x": xs,
              "count": [len(by_x[x]) for x in xs], "lines": [line_of[x] for x in xs],
              "x_key": "epoch", "key": key, "derived": "all", "from": flags,
              "seeds": [m.flat.get(SEED_FIELD) for m, s in zip(run.members, member)
                        if s in flags]}
    numeric = [s for s in member if all(_is_number(v) for v in s["values"])]
    curve = mean_curve([(s["x"], s["values"]) for s in numeric])
    return {**curve, "lines": [line_of[x] for x in curve["x"]], "x_key": "epoch", "key": key,
            "derived": "mean", "from": numeric,
            "seeds": [m.flat.get(SEED_FIELD) for m, s in zip(run.members, member)
                      if s in numeric]}

  def first_epoch(self, run, key, threshold, op):
    if not isinstance(run, SeedGroup):
      return super().first_epoch(run, key, threshold, op)
    s = self.series(run, key)
    hit = next((x for x, v in zip(s["x"], s["values"])
                if ((v >= threshold) if op == "first_epoch_at_least" else (v < threshold))),
               None)
    return {"value": hit, "derived": op, "threshold": threshold, "from": [s], "key": key}

  def computed(self, run, what):
    if not isinstance(run, SeedGroup):
      return super().computed(run, what)
    pairs = [(m.flat.get(SEED_FIELD), super(SeedNumbers, self).computed(m, what))
             for m in run.members]
    if any(r is None for _, r in pairs):
      return None
    if what == "angle_values":
      # One box per setting: the pairwise angles of every seed together.
      return Numbers.derived("pooled", [r for _, r in pairs],
                                [v for _, r in pairs for v in r["value"]],
                                seeds=[s for s, _ in pairs])
    return self._combine(pairs)


# ----------------------------------------------------------------------------------------------
# Verdicts over seeds.


def _sources(node) -> list:
  if isinstance(node, dict):
    found = [node["source"]] if isinstance(node.get("source"), str) else []
    return found + [s for v in node.values() for s in _sources(v)]
  if isinstance(node, list):
    return [s for v in node for s in _sources(v)]
  return []


def reads_training(verdict: dict) -> bool:
  """Whether one of the verdict's numbers comes from a training run's files."""
  return any(Path(s).name in TRAIN_FILES
             for s in _sources([verdict["numbers"], verdict["conditions"]]))


def _per_seed(verdict: dict) -> bool:
  """Whether a verdict is decided on each seed: it reads a training run, or it is a check's
  no-evidence verdict (a seed's runs may be missing for that seed only)."""
  return reads_training(verdict) or bool(verdict.get("placeholder"))


def _rename(text: str, names: dict) -> str:
  for old in sorted(names, key=len, reverse=True):
    text = re.sub(rf"(?<![\w.=+-]){re.escape(old)}(?![\w.=+-])", names[old], text)
  return text


def combine_verdicts(per_seed: Sequence[tuple[int, list]], names: dict) -> list:
  """One verdict per verdict id from the verdicts of each seed's runs.

  `per_seed` is [(seed, verdicts of that seed)]; `names` maps seed run names to setting names
  (for the rule and setup texts). Verdicts of different seeds pair up by their ``id``
  (check, key and setup without the seed; never by the claim's wording). The combined
  verdict holds when it holds on every seed, and is inconclusive when a number is missing on
  some seed or a seed gives no such verdict (its runs are missing: the check's
  no-evidence verdict of that seed says why); otherwise it does not hold. Its conditions and
  numbers are those of all seeds (each condition tagged with its seed), its ``missing``
  the seeds' reasons ("seed 2: run relu_R10 is missing").
  """
  all_seeds = [s for s, _ in per_seed]
  order, table, no_evidence = [], {}, {}
  for seed, verdicts in per_seed:
    seen: dict = {}
    for v in verdicts:
      setup = _rename(_SEED_TEXT.sub("{seeds}", v["setup"]), names)
      if v.get("placeholder"):
        no_evidence.setdefault(v["check_index"], {})[seed] = v
      base = (v["check_index"], f"{v['check']}/{v['key']}/{setup}")
      key = (*base, seen.get(base, 0), setup)
      seen[base] = seen.get(base, 0) + 1
      if key not in table:
        order.append(key)
        table[key] = []
      table[key].append((seed, v))
  judged = {key[0] for key in order if not table[key][0][1].get("placeholder")}
  out = []
  for key in order:
    entries = table[key]
    first = entries[0][1]
    if first.get("placeholder") and key[0] in judged:
      continue   # its seeds are listed as inconclusive in the check's other verdicts
    seeds = [s for s, _ in entries]
    absent = [s for s in all_seeds if s not in seeds]
    reasons = [f"seed {s}: {r}" for s, v in entries for r in v.get("missing", [])]
    for s in absent:
      gone = no_evidence.get(key[0], {}).get(s)
      reasons += ([f"seed {s}: {r}" for r in gone["missing"]] if gone else
                  [f"seed {s}: no such verdict (its runs give none)"])
    by = {o: [s for s, v in entries if v["verdict"] == o]
          for o in ("holds", "does not hold", "inconclusive")}
    by["inconclusive"] += absent
    outcome = ("inconclusive" if by["inconclusive"] else
               "does not hold" if by["does not hold"] else "holds")
    rules = list(dict.fromkeys(_rename(v["rule"], names) for _, v in entries))
    setup = key[3].replace("{seeds}", seeds_text(all_seeds))
    out.append({
        "id": f"{first['check']}/{first['key']}/{setup}", "check": first["check"],
        "check_index": first["check_index"], "key": first["key"], "kind": first["kind"],
        "section": first["section"], "claim": first["claim"], "setup": setup,
        "verdict": outcome, "missing": reasons if outcome == "inconclusive" else [],
        "rule": f"on every seed ({len(all_seeds)}): " + " | ".join(rules),
        "reference": first["reference"],
        "conditions": [{**c, "seed": s} for s, v in entries for c in v["conditions"]],
        "numbers": [n for _, v in entries for n in v["numbers"]],
        "decided_on": "every seed", "seeds_total": len(all_seeds),
        "seeds_holding": by["holds"], "seeds_failing": by["does not hold"],
        "seeds_inconclusive": by["inconclusive"],
        "seed_count": f"holds on {len(by['holds'])} of {len(all_seeds)} seeds",
        "seed_verdicts": [{"seed": s, "verdict": v["verdict"]} for s, v in entries]
                         + [{"seed": s, "verdict": "inconclusive"} for s in absent]})
  return out


def _record_seeds(node) -> list:
  if isinstance(node, dict):
    found = list(node.get("seeds", [])) if node.get("derived") in ("mean", "all") else []
    return found + [s for v in node.values() for s in _record_seeds(v)]
  if isinstance(node, list):
    return [s for v in node for s in _record_seeds(v)]
  return []


def mark_on_means(verdict: dict) -> dict:
  """A verdict decided on seed means, with the seeds it averages."""
  seeds = sorted(set(_record_seeds(verdict["numbers"])), key=_seed_order)
  return {**verdict, "decided_on": "seed means", "seeds_total": len(seeds), "seeds": seeds}


_FIGURE_NOTES = {
    "curves": "Settings run over several seeds (setup: seeds ...) are drawn as the mean over "
              "their seeds on the union of the logged epochs, shaded from the min to the max "
              "over the seeds (final values: error bars from min to max).",
    "gram": "A setting run over several seeds shows the element-wise mean of its seeds' Gram "
            "matrices and the mean of their dist_of.",
    "angles": "A setting run over several seeds shows the angle values of all its seeds "
              "together.",
}


def build(builder_cls: Callable, settings: list, out_dir: Path, thresholds, hints,
          checks) -> object:
  """The report builder over seeds: figures and tables from the settings (seed means with
  bands), verdicts per seed combined (see the module docstring). Returns the main builder,
  whose `verdicts` are the combined ones."""
  per_seed, names = [], {}
  for seed, runs in seed_slices(settings):
    names.update({r.name: setting_name(r.name) for r in runs if r.kind == "train"})
    # Only the verdicts of a seed's slice are used: its checks, without figures or tables.
    sub = builder_cls(runs, out_dir, thresholds, hints, checks=checks,
                      keep=lambda v, on_means: not on_means and _per_seed(v)).run_checks()
    per_seed.append((seed, sub.verdicts))
  main = builder_cls(settings, out_dir, thresholds, hints, checks=checks,
                     numbers=SeedNumbers(out_dir),
                     keep=lambda v, on_means: on_means or not _per_seed(v)).build()
  combined = combine_verdicts(per_seed, names)
  kept = [mark_on_means(v) if v.pop("_on_means") else v for v in main.verdicts]
  # Report order: the order of the claims in the main builder's run through the sections.
  rank = {}
  for i, v in enumerate(main.all_verdicts):
    rank.setdefault((v["check_index"], v["key"]), i)
  merged = sorted(kept + combined, key=lambda v: rank.get((v["check_index"], v["key"]),
                                                          len(rank)))
  main.verdicts = merged
  for fig in main.figures:
    fig.caption += " " + _FIGURE_NOTES.get(fig.id.rsplit("_", 1)[0], _FIGURE_NOTES["curves"])
  return main


def describe(settings: Sequence[Run], num: Numbers) -> list:
  """report.json's list of training settings: name, seeds and the seed runs' folders."""
  out = []
  for s in settings:
    if s.kind != "train":
      continue
    members = s.members if isinstance(s, SeedGroup) else [s]
    out.append({"name": s.name, "seeds": [m.flat.get(SEED_FIELD) for m in members],
                "runs": [m.name for m in members], "dirs": [num.rel(m.path) for m in members]})
  return out
