"""Runs an experiment's grid of UFM solves and training runs into one folder, then its report.

Usage::

  python -m experiments.sweep NAME [--preset cpu|paper] [--out DIR] [--dry-run]
                              [--only RUN ...] [--seeds N|S0,S1,...] [--set FIELD=VALUE ...]
                              [--no-report] [--allow_cpu]
  make sweep EXP=NAME                      # e.g. make sweep EXP=e2_relu
  make sweep EXP=NAME PRESET=paper ALLOW_CPU=1   # the paper preset on a CPU, when meant
  make sweep EXP="e1_convergence --preset paper --set data.data_dir=/data/tfds"

NAME is an experiment config in ``experiments/configs/`` (``e2_relu``, or a unique prefix such
as ``e2``) or a path to one. Without NAME the experiments are listed.

**Experiment configs.** A plain Python module with ``get_experiment(preset="cpu")``
(``preset`` is ``"cpu"``, embedded data sets, minutes on a laptop, or ``"paper"``, the paper's
scale on TFDS data and a GPU) returning the experiment as data: its runs, seeds, checks and
report hints (``experiments/spec.py``, which configs, this runner and the report share).
The trainer refuses a paper-scale network (the paper preset's ResNet-18 / DenseNet-40) on a
CPU backend; ``--allow_cpu`` passes its ``--allow_cpu`` to every training run, for a user who
means to train there.

**Seeds.** Every training run is run for each of the experiment's seeds: ``"seeds": N``
(seeds 0, ..., N-1; when the config does not say, `DEFAULT_SEEDS` for the CPU preset and one
seed for the paper preset, whose runs are GPU hours each, as the paper's single runs) or ``"seeds": [s0, s1, ...]``
in the experiment dict, or ``--seeds`` on the command line. Run ``NAME`` becomes the runs
``NAME_seed0``, ``NAME_seed1``, ... (``--config.seed=S`` added to its command); a training run
whose overrides set ``seed`` themselves runs once, and UFM solves run once (their seeds are
inside one solve, ``--seeds``). The report groups the seed runs of one setting
(experiments/report/seeds.py). ``make train`` stays one run of ``config.seed``.

**Where runs go.** ``DIR`` (default ``runs/sweeps/NAME``, or ``runs/sweeps/NAME-paper`` for
the paper preset) gets one folder per run and seed (``DIR/<run name>_seed<S>/``, a UFM solve
``DIR/<run name>/``), the logs (``DIR/logs/<folder>.log``), ``DIR/sweep.json`` (commands and
status) and the report (``DIR/report/index.html``).

**Skipping and resuming.** A run is finished when its completion marker exists
(``result.json`` for a UFM solve, ``embeddings_final.npz`` for a training run, which the
trainer writes last). Finished runs are skipped. Any other run is started with its command;
for an interrupted training run this is the same command, so the trainer resumes from its
last checkpoint. Runs go one after another (a failed run is reported and the others still
run; the exit status is then 1).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from deepnet import config as config_lib
from deepnet import workdir as workdir_lib
from experiments import __version__, report as report_lib, reuse, spec
from experiments.spec import (DEFAULT_SEEDS, PRESETS, REPO, expand_seeds, load_experiment,
                              parse_seeds, validate)
from geometry import runfiles

MARKERS = {"ufm": "result.json", "train": "embeddings_final.npz"}


# Bad sweep input (reported on one line): a bad experiment or a bad command line.
SweepError = spec.ExperimentError


# ----------------------------------------------------------------------------------------------
# Commands and status.


def command(run: dict, run_dir: Path, overrides: dict | None = None, *,
            allow_cpu: bool = False) -> list[str]:
  """The argv of one run (its folder is `run_dir`); `overrides` apply to training runs, and
  `allow_cpu` gives them the trainer's --allow_cpu (a paper-scale network trains on a CPU
  backend instead of being refused)."""
  if run["kind"] == "ufm":
    return [sys.executable, "-m", "ufm.cli", "solve", *run["args"], "--out", str(run_dir)]
  config = run["config"]
  merged = {**run.get("overrides", {}), **(overrides or {})}
  return ([sys.executable, "-m", "deepnet.main", f"--config={config}", f"--workdir={run_dir}"]
          + [f"--config.{k}={config_lib.override_text(v)}" for k, v in merged.items()]
          + (["--allow_cpu"] if allow_cpu else []))


def display(argv: Sequence[str]) -> str:
  """The command as a user would type it (`ufm solve ...`, `python -m deepnet.main ...`)."""
  argv = list(argv)
  if argv[1:3] == ["-m", "ufm.cli"]:
    argv = ["ufm"] + argv[3:]
  elif argv[0] == sys.executable:
    argv = ["python"] + argv[1:]
  return shlex.join(argv)


def signature(run: dict, overrides: dict | None = None) -> str:
  """What a run computes (its arguments or its config and overrides), independent of where
  its folder is; a finished run made with another signature is not reused."""
  if run["kind"] == "ufm":
    return json.dumps(["ufm", run["args"]])
  merged = {**run.get("overrides", {}), **(overrides or {})}
  return json.dumps(["train", run["config"],
                     {k: config_lib.override_text(v) for k, v in merged.items()}], sort_keys=True)


def _shown_path(path: Path) -> str:
  try:
    return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
  except ValueError:
    return str(path)


def status(run: dict, run_dir: Path) -> str:
  """"done" (completion marker present), "resume" (started, not finished) or "new"."""
  if (run_dir / MARKERS[run["kind"]]).exists():
    return "done"
  if run_dir.exists() and any(run_dir.iterdir()):
    return "resume"
  return "new"


def default_out(exp: dict) -> Path:
  suffix = "" if exp.get("preset", "cpu") == "cpu" else f"-{exp['preset']}"
  return Path("runs") / "sweeps" / f"{exp['name']}{suffix}"


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def run_experiment(exp: dict, out_dir: str | os.PathLike, *, dry_run: bool = False,
                   only: Sequence[str] | None = None, overrides: dict | None = None,
                   report: bool = True, log: Callable[[str], None] = print,
                   env: dict | None = None, allow_cpu: bool = False) -> dict:
  """Runs the experiment's runs (skipping finished ones) and builds its report; `allow_cpu`
  passes --allow_cpu to every training run (`command`). It is not part of a run's
  `signature`: where a run may train does not change what it computes.

  Returns a summary {"runs": {name: {"status", "seconds", "returncode", "command"}},
  "failed": [names], "report": html path or None}.
  """
  out_dir = Path(out_dir).resolve()
  runs = expand_seeds(exp)
  if exp.get("seeds") is not None and "seed" in (overrides or {}):
    raise SweepError("seed is set per run by the experiment's seeds; use --seeds instead of "
                     "--set seed=...")
  if only:
    # A run name selects all its seeds; NAME_seedS one of them.
    known = {r["name"] for r in runs} | {r.get("setting", r["name"]) for r in runs}
    unknown = sorted(set(only) - known)
    if unknown:
      raise SweepError(f"unknown run(s) {', '.join(unknown)}; runs: "
                       + ", ".join(r["name"] for r in exp["runs"]))
    runs = [r for r in runs if r["name"] in only or r.get("setting") in only]
  state_path = out_dir / "sweep.json"
  state = _read_state(state_path, log) if state_path.exists() else {}
  state.update({"experiment": exp["name"], "preset": exp.get("preset"),
                "title": exp.get("title")})
  state.setdefault("runs", {})
  summary = {"runs": {}, "failed": [], "report": None}
  if not dry_run:
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    _write_state(state_path, state)
  for i, run in enumerate(runs, 1):
    run_dir = out_dir / run["name"]
    run_overrides = overrides if run["kind"] == "train" else None
    argv = command(run, run_dir, run_overrides, allow_cpu=allow_cpu)
    shown = display(command(run, Path(_shown_path(run_dir)), run_overrides,
                            allow_cpu=allow_cpu))
    sig = signature(run, run_overrides)
    before = status(run, run_dir)
    entry = {"kind": run["kind"], "command": shown, "signature": sig, "status": before}
    prefix = f"[{i}/{len(runs)}] {run['name']}"
    if dry_run:
      log(f"{prefix} ({before}): {shown}")
      summary["runs"][run["name"]] = entry
      continue
    old_sig = state["runs"].get(run["name"], {}).get("signature")
    # A finished training folder is judged by its own config.json (reuse.mismatch, the
    # trainer's resume test), which ignores fields such as data.data_dir; the command
    # signature would count them.
    judged_by_folder = before == "done" and run["kind"] == "train"
    if before != "new" and old_sig is not None and old_sig != sig and not judged_by_folder:
      log(f"{prefix}: FAILED: {run_dir} was made by a different command; remove it (or use "
          "another output folder) to run this one")
      summary["failed"].append(run["name"])
      summary["runs"][run["name"]] = {**entry, "status": "conflict"}
      continue
    # An unfinished training folder that records another config is refused here, before a
    # "resuming:" line promises what the trainer would then refuse.
    started_elsewhere = (before == "resume" and run["kind"] == "train"
                         and (run_dir / "config.json").exists())
    reason = (reuse.mismatch(run, run_dir, run_overrides)
              if before == "done" or started_elsewhere else None)
    if reason:
      log(f"{prefix}: FAILED: {run_dir} holds another run: {reason}; remove it (or use "
          "another output folder) to run this one")
      summary["failed"].append(run["name"])
      summary["runs"][run["name"]] = {**entry, "status": "conflict"}
      continue
    if before == "done":
      log(f"{prefix}: finished already, skipped")
      summary["runs"][run["name"]] = {**state["runs"].get(run["name"], {}), **entry}
      continue
    holder = workdir_lib.lock_holder(run_dir) if run["kind"] == "train" else None
    if holder is not None:
      # E.g. the child of an earlier sweep that is still finishing: never a second trainer.
      log(f"{prefix}: FAILED: still running in {workdir_lib.describe_holder(holder)}; wait for "
          "it to finish (or stop it) and run the sweep again")
      summary["failed"].append(run["name"])
      summary["runs"][run["name"]] = {**entry, "status": "running elsewhere"}
      continue
    log(f"{prefix}: {'resuming' if before == 'resume' else 'starting'}: {shown}")
    state["runs"][run["name"]] = {**entry, "status": "running", "started_at": _now()}
    _write_state(state_path, state)
    start = time.time()
    log_path = out_dir / "logs" / f"{run['name']}.log"
    with open(log_path, "a") as log_file:
      log_file.write(f"\n=== {_now()} {before}: {shown}\n")
      log_file.flush()
      start_offset = log_file.tell()
      proc = subprocess.Popen(_terminated_with_parent(argv), cwd=REPO, stdout=log_file,
                              stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
      follower = threading.Thread(target=_follow_progress,
                                  args=(log_path, start_offset, proc, log, prefix), daemon=True)
      follower.start()
      try:
        code = proc.wait()
        follower.join()
      except KeyboardInterrupt:
        # Ctrl-C reaches the child too (same process group) and it stops by itself; a SIGINT
        # sent to the sweep alone is passed on. Checkpoints are written atomically, so even
        # the final kill leaves a resumable run.
        try:
          proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
          proc.send_signal(signal.SIGINT)
          try:
            proc.wait(timeout=60)
          except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        state["runs"][run["name"]] = {**entry, "status": "interrupted"}
        _write_state(state_path, state)
        raise
    seconds = time.time() - start
    after = status(run, run_dir)
    entry.update({"status": after if code == 0 else "failed", "returncode": code,
                  "seconds": round(seconds, 1), "finished_at": _now(),
                  "log": str(log_path.relative_to(out_dir))})
    if code != 0 or after != "done":
      summary["failed"].append(run["name"])
      last = _last_line(log_path)
      log(f"{prefix}: FAILED (exit {code}) after {seconds:.0f} s: {last} (log: {log_path})")
    else:
      log(f"{prefix}: done in {seconds:.0f} s")
    state["runs"][run["name"]] = entry
    summary["runs"][run["name"]] = entry
    _write_state(state_path, state)
  if report and not dry_run:
    summary["report"] = str(build_report(exp, out_dir, log=log))
  return summary


# Run before the run's command, in its own process: asks Linux to send it SIGTERM when the sweep
# dies (PR_SET_PDEATHSIG = 1, kept across exec), then becomes the command. A preexec_fn would do
# the same inside fork(), which is unsafe when the caller has threads (JAX's, in-process).
_TERMINATED_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))
if os.getppid() != int(sys.argv[1]):
  sys.exit(143)
os.execvp(sys.argv[2], sys.argv[2:])
"""


