"""Under CI=true the tests whose dependency (torch, pytorch_metric_learning, the Fashion-MNIST
IDX files) is missing fail instead of skipping (tests/conftest.py); elsewhere they skip."""

import os
import subprocess
import sys
import types

import importlib.util

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_suite_conftest():
  # Loaded by path: `import conftest` finds whichever conftest.py pytest imported last
  # (tests/geometry/ has one too), not necessarily the suite-wide one.
  spec = importlib.util.spec_from_file_location(
      "suite_conftest", os.path.join(ROOT, "tests", "conftest.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


conftest = _load_suite_conftest()


def _skipped(reason):
  return types.SimpleNamespace(skipped=True, outcome="skipped", longrepr=("f.py", 1, reason))


def test_a_required_skip_fails_only_under_ci():
  reasons = ["could not import 'torch': No module named 'torch'",
             "could not import 'pytorch_metric_learning': No module named 'x'",
             "the real Fashion-MNIST IDX files are not in /usr/share/datasets/fashion-mnist"]
  for reason in reasons:
    for value, fails in (("true", True), ("TRUE", True), ("", False), ("false", False)):
      report = _skipped(reason)
      conftest.fail_required_skip(report, {"CI": value} if value else {})
      assert report.outcome == ("failed" if fails else "skipped"), (reason, value)
      if fails:
        assert "CI=true" in str(report.longrepr) and reason in str(report.longrepr)


def test_other_skips_stay_skips_under_ci():
  for reason in ("make is not installed", "needs /proc",
                 "could not import 'tensorflow_datasets': No module named 'x'"):
    report = _skipped(reason)
    conftest.fail_required_skip(report, {"CI": "true"})
    assert report.outcome == "skipped"


def test_the_hook_fails_a_missing_torch_in_a_pytest_run(tmp_path):
  # A test file that skips as when torch is absent, run by pytest with this suite's conftest.
  (tmp_path / "conftest.py").write_text(open(os.path.join(ROOT, "tests", "conftest.py")).read())
  (tmp_path / "test_x.py").write_text(
      "import pytest\n"
      "def test_needs_torch():\n"
      "  pytest.importorskip('a_module_that_is_not_installed_torch_stand_in')\n"
      "def test_torch():\n"
      "  pytest.skip(\"could not import 'torch': No module named 'torch'\")\n")
  def run(ci):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
      env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
  local, ci = run(False), run(True)
  assert local.returncode == 0 and "2 skipped" in local.stdout
  assert ci.returncode == 1 and "1 failed" in ci.stdout and "1 skipped" in ci.stdout
