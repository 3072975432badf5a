"""The install as the README states it: the Makefile's pip lines, the extras and metadata of
pyproject.toml, the constraints file against the declared ranges, LICENSE and CITATION.cff."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def _pyproject():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def _make_n(*args):
  if shutil.which("make") is None:
    pytest.skip("make is not installed")
  # A throw-away VENV path so that nothing of the real .venv/ decides what make would do.
  return subprocess.run(["make", "-n", "install", "VENV=/nonexistent/venv", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,extras", [((), "dev,tfds,torch"),
                                         (("JAX=cpu",), "dev,tfds,torch"),
                                         (("JAX=cuda12",), "dev,tfds,torch,cuda12"),
                                         (("JAX=cuda13",), "dev,tfds,torch,cuda13")])
def test_make_install_pip_line(args, extras):
  proc = _make_n(*args)
  assert proc.returncode == 0, proc.stderr
  pip = [line.strip() for line in proc.stdout.splitlines() if "pip install" in line]
  assert pip == [f'/nonexistent/venv/bin/pip install -e ".[{extras}]"'], proc.stdout
  pinned = _make_n(*args, "PINNED=1")
  assert [line.strip() for line in pinned.stdout.splitlines() if "pip install" in line] == [
      f'/nonexistent/venv/bin/pip install -e ".[{extras}]" -c constraints.txt']


def test_make_install_rejects_an_unknown_jax_variant():
  proc = _make_n("JAX=rocm")
  assert proc.returncode != 0
  assert "JAX=rocm is not one of: cpu cuda12 cuda13" in proc.stderr


def test_every_extra_the_makefile_names_exists_and_the_gpu_extras_are_jax_cuda():
  extras = _pyproject()["project"]["optional-dependencies"]
  assert {"dev", "tfds", "torch", "cuda12", "cuda13"} <= set(extras)
  for variant in ("cuda12", "cuda13"):
    (req,) = [Requirement(r) for r in extras[variant]]
    assert req.name == "jax" and req.extras == {variant}


def test_core_has_no_tensorflow_no_torch_and_no_test_tools():
  project = _pyproject()["project"]
  core = {Requirement(r).name for r in project["dependencies"]}
  assert not core & {"tensorflow", "tensorflow-cpu", "tensorflow-datasets", "torch", "chex",
                     "pytest"}
  assert {"absl-py", "jax", "flax", "optax", "orbax-checkpoint", "tensorboard"} <= core
  dev = {Requirement(r).name for r in project["optional-dependencies"]["dev"]}
  assert "chex" in dev
  assert project["requires-python"] == ">=3.11"
  assert project["license"] == "Apache-2.0"


def test_tfds_extra_takes_tensorflow_cpu_only_where_it_has_wheels():
  reqs = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["tfds"]]
  by_name = {r.name: r for r in reqs}
  linux_x86 = {"sys_platform": "linux", "platform_machine": "x86_64"}
  for env, wanted in ((linux_x86, "tensorflow-cpu"),
                      ({"sys_platform": "linux", "platform_machine": "aarch64"}, "tensorflow"),
                      ({"sys_platform": "darwin", "platform_machine": "arm64"}, "tensorflow")):
    chosen = [r.name for r in reqs if r.marker is not None and r.marker.evaluate(env)]
    assert chosen == [wanted], (env, chosen)
  assert by_name["tensorflow-datasets"].marker is None


def test_torch_extra_pins_the_cpu_wheel_exactly():
  reqs = {Requirement(r).name: Requirement(r)
          for r in _pyproject()["project"]["optional-dependencies"]["torch"]}
  assert str(reqs["torch"].specifier) == "==2.13.0"
  assert "pytorch-metric-learning" in reqs


def test_constraints_pin_versions_inside_the_declared_ranges():
  project = _pyproject()["project"]
  declared = [Requirement(r) for r in project["dependencies"]]
  for extra in ("dev", "tfds", "torch"):
    declared += [Requirement(r) for r in project["optional-dependencies"][extra]]
  pins = {}
  with open(os.path.join(REPO, "constraints.txt")) as f:
    for line in f:
      line = line.split("#")[0].strip()
      if line:
        name, _, version = line.partition("==")
        assert version, line
        pins[name.lower().replace("_", "-")] = Version(version)
  for req in declared:
    name = req.name.lower().replace("_", "-")
    assert name in pins or (req.marker and not req.marker.evaluate()), req
    if name in pins:
      assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_license_and_citation():
  with open(os.path.join(REPO, "LICENSE")) as f:
    assert "Apache License" in f.read(200)
  yaml = pytest.importorskip("yaml")
  with open(os.path.join(REPO, "CITATION.cff")) as f:
    cff = yaml.safe_load(f)
  from geometry import __version__  # pylint: disable=g-import-not-at-top
  assert cff["cff-version"] == "1.2.0" and str(cff["version"]) == __version__
  assert cff["license"] == "Apache-2.0"
  paper = cff["preferred-citation"]
  assert [a["family-names"] for a in paper["authors"]] == [
      "Kini", "Vakilian", "Behnia", "Gill", "Thrampoulidis"]
  assert paper["year"] == 2024 and "2306.07960" in paper["url"]


def test_schedules_ship_as_package_data():
  data = _pyproject()["tool"]["setuptools"]["package-data"]["experiments"]
  assert "schedules/*.json" in data
  assert os.listdir(os.path.join(REPO, "experiments", "schedules"))


# ---- the wheel: what `pip install scl-geometry` puts on sys.path ----

# The packages users import (docs/contracts.md#layout); benchmarks/ and tests/ stay in the
# checkout (`make bench` runs `python -m benchmarks.run` from there).
INSTALLED = {"geometry", "ufm", "deepnet", "experiments"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel built from a copy of the checkout (the build writes build/ and *.egg-info next
  to pyproject.toml; the copy keeps them out of the tree), with benchmarks/ and tests/ in the
  copy so that leaving them out is the packaging's doing."""
  pytest.importorskip("setuptools")
  pytest.importorskip("wheel")
  src = tmp_path_factory.mktemp("src")
  for name in ("pyproject.toml", "README.md", "LICENSE"):
    shutil.copy(os.path.join(REPO, name), src / name)
  skip = shutil.ignore_patterns("__pycache__", "*.pyc", "runs")
  for name in sorted(INSTALLED) + ["benchmarks", "tests"]:
    shutil.copytree(os.path.join(REPO, name), src / name, ignore=skip)
  out = tmp_path_factory.mktemp("wheel")
  # Offline: the build uses the setuptools and wheel already installed.
  proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                         "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(src)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (path,) = out.glob("*.whl")
  with zipfile.ZipFile(path) as z:
    return z.namelist()