# The trainer's lines a person follows a long run by: each logged epoch, the periodic
# "epoch e/E ... ETA" line and the closing "done:" line (docs/training.md#progress).
_PROGRESS = re.compile(r"^(epoch\s+\d|done: )")


def _follow_progress(log_path: Path, offset: int, proc, log: Callable[[str], None],
                     prefix: str, poll_s: float = 0.5) -> None:
  """Repeats the progress lines the run appends to its log file (from byte `offset`) on `log`
  until the run ends, so a sweep of long runs shows where each run is and its time left.

  WHY a reader of the file, not a pipe: the trainer writes its log itself, so a sweep that is
  killed takes nothing of the run's output (or of its clean stop) with it.
  """
  with open(log_path, "rb") as f:
    f.seek(offset)
    pending = b""
    while True:
      done = proc.poll() is not None
      chunk = f.read()
      pending += chunk
      *lines, pending = pending.split(b"\n")
      for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip()
        if _PROGRESS.match(line):
          log(f"{prefix}   {line}")
      if done and not chunk:
        return
      if not chunk:
        time.sleep(poll_s)


def _terminated_with_parent(argv: list[str]) -> list[str]:
  """``argv`` made to get SIGTERM when this process dies, even by ``kill -9``, so no run
  outlives its sweep (a trainer then saves a checkpoint and stops). Linux only; elsewhere
  ``argv`` as it is."""
  if not sys.platform.startswith("linux"):
    return list(argv)
  return [sys.executable, "-c", _TERMINATED_WITH_PARENT, str(os.getpid()), *argv]


