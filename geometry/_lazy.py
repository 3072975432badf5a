"""Package attributes loaded on first use, so that importing a package stays light (no JAX)."""

import importlib
import sys


def lazy_attributes(package: str, module: str, names: tuple[str, ...]):
  """The ``(__getattr__, __dir__)`` pair of PEP 562 for `package`: each of `names` is read
  from `module`, imported on the first access to one of them."""

  def __getattr__(name):  # pylint: disable=invalid-name
    if name in names:
      return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  def __dir__():  # pylint: disable=invalid-name
    return sorted([*vars(sys.modules[package]), *names])

  return __getattr__, __dir__
