"""`ufm solve` records the software stack and the code version in result.json, as training
runs do in run.json."""

import importlib.metadata
import json
import os
import platform
import subprocess

import jax

from ufm import cli

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_result_json_holds_the_versions_and_the_git_commit(tmp_path):
  out = tmp_path / "solve"
  assert cli.main(["solve", "--sizes", "3,3", "--dim", "2", "--temperature", "1", "--steps", "200",
                   "--out", str(out), "--quiet"]) == 0
  provenance = json.loads((out / "result.json").read_text())["provenance"]
  assert provenance["python"] == platform.python_version()
  assert provenance["jax"] == jax.__version__
  for name, key in (("jaxlib", "jaxlib"), ("flax", "flax"), ("optax", "optax"),
                    ("orbax-checkpoint", "orbax"), ("numpy", "numpy")):
    assert provenance[key] == importlib.metadata.version(name), name
  assert provenance["device_kind"] == jax.devices()[0].device_kind
  head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                        text=True)
  if head.returncode == 0:   # a source checkout (not an installed wheel)
    assert provenance["git"]["commit"] == head.stdout.strip()
    assert isinstance(provenance["git"]["dirty"], bool)
