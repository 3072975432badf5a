import jax
import pytest


@pytest.fixture(autouse=True)
def _float64():
  """Geometry tests compare with float64 NumPy; enable x64 per test so other packages' tests
  in the same process keep JAX's float32 default."""
  with jax.enable_x64(True):
    yield
