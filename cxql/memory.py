"""``SET memory_limit``: estimate what a statement will allocate, and refuse past the limit.

A statement that would need more memory than the machine has does not fail
cleanly: torch may die with a C++ stack dump, or the kernel kills the whole
process, taking every finished result with it. So each statement first
estimates its largest working set from the sizes it is about to use (units,
beam, signatures, concepts, histogram entries) and refuses, naming the
estimate, the limit and how to change it, before allocating anything.

The estimates are upper bounds of the arrays each algorithm keeps alive at
once (the formulas are next to the code they describe); the store's own
tables, loaded once per session, are not counted. The default limit is half
of the machine's physical memory.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from .errors import QueryError

DEFAULT_SHARE = 0.5
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*\Z", re.IGNORECASE)


class MemoryLimitError(QueryError):
    """A statement whose estimated memory exceeds ``SET memory_limit``."""


def physical_memory() -> int:
    """Bytes of physical memory (sysconf, else /proc/meminfo; 8 GiB if neither answers)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


def default_limit() -> int:
    return int(physical_memory() * DEFAULT_SHARE)


def parse_size(value: Any) -> int:
    """Bytes from ``4GB``, ``512MB``, ``1.5GiB``, a plain number of bytes, or ``auto`` (the default)."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "default"):
        return default_limit()
    if isinstance(value, bool):
        raise QueryError(f"memory_limit must be a size such as '4GB' or '512MB', got {value!r}", needle=str(value))
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if match is None or match.group(2).lower() not in _UNITS:
            raise QueryError(f"memory_limit must be a size such as '4GB', '512MB' or 'auto', got {value!r}",
                             needle=str(value))
        number, unit = float(match.group(1)), match.group(2).lower()
    size = number * _UNITS[unit]
    if not size >= 1 or size > 1 << 62:
        raise QueryError(f"memory_limit must be between 1 byte and 4 EiB, got {value!r}", needle=str(value))
    return int(size)


def format_size(n: float) -> str:
    """``1.5 GB``: decimal units, three significant digits."""
    for unit, scale in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def check(estimate: float, limit: int, what: str, hint: str | None = None) -> None:
    """Refuse ``what`` when its estimated bytes exceed ``limit``, with the numbers and the way out."""
    if estimate <= limit:
        return
    room = estimate * 1.25
    size = f"{math.ceil(room / 1e9)}GB" if room >= 1e9 else f"{math.ceil(room / 1e6)}MB"
    advice = f"SET memory_limit = '{size}' to allow it"
    raise MemoryLimitError(f"{what} would need about {format_size(estimate)} of memory, over the "
                           f"memory_limit of {format_size(limit)}",
                           hint=f"{hint}, or {advice}" if hint else advice)


# ------------------------------------------------------------ estimates (bytes)


def formula_bytes(n_ops: int, n_sig: int, n_entries: int = 0, n_rows: int = 0) -> int:
    """A formula's mask and its counts per unit.

    The plan keeps one bool [S] register per op; the per-unit counts read the
    E histogram entries into about four int64/bool arrays; each result row
    is a dict of about 1 KB.
    """
    return n_ops * n_sig + 16 * n_sig + 32 * n_entries + 1024 * n_rows


def plain_search_bytes(beam: int, n_sig: int, n_concepts: int, n_nonempty: int, chunk_rows: int,
                       n_units: int) -> int:
    """The per-unit reference SEARCH (cxql.search.beam_search), one unit at a time.

    Old and new beam masks (bool [B, S] each, plus the stacked copy), the
    dense histogram and weights (float64 [S] x 3), one chunk of the weighted
    rows (float64 [2B, chunk], twice for the transpose, plus the beam masks
    promoted to float64) and of the unpacked
    table (float64 [chunk, K], twice), the [2B, K] product, about ten
    float64 [B, K', 3] candidate arrays, and the finished results (about
    400 bytes per beam entry per unit).
    """
    chunk = min(chunk_rows, max(n_sig, 1))
    return (3 * beam * n_sig + 24 * n_sig + 48 * beam * chunk + 16 * chunk * n_concepts
            + 16 * beam * n_concepts + 240 * beam * n_nonempty + 400 * beam * n_units)


def rethreshold_bytes(activations: Any, thresholds: Any, n_positions: int, block_bytes: int,
                      probe: int = 64) -> int:
    """Masks of a layer under a new threshold (``SET threshold``), estimated before they exist.

    The masks hold one int64 position per active (unit, position), copied
    about four times while they are collected; how many are active is
    estimated from ``probe`` evenly spread samples of the raw activations
    (bilinear upsampling keeps the active fraction close). The activation
    blocks add up to three ``block_bytes`` blocks, or the activations as
    float64 when they are smaller.
    """
    import numpy as np

    n = activations.shape[0]
    if n == 0:
        return 0
    rows = np.unique(np.linspace(0, n - 1, min(n, probe)).astype(np.int64))
    sample = np.asarray(activations[rows], dtype=np.float32)
    shape = (1, -1) + (1,) * (sample.ndim - 2)
    with np.errstate(over="ignore"):  # a threshold beyond float32's range becomes -inf or inf: still a fair sample
        limits = np.asarray(thresholds, dtype=np.float32).reshape(shape)
    fraction = (sample > limits).mean(axis=(0,) + tuple(range(2, sample.ndim)))
    active = float(fraction.sum()) * n_positions
    raw = 8 * int(np.prod(activations.shape, dtype=np.int64))
    return int(32 * active + 3 * min(block_bytes, raw))