def _write_state(path: Path, state: dict) -> None:
  runfiles.write_json(path, state)


def _read_state(path: Path, log: Callable[[str], None]) -> dict:
  """The sweep's record; a broken one is kept aside as sweep.json.broken and started afresh
  (each finished folder still describes itself, see `experiments.reuse`)."""
  try:
    state = runfiles.read_json(path)
    if isinstance(state, dict) and isinstance(state.get("runs", {}), dict):
      return state
    reason = f"{path}: not a sweep record"
  except ValueError as e:
    reason = str(e)
  aside = path.with_name(path.name + ".broken")
  path.replace(aside)
  log(f"warning: {reason}; kept as {aside.name}, the record starts afresh")
  return {}


def _last_line(path: Path) -> str:
  lines = [l.strip() for l in path.read_text(errors="replace").splitlines() if l.strip()]
  return lines[-1][:300] if lines else "(no output)"


def build_report(exp: dict, out_dir: Path, log: Callable[[str], None] = print) -> Path | None:
  """The report of every run of `exp` that has output in `out_dir` (into out_dir/report)."""
  dirs = [out_dir / r["name"] for r in expand_seeds(exp)
          if report_lib.runs.is_run_folder(out_dir / r["name"])]
  if not dirs:
    log("no run has output yet; no report")
    return None
  hints = exp.get("report", {})
  try:
    path = report_lib.build_report(dirs, out_dir / "report",
                                   title=exp.get("title", exp["name"]),
                                   description=exp.get("description", ""),
                                   thresholds=hints.get("thresholds"), hints=hints,
                                   checks=exp.get("checks"))
  except report_lib.ReportError as e:   # e.g. every run folder broken: named, one line
    log(f"no report: {e}")
    return None
  return path


