"""The compilation-cache benchmark's input check, and where the cache goes."""

import os
import subprocess
import sys

from deepnet import compilation_cache

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_compile_cache_bench_rejects_a_run_too_short_to_resume():
  proc = subprocess.run([sys.executable, "-m", "benchmarks.compile_cache", "--epochs", "1"],
                        cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip() == ("error: --epochs must be >= 2 (the resume case restarts "
                                 "after epoch 1)")


def test_cache_folder_is_the_config_then_the_environment_then_the_default(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.delenv(compilation_cache.ENV_VAR, raising=False)
  assert compilation_cache.resolve_dir(None) == str(
      tmp_path / "home" / ".cache" / "scl-geometry" / "jax")
  monkeypatch.setenv(compilation_cache.ENV_VAR, str(tmp_path / "env"))
  assert compilation_cache.resolve_dir(None) == str(tmp_path / "env")
  assert compilation_cache.resolve_dir(str(tmp_path / "cfg")) == str(tmp_path / "cfg")
  monkeypatch.chdir(tmp_path)
  assert compilation_cache.resolve_dir("rel") == str(tmp_path / "rel")
