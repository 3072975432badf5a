"""``python -m experiments.report`` / ``scl-report``: the report of run folders.

  python -m experiments.report --out runs/report RUN_DIR [RUN_DIR ...]
  python -m experiments.report --experiment e2_relu --out OUT runs/sweeps/e2_relu
  make report RUNS="runs/demo/ufm_plus runs/demo/digits_relu_seed0" OUT=runs/report
  python -m experiments.report --upgrade RUN_DIR [RUN_DIR ...]   # old folders: a new run.json

With ``--experiment`` the report takes the experiment's title, description, figure hints and
checks (``experiments.spec``); without it, the default checks of the run kinds given
(`experiments.spec.default_checks`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from experiments import __version__, spec
from experiments.report.builder import build_report
from experiments.report.runs import ReportError


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.report",
      description="Build the theory-vs-practice report (HTML + PNG + report.json) from UFM "
                  "result folders and training workdirs (or folders holding them).")
  parser.add_argument("runs", nargs="+", help="run folders (result.json or metrics.jsonl, "
                      "each with its run.json) or folders holding them")
  parser.add_argument("--out", default="runs/report", help="output folder (default runs/report)")
  parser.add_argument("--version", action="version", version=f"scl-report {__version__}")
  parser.add_argument("--title", default="Theory vs practice: SCL geometry")
  parser.add_argument("--experiment", default=None,
                      help="experiment name: use its title, description, hints and checks")
  parser.add_argument("--preset", default="cpu", choices=spec.PRESETS)
  parser.add_argument("--upgrade", action="store_true",
                      help="write a schema-2 run.json into each run folder written before it "
                           "(from its result.json or config.json), then stop; builds no report")
  args = parser.parse_args(argv)
  title, description, hints, checks = args.title, "", None, None
  try:
    if args.upgrade:
      from experiments.report import upgrade  # pylint: disable=g-import-not-at-top
      for line in upgrade.upgrade_paths(args.runs):
        print(line)
      return 0
    if args.experiment:
      exp = spec.load_experiment(args.experiment, args.preset)
      title = exp.get("title", title)
      description = exp.get("description", "")
      hints = exp.get("report", {})
      checks = exp.get("checks")
    path = build_report(args.runs, args.out, title=title, description=description,
                        thresholds=(hints or {}).get("thresholds"), hints=hints, checks=checks)
  except (ReportError, spec.ExperimentError, OSError, json.JSONDecodeError, ValueError,
          KeyError) as e:
    print(f"report: error: {e}", file=sys.stderr)
    return 2
  print(path)
  return 0
