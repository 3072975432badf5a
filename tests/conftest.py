"""Suite-wide settings and hooks.

Compile time dominates the suite's tiny problems: every test process (and the subprocess
helpers, which set it themselves) runs with most XLA optimisations off.

Under CI=true a test that would be skipped because torch, pytorch_metric_learning or the
Fashion-MNIST IDX files are missing fails instead: CI installs them (`make test` installs the
torch extra, `.ci/run` runs `make data`), so a skip there means a broken setup, not an
optional extra. Elsewhere those tests still skip with their reason.
"""

import os

import jax
import pytest

jax.config.update("jax_disable_most_optimizations", True)

# Words of a skip reason -> the requirement it names (pytest.importorskip says
# "could not import 'torch': ..."; the Fashion-MNIST skips name the IDX files).
REQUIRED_IN_CI = {
    "'torch'": "torch",
    "'pytorch_metric_learning'": "pytorch_metric_learning",
    "Fashion-MNIST IDX files": "the Fashion-MNIST IDX files",
}


def in_ci(environ) -> bool:
  """CI=true (any case), the variable CI services set."""
  return environ.get("CI", "").strip().lower() == "true"


def missing_requirement(reason: str) -> str | None:
  """The CI requirement a skip reason names, None for any other skip."""
  for words, name in REQUIRED_IN_CI.items():
    if words in reason:
      return name
  return None


def skip_reason(report) -> str:
  """The reason of a skipped report (longrepr is (file, line, reason) for a skip)."""
  longrepr = report.longrepr
  return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def fail_required_skip(report, environ) -> None:
  """Under CI, turns the skip of a test whose CI requirement is missing into a failure."""
  if not (report.skipped and in_ci(environ)) or hasattr(report, "wasxfail"):
    return
  reason = skip_reason(report)
  missing = missing_requirement(reason)
  if missing is not None:
    report.outcome = "failed"
    report.longrepr = (f"CI=true but {missing} is missing, so this test cannot run "
                       f"(skip reason: {reason}); install it (make install, make data)")


@pytest.fixture(autouse=True, scope="session")
def _advice_cache(tmp_path_factory):
  """The trainer's batching-advice cache in a folder of this session, so that no test reads
  an answer that another session stored, nor writes into the home folder."""
  from geometry import advisor  # pylint: disable=g-import-not-at-top
  old = os.environ.get(advisor.ADVICE_CACHE_ENV)
  os.environ[advisor.ADVICE_CACHE_ENV] = str(tmp_path_factory.mktemp("advice"))
  yield
  if old is None:
    os.environ.pop(advisor.ADVICE_CACHE_ENV, None)
  else:
    os.environ[advisor.ADVICE_CACHE_ENV] = old


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  fail_required_skip(outcome.get_result(), os.environ)
