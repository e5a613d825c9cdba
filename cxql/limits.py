"""The stated limits of what one query may ask for, in one place.

cxql refuses work it cannot finish rather than crash or run for days: every
limit here is checked before the work starts and reported as a
:class:`~cxql.errors.QueryError` that names the limit. Why each number:

* ``MAX_DEPTH``: syntax trees are walked recursively (printing, equality,
  compiling), about three Python frames per level; 128 levels stay far below
  Python's recursion limit of 1000 in any thread. Parentheses add no level;
  each NOT, AND, OR, NEIGHBORS and EXPLAIN does. A chain of 200 ORs is 200
  levels, so it is refused: split such a formula.
* ``MAX_LEAVES``: a formula, after LET names are expanded, has at most 4096
  concept leaves. ``LET a = a OR a`` doubles ``a`` each time; the cap stops
  that before compiling walks an exponential tree.
* ``MAX_DIGITS``: whole numbers in a query have at most 18 digits (they fit
  a 64-bit integer), so no number is too long to convert.
* ``MAX_LENGTH``: SEARCH formulas have at most 100 leaves; every step costs
  the same, and compexp's figures stop at 10.

BEAM has no fixed cap: it is clipped to the most candidates a beam can ever
hold (see :func:`beam_capacity`), and what remains is bounded by
``SET memory_limit`` (:mod:`cxql.memory`).
"""

from __future__ import annotations

MAX_DEPTH = 128
MAX_LEAVES = 4096
MAX_DIGITS = 18
MAX_LENGTH = 100


def beam_capacity(n_concepts: int, length: int) -> int:
    """The most entries a beam can hold over ``length`` leaves of ``n_concepts`` non-empty concepts.

    The first beam holds at most one entry per concept; each step keeps at
    most the old beam plus three candidates per entry and concept. A larger
    BEAM is never filled, so clipping it to this changes no result.
    """
    cap = n_concepts
    for _ in range(max(0, length - 1)):
        cap *= 1 + 3 * n_concepts
        if cap > 1 << 62:
            break
    return max(1, cap)
