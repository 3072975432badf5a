"""Compile time dominates the suite's tiny problems: every test process (and the subprocess
helpers, which set it themselves) runs with most XLA optimisations off."""

import jax

jax.config.update("jax_disable_most_optimizations", True)
