"""No import cycle in experiments/: imports parsed with `ast`, those inside functions included.

`import_cycles` takes a package list so that other packages can be checked the same way.
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _modules(root: Path, packages) -> dict:
  """{module name: file} of every .py file under the packages (pkg/__init__.py is pkg)."""
  out = {}
  for package in packages:
    for path in sorted((root / package).rglob("*.py")):
      parts = list(path.relative_to(root).with_suffix("").parts)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = path
  return out


def _imported(name: str, path: Path, tree: ast.AST, known: dict) -> set:
  """The known modules that module `name` imports anywhere in its body. ``from A import B``
  imports the module A.B when it is one, else A; a relative import is resolved against the
  module's package. Importing A.B also runs A's __init__, which is not counted (as pylint's
  cyclic-import does not): a package that re-exports its submodules is no cycle."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    else:
      continue
    for target in targets:
      while target and target not in known:
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def import_cycles(packages, root: Path = REPO) -> list[list[str]]:
  """The import cycles among the modules of `packages` (folders under `root`): each a list
  of module names, the strongly connected components of more than one module (Tarjan)."""
  known = _modules(root, packages)
  graph = {name: _imported(name, path, ast.parse(path.read_text()), known)
           for name, path in known.items()}
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for nxt in sorted(graph[node]):
      if nxt not in index:
        visit(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while True:
        top = stack.pop()
        on_stack.discard(top)
        component.append(top)
        if top == node:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for name in sorted(graph):
    if name not in index:
      visit(name)
  return cycles


def test_experiments_has_no_import_cycle():
  assert import_cycles(["experiments"]) == []


def test_configs_report_and_spec_never_import_the_runner():
  known = _modules(REPO, ["experiments"])
  for name, path in known.items():
    if name.startswith(("experiments.configs", "experiments.report", "experiments.spec")):
      assert "experiments.sweep" not in _imported(name, path, ast.parse(path.read_text()),
                                                  known), name


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
  pkg = tmp_path / "pkg"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "sub" / "__init__.py").write_text("")
  (pkg / "a.py").write_text("from pkg.sub import b\n")
  (pkg / "sub" / "b.py").write_text("def f():\n  from .. import c\n  return c\n")
  (pkg / "c.py").write_text("import pkg.a\n")
  (pkg / "d.py").write_text("from pkg import a\n")   # imports into the cycle, not part of it
  assert import_cycles(["pkg"], tmp_path) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
  (pkg / "c.py").write_text("import os\n")
  assert import_cycles(["pkg"], tmp_path) == []
