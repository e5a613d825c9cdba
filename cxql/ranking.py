"""Stable top-k per row: the beam's selection rule, vectorised.

SEARCH keeps, per unit, the best B candidates by IoU with ties going to the
earlier candidate (SPEC section 3). ``torch.topk`` does not promise which of
tied values it returns, so :func:`top_stable` first finds each row's k-th
best value, gathers only the scores at or above it, and ranks those by
(score descending, index ascending): the same order as a stable sort of the
whole row, without sorting it.
"""

from __future__ import annotations

import numpy as np
import torch


def top_stable(parts: list[torch.Tensor], k: int) -> torch.Tensor:
    """long [U, k]: per row of the scores [U, C] (given as column blocks ``parts``), the first k
    indices of a stable descending sort; -1 pads. Negative scores are never chosen.

    Only scores at or above each row's k-th best value are gathered, so the
    full [U, C] block is read by one ``topk`` and one comparison.
    """
    tops = torch.cat([p.topk(min(k, p.shape[1]), dim=1).values for p in parts], 1)
    if tops.shape[1] == 0:  # no candidates at all (a store whose concepts are all empty)
        return torch.full((tops.shape[0], k), -1, dtype=torch.long, device=tops.device)
    kth = tops.topk(min(k, tops.shape[1]), dim=1).values[:, -1].clamp(min=0)     # [U]; 0 when fewer than k
    found = [torch.nonzero(p >= kth[:, None], as_tuple=True) for p in parts]
    offsets = np.cumsum([0] + [p.shape[1] for p in parts])
    row = torch.cat([r for r, _ in found])
    col = torch.cat([c + int(o) for (_, c), o in zip(found, offsets)])
    val = torch.cat([p[r, c] for p, (r, c) in zip(parts, found)])
    order = torch.argsort(row * int(offsets[-1]) + col)                                # row-major
    row, col, val = row[order], col[order], val[order]
    n = len(kth)
    if not len(row):
        return torch.full((n, k), -1, dtype=torch.long, device=kth.device)
    above = val > kth[row]
    tie = (~above).long()
    ties_before = torch.cumsum(tie, 0) - tie                                           # in the whole list
    first = row_starts(row, n)
    rank = ties_before - ties_before[first.clamp(max=len(row) - 1)][row]              # among the row's ties
    room = k - torch.bincount(row[above], minlength=n)
    keep = above | (rank < room[row])
    row, col, val = row[keep], col[keep], val[keep]
    slot = torch.arange(len(row), device=row.device) - row_starts(row, n)[row]
    out = torch.full((n, k), -1, dtype=torch.long, device=kth.device)
    score = torch.full((n, k), -2.0, dtype=val.dtype, device=kth.device)
    out[row, slot], score[row, slot] = col, val
    return out.gather(1, torch.sort(-score, dim=1, stable=True).indices)              # by score, then index


def row_starts(row: torch.Tensor, n: int) -> torch.Tensor:
    """long [n]: where each row's entries begin in a row-sorted list of row ids."""
    counts = torch.bincount(row, minlength=n)
    return torch.cumsum(counts, 0) - counts
