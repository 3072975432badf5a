"""The repository is self-contained: every file it cites exists, every docs anchor it cites is
defined, and nothing names the team's planning files, which a user never sees."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Split so that this file does not name them itself.
FORBIDDEN = ("PAPER" + ".md", "DESIGN" + ".md")
CITED_PATH = re.compile(
    r"(?<![\w./-])((?:docs|experiments|geometry|ufm|deepnet|benchmarks|tests)/[\w./-]*\w"
    r"\.(?:py|md|json|png|txt|cff))(#[\w-]+)?")


def _tracked_files() -> list[Path]:
  try:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                         check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    pytest.skip("not a git checkout")
  return [REPO / f for f in out.split() if (REPO / f).is_file()
          and f.endswith((".py", ".md", ".json", ".toml", ".cff", ".txt", "Makefile", "run"))]


def _anchors(doc: Path) -> set[str]:
  text = doc.read_text(encoding="utf-8")
  ids = set(re.findall(r'id="([\w-]+)"', text))
  for heading in re.findall(r"^#+\s+(.*)$", text, flags=re.M):   # GitHub's heading slugs
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    ids.add(slug)
  return ids


def test_no_file_names_the_planning_documents():
  offenders = [f"{f.relative_to(REPO)}: {name}" for f in _tracked_files()
               for name in FORBIDDEN if name in f.read_text(encoding="utf-8", errors="replace")]
  assert not offenders, offenders


def test_every_cited_path_and_anchor_exists():
  missing = []
  anchors: dict[Path, set[str]] = {}
  for f in _tracked_files():
    for path, anchor in CITED_PATH.findall(f.read_text(encoding="utf-8", errors="replace")):
      target = REPO / path
      if re.fullmatch(r"[A-Z_]+", target.stem) or "no_such" in path:
        continue   # a placeholder (experiments/configs/NAME.py) or a deliberately missing file
      if not target.exists():
        missing.append(f"{f.relative_to(REPO)} cites {path} (no such file)")
      elif anchor and target.suffix == ".md":
        if target not in anchors:
          anchors[target] = _anchors(target)
        if anchor[1:] not in anchors[target]:
          missing.append(f"{f.relative_to(REPO)} cites {path}{anchor} (no such anchor)")
  assert not missing, "\n".join(missing)
