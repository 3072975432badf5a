"""What changed between two report.json files: verdicts first, then every differing value.

  python -m benchmarks.report_diff BEFORE/report.json AFTER/report.json

Keys that hold wall-clock time or where the files were written (`TIMING_KEYS`) are skipped, so
that two builds of the same runs differ only where a change altered a verdict, a number or a
name. Used to show that a refactoring leaves the demo's report as it was (docs/results.md).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Sequence

TIMING_KEYS = frozenset({"seconds", "seconds_total", "provenance", "dir", "path", "generated",
                         "images_per_second", "train_seconds", "eval_seconds"})


def differences(before, after, path: str = "") -> list[str]:
  """One line per value that differs (NaN equals NaN), by key path; dicts and lists recurse."""
  if isinstance(before, dict) and isinstance(after, dict):
    out = []
    for key in sorted(set(before) | set(after)):
      if key in TIMING_KEYS:
        continue
      if key not in before or key not in after:
        out.append(f"{path}.{key}: only {'after' if key in after else 'before'}")
      else:
        out += differences(before[key], after[key], f"{path}.{key}")
    return out
  if isinstance(before, list) and isinstance(after, list):
    if len(before) != len(after):
      return [f"{path}: {len(before)} items before, {len(after)} after"]
    return [line for i, (b, a) in enumerate(zip(before, after))
            for line in differences(b, a, f"{path}[{i}]")]
  same_nan = (isinstance(before, float) and isinstance(after, float)
              and math.isnan(before) and math.isnan(after))
  return [] if before == after or same_nan else [f"{path}: {before!r} -> {after!r}"]


def verdicts(report: dict) -> list[tuple]:
  return [(v.get("claim"), v.get("setup"), v.get("verdict")) for v in report.get("verdicts", [])]


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if len(argv) != 2:
    print("usage: python -m benchmarks.report_diff BEFORE.json AFTER.json", file=sys.stderr)
    return 2
  try:
    before, after = (json.loads(open(p, encoding="utf-8").read()) for p in argv)
  except (OSError, ValueError) as e:
    print(f"report_diff: cannot read a report ({e})", file=sys.stderr)
    return 2
  same = verdicts(before) == verdicts(after)
  print(f"verdicts: {len(verdicts(before))} before, {len(verdicts(after))} after, "
        f"{'the same' if same else 'DIFFERENT'}")
  lines = differences(before, after)
  try:
    print(f"{len(lines)} other differences (timings and paths skipped)")
    print("\n".join(lines), flush=True)
  except BrokenPipeError:   # piped into `head`: the reader has what it wanted
    sys.stdout = None
  return 0


if __name__ == "__main__":
  sys.exit(main())