def test_the_wheel_installs_only_the_four_packages(wheel):
  top = {name.split("/")[0] for name in wheel}
  dist_info = {t for t in top if t.endswith(".dist-info")}
  assert len(dist_info) == 1 and top - dist_info == INSTALLED, top
  # No test or benchmark module inside a package either.
  assert not [n for n in wheel if "/tests/" in n or "/benchmarks/" in n
              or os.path.basename(n).startswith("test_")]


def test_the_wheel_carries_the_configs_schedules_and_console_scripts(wheel):
  configs = {os.path.basename(n) for n in wheel if n.startswith("experiments/configs/")}
  assert configs == {p for p in os.listdir(os.path.join(REPO, "experiments", "configs"))
                     if p.endswith(".py")}
  schedules = {os.path.basename(n) for n in wheel if n.startswith("experiments/schedules/")}
  assert schedules == set(os.listdir(os.path.join(REPO, "experiments", "schedules")))
  assert "experiments/report/__init__.py" in wheel


def test_no_installed_name_is_taken_by_another_distribution_here():
  # Whatever else this environment holds (jax, flax, torch, tensorflow, tfds, matplotlib,
  # ...): none of its distributions provides one of the wheel's top-level names.
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  providers = metadata.packages_distributions()
  taken = {name: sorted(set(providers[name]) - {"scl-geometry", "scl_geometry"})
           for name in INSTALLED if name in providers}
  assert not {n: d for n, d in taken.items() if d}, taken


def test_benchmarks_run_from_the_checkout():
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--help"], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
