"""Keep freed memory in the process: CPU training without a million page faults per step.

glibc's ``malloc`` serves every block above its mmap threshold (128 KiB at first, growing to
32 MiB at most) as a fresh memory mapping and unmaps it on ``free``. PyTorch allocates its
activations and gradients anew at every step, so each step maps them again and the kernel
zero-fills them page by page on first touch: fine-tuning both towers on the Flickr8k slice took
about a million minor page faults per step and spent half its time in the kernel. Raising the
mmap threshold (large blocks come from the heap) and the trim threshold (the heap's freed top is
kept) lets each step reuse the previous step's memory. ``train.keep_freed_memory`` turns it on
for CPU runs (the default); the price is the peak memory staying reserved (+~0.5 GB measured).
The same setting from outside: ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483648:``
``glibc.malloc.trim_threshold=17179869184``. Used by ``train.loop`` and ``simpleclip eval``;
figures in ``benchmarks/README.md`` (``finetune_throughput.py``). Reference: ``man 3 mallopt``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
# -1: never give the heap's free top back (man 3 mallopt). 2**31 - 1, the largest positive
# int, still let the biggest steps trim (measured: 13k page faults per step instead of ~30).
TRIM_THRESHOLD = -1
TUNABLES = "GLIBC_TUNABLES"  # the environment route; then the user's own choice is left alone

_applied = False  # mallopt settings hold for the whole process: apply them once


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse instead of returning it to the kernel.

    Idempotent, and a no-op (returning False) where it does not apply: not Linux, not glibc
    (musl, macOS, Windows), or ``mallopt`` refused. If ``GLIBC_TUNABLES`` already sets the
    mmap threshold, that choice is kept. On a glibc that caps ``M_MMAP_THRESHOLD`` (older ones
    refuse more than 32 MiB), mmap is switched off instead (``M_MMAP_MAX=0``): same effect.

    Returns:
        True if freed memory is now kept (by this call, an earlier one, or the environment).
    """
    global _applied
    if _applied:
        return True
    if "glibc.malloc.mmap_threshold" in os.environ.get(TUNABLES, ""):
        _applied = True
        logger.info("keep_freed_memory: already set by %s", TUNABLES)
        return True
    mallopt = _glibc_mallopt()
    if mallopt is None:
        logger.info("keep_freed_memory: not applied (needs Linux with glibc)")
        return False
    mapped = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) or mallopt(M_MMAP_MAX, 0)
    _applied = bool(mapped and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    logger.info("keep_freed_memory: %s", "applied" if _applied else "refused by mallopt")
    return _applied


def _glibc_mallopt():
    """``mallopt(int, int) -> int`` from the C library, or None when it is not glibc's."""
    if not sys.platform.startswith("linux") or not _libc_version().startswith("glibc"):
        return None
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def _libc_version() -> str:
    """E.g. ``"glibc 2.36"``; empty where the C library does not say (musl)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return ""
