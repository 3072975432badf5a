"""The solver's compiled functions take the labels as an argument: no n-long literal is
embedded in the program (at n = 10^7 XLA spent minutes on one)."""

import re

import jax

from ufm import problem as problem_lib
from ufm import solver


def test_no_label_constant_in_the_compiled_solver(monkeypatch):
  real_jit = jax.jit
  programs = []

  def recording_jit(fun, **kwargs):
    jitted = real_jit(fun, **kwargs)
    lowered = []

    def call(*args, **kw):
      if not lowered:      # once per function: lowering costs a trace
        lowered.append(True)
        programs.append(jitted.lower(*args, **kw).as_text())
      return jitted(*args, **kw)
    return call

  monkeypatch.setattr(jax, "jit", recording_jit)
  # 300 rows; the warm-up solves the problem cut to 32 + 32 = 64 rows, with its own programs.
  lengths = (300, 64)
  problem = problem_lib.make_problem(sizes=[200, 100], dim=2, temperature=1.0)
  solver.solve(problem, solver.SolverOptions(steps=20, chunk=10, seeds=1))
  assert len(programs) >= 3          # a chunk of steps, the objective, the noise
  for n in lengths:
    assert any(f"tensor<{n}xi32>" in text for text in programs)
  constants = [re.compile(r"constant .*tensor<(?:\d+x)*%d(?:x\w+)?>" % n) for n in lengths]
  for text in programs:
    assert any(f"tensor<{n}xi32>" in text for n in lengths)    # the labels are an argument
    assert not [l for l in text.splitlines() if any(c.search(l) for c in constants)]
