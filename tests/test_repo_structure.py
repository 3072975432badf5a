"""The house rules of the packages: modules of a readable size, no import cycle, and no block
of code written twice (docs/contracts.md#layout). Each rule is checked on a hand-made tree
first, so a rule that could never fail would show here."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("geometry", "ufm", "deepnet", "experiments")
MAX_LINES = 500
BLOCK = 6   # identical lines that make a repeated block


def _modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
  """Dotted module name -> file, for every .py file of the packages under root."""
  found = {}
  for package in packages:
    for path in sorted((root / package).rglob("*.py")):
      parts = list(path.relative_to(root).with_suffix("").parts)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      found[".".join(parts)] = path
  return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
  """The project modules that ``name`` imports anywhere in its file (inside functions too).

  ``from pkg import x`` imports ``pkg.x`` when that is a module, else ``pkg``; relative imports
  are resolved against the module's own package.
  """
  tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  targets = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        full = f"{base}.{alias.name}"
        targets.add(full if full in modules else base)
  return {t for t in targets if t in modules and t != name}


def _cycles(modules: dict[str, Path]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan), i.e. the cycles."""
  graph = {m: sorted(_imports(m, p, modules)) for m, p in modules.items()}
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in graph:
    if v not in index:
      visit(v)
  return out


_SKIP = re.compile(r"^(#.*|[()\[\]{},:;]*|(from\s+\S+\s+)?import\s.*|\"\"\"|''')$")


def _code_lines(path: Path) -> list[tuple[int, str]]:
  """(line number, whitespace-folded text) of the lines that count: no blank lines, comments,
  lone punctuation or import lines."""
  lines = []
  for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    text = " ".join(raw.split())
    if text and not _SKIP.match(text):
      lines.append((number, text))
  return lines


def _repeated_blocks(files: list[Path], owned: set[Path], block: int = BLOCK) -> list[str]:
  """Places where ``block`` consecutive counted lines stand twice, at least once in ``owned``."""
  seen: dict[tuple[str, ...], tuple[Path, int]] = {}
  found = []
  for path in files:
    lines = _code_lines(path)
    last_reported = -1
    for i in range(len(lines) - block + 1):
      key = tuple(text for _, text in lines[i:i + block])
      first = seen.setdefault(key, (path, lines[i][0]))
      if first != (path, lines[i][0]) and (path in owned or first[0] in owned):
        if i > last_reported:   # one row per run of overlapping windows
          found.append(f"{path.relative_to(path.parents[len(path.parts) - 2])}:{lines[i][0]} "
                       f"repeats {first[0].name}:{first[1]}")
        last_reported = i + block - 1
  return found


def _write(root: Path, files: dict[str, str]) -> None:
  for rel, text in files.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text, encoding="utf-8")


# ---- the rules on hand-made trees ----

def test_cycle_finder_sees_imports_inside_functions_and_from_imports(tmp_path):
  _write(tmp_path, {
      "pa/__init__.py": "",
      "pa/a.py": "def f():\n  from pa import b\n",
      "pa/b.py": "import pa.c\n",
      "pa/c.py": "from . import a\n",
      "pa/d.py": "import pa.a\n",
  })
  modules = _modules(tmp_path, ("pa",))
  assert _imports("pa.c", modules["pa.c"], modules) == {"pa.a"}
  assert _cycles(modules) == [["pa.a", "pa.b", "pa.c"]]
  (tmp_path / "pa/a.py").write_text("def f():\n  return 1\n", encoding="utf-8")
  assert _cycles(_modules(tmp_path, ("pa",))) == []


def test_cycle_finder_resolves_relative_imports_from_subpackages(tmp_path):
  _write(tmp_path, {
      "pa/__init__.py": "", "pa/sub/__init__.py": "",
      "pa/a.py": "from pa.sub import b\n",
      "pa/sub/b.py": "def f():\n  from .. import c\n  return c\n",
      "pa/c.py": "import pa.a\n",
      "pa/d.py": "from pa import a\n",   # imports into the cycle, not part of it
  })
  assert _cycles(_modules(tmp_path, ("pa",))) == [["pa.a", "pa.c", "pa.sub.b"]]


def test_block_finder_counts_code_not_blanks_comments_or_imports(tmp_path):
  body = "".join(f"x{i} = compute({i})\n" for i in range(6))
  _write(tmp_path, {"pa/a.py": body, "pa/b.py": "# moved\n\n" + body.replace("\n", "\n\n"),
                    "pa/c.py": body.replace("x5", "y5"),
                    "pa/d.py": "".join(f"import m{i}\n" for i in range(8)),
                    "pa/e.py": "".join(f"import m{i}\n" for i in range(8))})
  files = sorted((tmp_path / "pa").glob("*.py"))
  rows = _repeated_blocks(files, set(files))
  assert len(rows) == 1 and "b.py:3 repeats a.py:1" in rows[0]
  assert _repeated_blocks(files, set()) == []   # repeats outside owned files are not counted


# ---- the rules on this repository ----

def test_no_package_module_is_over_the_size_limit():
  long = {name: n for name, path in _modules(REPO).items()
          if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
  assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_packages_have_no_import_cycle():
  assert _cycles(_modules(REPO)) == []


def test_configs_report_and_spec_never_import_the_runner():
  modules = _modules(REPO)
  for name, path in modules.items():
    if name.startswith(("experiments.configs", "experiments.report", "experiments.spec")):
      assert "experiments.sweep" not in _imports(name, path, modules), name


def test_no_block_of_code_stands_twice_in_the_packages():
  package_files = sorted(_modules(REPO).values())
  test_files = sorted((REPO / "tests").rglob("*.py"))
  rows = _repeated_blocks(package_files + test_files, set(package_files))
  assert not rows, "\n".join(rows)
