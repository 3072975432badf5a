"""Package attributes loaded on first use, so that importing a package stays light (no JAX)."""

import importlib
import sys
from typing import Mapping


def lazy_attributes(package: str, modules: Mapping[str, tuple[str, ...]]):
  """The ``(__getattr__, __dir__)`` pair of PEP 562 for `package`: `modules` maps a module to
  the names read from it, each module imported on the first access to one of its names."""
  where = {name: module for module, names in modules.items() for name in names}

  def __getattr__(name):  # pylint: disable=invalid-name
    if name in where:
      return getattr(importlib.import_module(where[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__():  # pylint: disable=invalid-name
    return sorted([*vars(sys.modules[package]), *where])

  return __getattr__, __dir__
