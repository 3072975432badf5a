"""Every entry point as a newcomer first tries it: each console script of pyproject.toml (and
each `ufm` subcommand), and each `make` target that takes arguments, run with no arguments,
with --help and with a flag that does not exist. Each answers with exit status 0 (help, or a
listing) or 2 (bad input), shows a usage line and never a traceback. Only --help and error
paths are taken: nothing trains or solves."""

import os
import shutil
import subprocess
import sys
import tomllib

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BAD_FLAG = "--no-such-flag"


def _scripts():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]["scripts"]


def _env():
  return dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")


def _script(target, args):
  """The console script `target` ("module:function") as its generated wrapper runs it:
  sys.argv[0] the script, the function's return value the exit status."""
  module, _, func = target.partition(":")
  code = (f"import sys; sys.argv[0] = {module!r}; from {module} import {func}; "
          f"sys.exit({func}())")
  return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120, env=_env())


def _answers_with_usage(proc, *, codes=(0, 2)):
  text = proc.stdout + proc.stderr
  assert proc.returncode in codes, (proc.returncode, text[-2000:])
  assert "Traceback" not in text, text[-3000:]
  assert "usage:" in text.lower(), text[-2000:]


# Each console script and each `ufm` subcommand (the subcommand comes before the tried arguments).
COMMANDS = [(name, []) for name in sorted(_scripts())] + [
    ("ufm", ["solve"]), ("ufm", ["check-batches"]), ("ufm", ["advise"])]


def test_every_console_script_is_tried():
  assert {name for name, _ in COMMANDS} == set(_scripts())


@pytest.mark.parametrize("name,sub", COMMANDS, ids=[" ".join([n, *s]) for n, s in COMMANDS])
def test_console_script_with_no_arguments_help_and_a_bad_flag(name, sub):
  target = _scripts()[name]
  _answers_with_usage(_script(target, sub))
  helped = _script(target, [*sub, "--help"])
  _answers_with_usage(helped, codes=(0,))
  bad = _script(target, [*sub, BAD_FLAG])
  _answers_with_usage(bad, codes=(2,))
  assert bad.stderr.strip(), "a bad flag is reported on stderr"


def _make(tmp_path, target, **variables):
  if shutil.which("make") is None:
    pytest.skip("make is not installed")
  # This interpreter instead of .venv/, and a stamp newer than pyproject.toml, so that make
  # neither creates a venv nor runs pip.
  stamp = tmp_path / "installed"
  stamp.touch()
  os.utime(stamp, (os.path.getmtime(os.path.join(REPO, "pyproject.toml")) + 1,) * 2)
  argv = ["make", "--no-print-directory", target, f"BIN={os.path.dirname(sys.executable)}",
          f"STAMP={stamp}", *(f"{k}={v}" for k, v in variables.items())]
  return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=_env())


# (target, the variable its arguments go in, whether it may run with none: `make train`
# without arguments trains the default config, `make figures` redraws docs/ from runs/).
MAKE_TARGETS = [("sweep", "ARGS", True), ("report", "RUNS", True), ("train", "ARGS", False),
                ("figures", "RUNS", False)]


@pytest.mark.parametrize("target,variable,bare", MAKE_TARGETS,
                         ids=[t for t, _, _ in MAKE_TARGETS])
def test_make_target_with_no_arguments_help_and_a_bad_flag(tmp_path, target, variable, bare):
  if bare:
    _answers_with_usage(_make(tmp_path, target))
  _answers_with_usage(_make(tmp_path, target, **{variable: "--help"}), codes=(0,))
  # make reports the recipe's failure as its own exit status 2.
  _answers_with_usage(_make(tmp_path, target, **{variable: BAD_FLAG}), codes=(2,))
