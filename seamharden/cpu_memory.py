"""On a CPU, keep freed memory in the process instead of handing it back to the OS (glibc).

PyTorch's CPU allocator takes every tensor from malloc, and glibc serves each allocation above
its mmap threshold (128 KiB, rising to at most 32 MiB) with a fresh ``mmap`` that ``free``
unmaps. A training step allocates and frees the same large tensors over and over (activations,
gradients, the [positions, 49k] logits, a [49152, 576] embedding gradient per backward), so each
one is page-faulted in, zero-filled by the kernel, afresh. Serving all of them from the heap and
never trimming it makes those pages stay mapped and reused: after two warm-up steps a
SmolLM2-shaped SEAM step took 21k minor page faults instead of 490k, an SFT step 1.3k instead of
283k (``benchmarks/step_cost.py``, ``minor_faults_per_step``). Measured
on the 2-core dev box (docs/benchmarks.md): that step (``forward``, 2 threads) 13.0 s -> 11.4 s,
the default ``hvp`` step 19.6 s -> 17.1 s, an SFT step 2.25 s -> 2.1 s; the packaged SmolLM2 recipe's
protect 43 min -> 38 min with a byte-identical model (the arithmetic is unchanged), at a peak RSS
5.1 -> 5.75 GiB (freed memory stays with the process). PyTorch's CPU tuning guide gets the same effect with
jemalloc or tcmalloc (``LD_PRELOAD``); this needs no extra library.

The setting is for the whole process and stays: the memory a run freed is not returned before the
process ends (its peak RSS is held). Hence only single-process CPU runs ask for it (``protect``,
the attack suite): a GPU run's host memory (a model loaded on the CPU, then moved) is left alone.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""glibc's ``mallopt`` parameters (malloc.h)."""

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc serve every allocation from its heap (``M_MMAP_MAX`` 0) and trim the heap only when
    more than 2 GiB is free at its top. Returns whether the setting is in force (False off
    glibc, e.g. macOS or musl, where nothing changes). Idempotent."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _applied