def _parse_sets(items: Sequence[str]) -> dict:
  out = {}
  for item in items:
    if "=" not in item:
      raise SweepError(f"--set expects FIELD=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    out[key.removeprefix("config.")] = value
  return out


def list_experiments() -> str:
  lines = ["experiments (python -m experiments.sweep NAME, make sweep EXP=NAME):"]
  for path in spec.experiment_files():
    text = path.read_text()
    doc = re.search(r'"""(.*?)(\n|""")', text, re.S)
    lines.append(f"  {path.stem:24s} {doc.group(1).strip() if doc else ''}")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.sweep",
      description="Run an experiment's grid of UFM solves and training runs into one folder "
                  "(finished runs are skipped, interrupted ones resumed), then build its report.")
  parser.add_argument("name", nargs="?", help="experiment (e.g. e2_relu or e2); none: list them")
  parser.add_argument("--version", action="version", version=f"scl-sweep {__version__}")
  parser.add_argument("--preset", default="cpu", choices=PRESETS,
                      help="cpu: embedded data, minutes; paper: the paper's scale (TFDS, GPU)")
  parser.add_argument("--out", default=None, help="sweep folder [runs/sweeps/NAME(-paper)]")
  parser.add_argument("--dry-run", action="store_true", help="list the commands and statuses")
  parser.add_argument("--only", nargs="+", default=None, metavar="RUN", help="only these runs")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="override a training config field in every training run "
                           "(e.g. data.data_dir=/data/tfds); repeatable")
  parser.add_argument("--seeds", default=None, metavar="N|S0,S1,...",
                      help="seeds of every training run: a count (seeds 0..N-1) or a list "
                           f"[the experiment's, else {DEFAULT_SEEDS} (cpu) or 1 (paper)]")
  parser.add_argument("--no-report", action="store_true", help="skip the report")
  parser.add_argument("--allow_cpu", "--allow-cpu", dest="allow_cpu", action="store_true",
                      help="pass the trainer's --allow_cpu: train the paper preset's "
                           "paper-scale networks even when JAX runs on the CPU (days per run)")
  args = parser.parse_args(argv)
  if not args.name:
    parser.print_usage()
    print(list_experiments())
    return 0
  try:
    exp = load_experiment(args.name, args.preset)
    if args.seeds is not None:
      exp["seeds"] = parse_seeds(args.seeds)
      validate(exp)
    out = Path(args.out) if args.out else default_out(exp)
    runs = expand_seeds(exp)
    # The seeds the training runs use: those the experiment sets per run, else its "seeds".
    train_seeds = sorted({r["overrides"].get("seed") for r in runs if r["kind"] == "train"}
                         - {None})
    over = (f" (training runs over seeds {', '.join(map(str, train_seeds))})"
            if train_seeds else "")
    print(f"experiment {exp['name']} ({exp['title']}), preset {args.preset}: "
          f"{len(runs)} runs{over} into {out}")
    summary = run_experiment(exp, out, dry_run=args.dry_run, only=args.only,
                             overrides=_parse_sets(args.set), report=not args.no_report,
                             allow_cpu=args.allow_cpu)
  except SweepError as e:
    print(f"sweep: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("sweep: interrupted; run the same command again to resume", file=sys.stderr)
    return 130
  if summary["report"]:
    print(f"report: {summary['report']}")
  if summary["failed"]:
    print(f"sweep: {len(summary['failed'])} run(s) failed: {', '.join(summary['failed'])}",
          file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
