"""Reading an SNLI/MultiNLI JSON-lines file into premise/hypothesis pairs, every bad line named.

Only the input format; analysing the pairs and building the store is :mod:`cxql.store.nli`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DataError

NO_LABEL = frozenset({"", "-"})


@dataclass(frozen=True)
class Pair:
    line: int
    premise: str
    hypothesis: str
    label: str | None
    pair_id: str


# ---------------------------------------------------------------- reading


def read_pairs(path: str | Path, *, skip_bad: bool = False,
               on_warning: Callable[[str], None] | None = None) -> tuple[list[Pair], list[int]]:
    """The pairs of a JSON-lines file and the line numbers skipped (see the module docstring)."""
    path = Path(path)
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read pairs ({exc.strerror or exc})") from None
    pairs: list[Pair] = []
    faults: list[tuple[int, str]] = []
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        pair, fault = _parse_line(raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw, number)
        if fault is not None:
            faults.append((number, fault))
        else:
            pairs.append(pair)
    if faults and not skip_bad:
        listed = "\n".join(f"  {path}:{n}: {why}" for n, why in faults[:10])
        more = f"\n  ... and {len(faults) - 10} more" if len(faults) > 10 else ""
        raise DataError(f"{path}: {len(faults)} bad line(s); nothing was built:\n{listed}{more}",
                        hint="fix them, or pass --skip-bad (skip_bad=True) to build from the other pairs")
    warn = on_warning or (lambda m: warnings.warn(m, stacklevel=3))
    for n, why in faults:
        warn(f"{path}:{n}: skipped: {why}")
    if not pairs:
        raise DataError(f"{path}: no sentence pairs (expected JSON lines with sentence1 and sentence2)")
    return pairs, [n for n, _ in faults]


def _parse_line(raw: bytes, number: int) -> tuple[Pair | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:  # a pair is a flat object; thousands of nested brackets are not one
        return None, "JSON nested too deeply to be a sentence pair"
    except ValueError as exc:  # e.g. an integer of thousands of digits
        return None, f"not usable JSON ({str(exc).split(':')[0]})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    sentences = []
    for key in ("sentence1", "sentence2"):
        value = obj.get(key)
        if not isinstance(value, str):
            return None, f"{key} is missing" if value is None else f"{key} is not a string"
        if not value.strip():
            return None, f"{key} is empty"
        sentences.append(value.strip())
    label = obj.get("gold_label")
    if label is not None and not isinstance(label, str):
        return None, "gold_label is not a string"
    label = None if label is None or label.strip() in NO_LABEL else label.strip()
    pair_id = obj.get("pairID")
    return Pair(number, sentences[0], sentences[1], label,
                str(pair_id) if pair_id is not None else f"line{number}"), None


# ---------------------------------------------------------------- concepts
