"""Checks on what users hand to a store: concept names, mask arrays, layer names, output paths.

A store built from bad input does not fail later with a clear error: it
gives wrong answers. Two concepts with one name make lookups keep one of
them; a float mask makes every concept cover every position; re-adding a
layer by mistake throws away the old one. So each is refused here, at the
door, with a message that names the array, the names or the path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DataError, StoreError, UsageError
from .manifest import check_segment


def check_concept_names(names: Sequence[str], categories: Sequence[str]) -> None:
    """Refuse concepts whose qualified names (``category:name``, or ``name``) repeat.

    A qualified name is what a query resolves, so two equal ones cannot both
    be reached; ``color:red`` named in category ``color`` and ``color:red``
    without a category clash too.
    """
    qualified = [f"{c}:{n}" if c else str(n) for n, c in zip(names, categories)]
    dup = [name for name, k in Counter(qualified).items() if k > 1]
    if dup:
        shown = ", ".join(repr(d) for d in dup[:10]) + (f" and {len(dup) - 10} more" if len(dup) > 10 else "")
        raise DataError(f"concept names must be unique within their category; repeated: {shown}",
                        hint="rename them, or give them different categories")


def check_mask_array(masks: np.ndarray, what: str) -> np.ndarray:
    """``masks`` as bool, if it is bool or integers that are all 0 or 1; otherwise a DataError naming it.

    Floats are refused even when they hold only 0.0 and 1.0: a float array is
    usually scores or probabilities passed by mistake, and casting them to
    bool would make every non-zero score a member.
    """
    masks = np.asarray(masks)
    if masks.dtype == bool:
        return masks
    if masks.dtype.kind not in "iu":
        raise DataError(f"{what} must be bool (or integers 0/1), got dtype {masks.dtype}",
                        hint="threshold scores first, e.g. masks > 0.5")
    bad = np.flatnonzero((masks.ravel() != 0) & (masks.ravel() != 1))
    if len(bad):
        index = np.unravel_index(int(bad[0]), masks.shape)
        raise DataError(f"{what} must hold only 0 and 1; found {masks[index].item()!r} at {list(map(int, index))}")
    return masks.astype(bool)


def check_new_layer(layers: Mapping[str, object], name: str, replace: bool) -> None:
    """Refuse to overwrite an existing layer unless ``replace`` says so."""
    if name in layers and not replace:
        raise DataError(f"the store already has a layer {name!r}",
                        hint="choose another name, or replace it with --replace (replace=True)")


def check_out_path(out: str | os.PathLike) -> Path:
    """An output path must name a directory to create: ``.``, ``..`` or ``/`` name none."""
    path = Path(out)
    if path.name in ("", ".", ".."):
        raise UsageError(f"--out {out}: give the name of a new store directory, not {str(out)!r}")
    return path


@contextlib.contextmanager
def os_errors(path: str | os.PathLike, action: str = "cannot write") -> Iterator[None]:
    """Turn an OS error (no such directory, not a directory, read-only) into one DataError naming ``path``."""
    try:
        yield
    except OSError as exc:
        where = f" ({describe_os_error(exc)})" if exc.filename and str(exc.filename) != str(path) else ""
        raise DataError(f"{path}: {action}: {exc.strerror or exc}{where}") from None


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` for an OS error, naming the file in the way where the system says "File exists"."""
    reason = exc.strerror or str(exc)
    if not exc.filename:
        return reason
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        in_the_way = next((p for p in (Path(exc.filename), *Path(exc.filename).parents) if p.is_file()), None)
        if in_the_way is not None:
            reason = f"{in_the_way} is a file, not a directory"
    return f"{exc.filename}: {reason}"


def warn(message: str | None, on_warning: Callable[[str], None] | None = None) -> None:
    """Say ``message`` (if any) through ``on_warning``, or as a Python warning."""
    if message:
        if on_warning is not None:
            on_warning(message)
        else:
            warnings.warn(message, stacklevel=3)


def layer_name(name: str) -> str:
    """A layer name as a user gives it: one path segment (no ``/``, ``..``, leading dot or control
    characters), refused as a DataError naming it."""
    try:
        return check_segment(name)
    except StoreError as exc:
        raise DataError(exc.message) from None
