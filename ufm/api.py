"""The Python face of ``ufm solve``: `solve` takes the command's arguments as keywords and
returns a `Result` holding what the command writes (the fields of result.json and the
embeddings), from the same code (`run`, which the command calls too).

  import ufm
  result = ufm.solve(sizes=[4, 4, 4], dim=3, temperature=0.5, final_relu=True, batching="full",
                     seeds=2)
  result.dist_of, result.loss, result.of_loss, result["fraction_of"], result.embeddings

JAX is imported by the solve itself, not by ``import ufm``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ufm import options as options_lib
from ufm import problem as problem_lib


@dataclasses.dataclass(frozen=True)
class Result:
  """One solve, as ``ufm solve`` records it.

  Attributes:
    fields: the result.json dictionary (docs/contracts.md#ufm-outputs): the best seed's loss,
      of_loss, dist_of, ... at the top level, every seed under "seeds", the problem's
      definition. Each key is also an attribute (``result.dist_of``) and an item
      (``result["dist_of"]``).
    embeddings: ``[N, d]`` the best seed's embeddings H (the rows of class c are those with
      label c; embeddings.npy).
    labels: ``[N]`` the labels (labels.npy).
    classifier: ``[K, d]`` the best seed's classifier W (CE), else None (classifier.npy).
    seed_embeddings: ``[S, N, d]`` every seed's embeddings.
    solution: the solver's per-seed `ufm.solver.SolveResult`.
  """
  fields: dict
  embeddings: np.ndarray
  labels: np.ndarray
  classifier: np.ndarray | None
  seed_embeddings: np.ndarray
  solution: Any = dataclasses.field(repr=False)

  def __getattr__(self, name: str):
    # Only for names that are not attributes: the keys of result.json.
    fields = self.__dict__.get("fields")
    if fields is not None and name in fields:
      return fields[name]
    raise AttributeError(f"Result has no attribute or result.json key {name!r}")

  def __getitem__(self, key: str):
    return self.fields[key]

  def __repr__(self) -> str:
    return (f"Result({self.fields.get('setup')!r}, loss={self.fields.get('loss')!r}, "
            f"dist_of={self.fields.get('dist_of')!r}, seeds={self.fields.get('num_seeds')})")


def run(problem: problem_lib.Problem, options: options_lib.SolverOptions,
        progress: Callable[[dict], None] | None = None) -> Result:
  """Solves a built `problem` with `options` (`ufm.solver.solve`) and records it as
  result.json does (`ufm.result.build_result`): the one path of the command and of `solve`."""
  # Imported here: JAX starts with the solve, not with `import ufm`.
  from ufm import solver as solver_lib  # pylint: disable=g-import-not-at-top
  from ufm.result import build_result  # pylint: disable=g-import-not-at-top
  solution = solver_lib.solve(problem, options, progress=progress)
  best = int(np.nanargmin(solution.loss))
  return Result(fields=build_result(problem, options, solution),
                embeddings=np.asarray(solution.embeddings[best]),
                labels=np.asarray(problem.labels),
                classifier=(None if solution.classifier is None
                            else np.asarray(solution.classifier[best])),
                seed_embeddings=np.asarray(solution.embeddings), solution=solution)


def solve(*, sizes: Sequence[int] | None = None, dim: int, temperature: float = 0.1,
          final_relu: bool = True,
          batching: str = "full", seeds: int = 1, seed: int = 0, loss: str = "scl",
          binding: int = 0, steps: int = 20000, tol: float | None = None,
          lr: float | None = None, dtype: str = "float64", block_size: int | None = None,
          continuation: bool = True, lambda_h: float = 5e-4,
          lambda_w: float = 5e-4, tau: float | None = None, relu: bool | None = None) -> Result:
  r"""Solves the UFM+ (``final_relu=True``) or UFM (``final_relu=False``) problem of ``ufm solve``.

  The SCL objective (docs/theory.md#scl-loss), summed over the anchors of each batch and the
  batches of one epoch, minimised over unit rows h_i (and h_i >= 0 for UFM+):

    L(H) = sum_i 1/|P(i)| sum_{p in P(i)} -log( exp(h_i.h_p / tau) / sum_{j != i} exp(h_i.h_j / tau) )

  For full-batch UFM+ its minimum is Theorem 1's orthogonal-frame value
  sum_c n_c log(n_c - 1 + (N - n_c) exp(-1/tau)) (``result.of_loss``), whatever the sizes.

  Args: the keywords of ``ufm solve``'s flags (docs/contracts.md#ufm-solve): ``sizes`` the
    class sizes, ``dim`` d, ``temperature`` tau, ``final_relu`` UFM+ or UFM, ``batching``
    ("full", "shuffle:B", "fixed:B" or "fixed:FILE", whose labels replace ``sizes``),
    ``seeds`` how many seeds are solved together (seed, seed + 1, ...), ``loss`` "scl" or "ce"
    (ridge weights ``lambda_h``, ``lambda_w``), ``binding`` examples per class added to every
    batch, ``steps``, ``tol``, ``lr``, ``dtype``, ``block_size`` and ``continuation`` the
    solver's knobs (`ufm.options.SolverOptions`). ``tau`` and ``relu`` are the old names of
    ``temperature`` and ``final_relu``, accepted for one release with a DeprecationWarning.

  Returns:
    A `Result` (result.json's fields and the embeddings).

  Raises:
    ufm.problem.ProblemError: bad input, with the one-line message of the command.
  """
  if tau is not None:
    warnings.warn("ufm.solve(tau=...) is deprecated, use temperature=", DeprecationWarning,
                  stacklevel=2)
    temperature = tau
  if relu is not None:
    warnings.warn("ufm.solve(relu=...) is deprecated, use final_relu=", DeprecationWarning,
                  stacklevel=2)
    final_relu = relu
  problem = problem_lib.make_problem(
      sizes=sizes, dim=dim, temperature=temperature, final_relu=final_relu, loss=loss,
      lambda_h=lambda_h, lambda_w=lambda_w, batching=batching, binding=binding, seed=seed,
      dtype=dtype)
  options = options_lib.SolverOptions(steps=steps, tol=tol, learning_rate=lr,
                                      block_size=block_size, continuation=continuation,
                                      seeds=seeds)
  return run(problem, options)
