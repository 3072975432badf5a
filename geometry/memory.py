"""How much memory there is, and what the dense SCL needs, so that a computation that cannot fit
is refused with a sentence before it is compiled instead of being killed by the kernel.

Estimates count the large arrays only (those with an N x N, N x b or n x d shape) and are
meant to be within a small factor: a refusal says what fits, never that something is sure to.
"""

from __future__ import annotations

import os

GIB = float(1 << 30)
# The dense SCL forward-and-gradient sweep holds about six [N, N] arrays at once (logits,
# their exponentials, the softmax-minus-positives gradient and fused masks), as the streaming
# path holds six [b, N] ones.
SCL_PAIR_ARRAYS = 6
# Below this a dense SCL call is not checked: reading the free memory would cost more.
_CHECK_ABOVE = 256 << 20


def host_available_bytes() -> int:
  """Memory a new allocation can get on this host: MemAvailable (free plus reclaimable cache)
  from /proc/meminfo, else the free pages, else 8 GiB."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  try:
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return 8 << 30


def device_available_bytes() -> int:
  """Free memory of JAX's first device: its allocator's limit minus what is in use (GPU, TPU),
  or the host's for a CPU device (whose arrays live in host memory)."""
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  return host_available_bytes()


def scl_pair_bytes(rows: int, block: int, itemsize: int) -> int:
  """Bytes of the [block, rows] arrays of one SCL sweep (block = rows: the dense path)."""
  return SCL_PAIR_ARRAYS * rows * block * itemsize


def check_dense_scl(rows: int, itemsize: int) -> None:
  """Raises ValueError when the dense SCL of `rows` rows cannot fit in the device's memory."""
  need = scl_pair_bytes(rows, rows, itemsize)
  if need <= _CHECK_ABOVE:
    return
  available = device_available_bytes()
  if need <= available:
    return
  block = max(16, min(rows, available // 4 // max(SCL_PAIR_ARRAYS * rows * itemsize, 1)))
  raise ValueError(
      f"supcon_loss: the dense path at N = {rows} needs about {need / GIB:.1f} GiB "
      f"({SCL_PAIR_ARRAYS} N x N arrays of {itemsize} bytes) but {available / GIB:.1f} GiB is "
      f"available; pass block_size (memory O(N * block_size), the same value and gradient), "
      f"e.g. block_size={block}")
